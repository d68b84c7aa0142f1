//! `dataflows.timeutil.to_us` in Rust: a zone-aware datetime as integer
//! microseconds since the Unix epoch.
//!
//! The Python definition subtracts the epoch (an aware subtraction: two
//! `utcoffset` calls, a new timedelta) and reads its three attributes back:
//! ~2,600 instructions, paid for every event the partition step takes in and
//! for each promise time a view or a bronze row converts.  Here the civil
//! date and time are read from the object's fields and the offset from its
//! zone (none to ask for when the zone is UTC itself): the same integer.
//!
//! Only an exact `datetime` with a zone is converted here; anything else
//! (a naive time, a subclass, a zone without an offset) goes to the Python
//! definition, so its result or its error is the definition's.
//! `dataflows.native_times.NATIVE_TIMES_OF` keeps this from running against a
//! changed definition; `tests/unit/test_native_times.py` holds the two equal.

use pyo3::ffi;
use pyo3::intern;
use pyo3::once_cell::GILOnceCell;
use pyo3::prelude::*;
use pyo3::types::{PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyTimeAccess, PyTzInfoAccess};
use pyo3::AsPyPointer;

const US_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

static UTC: GILOnceCell<PyObject> = GILOnceCell::new();

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`), the inverse of `lifecycle::civil_from_days`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn delta_us(delta: &PyDelta) -> i64 {
    (i64::from(delta.get_days()) * SECONDS_PER_DAY + i64::from(delta.get_seconds())) * US_PER_SECOND
        + i64::from(delta.get_microseconds())
}

/// `module.name`, imported once.
fn imported<'py>(
    py: Python<'py>,
    cell: &'static GILOnceCell<PyObject>,
    module: &str,
    name: &str,
) -> PyResult<&'py PyAny> {
    if let Some(object) = cell.get(py) {
        return Ok(object.as_ref(py));
    }
    let object: PyObject = py.import(module)?.getattr(name)?.into();
    Ok(cell.get_or_init(py, || object).as_ref(py))
}

/// The Python definition, for whatever the fast path does not convert
/// (looked up at each such call: they are rare, and a test can watch them).
fn definition(py: Python<'_>, moment: &PyAny) -> PyResult<i64> {
    py.import(intern!(py, "dataflows.timeutil"))?
        .getattr(intern!(py, "to_us"))?
        .call1((moment,))?
        .extract()
}

/// `dataflows.timeutil.to_us(moment)`.
#[pyfunction]
pub(crate) fn to_us(py: Python<'_>, moment: &PyAny) -> PyResult<i64> {
    // Exactly a datetime: a subclass may subtract differently.  (PyO3 0.17
    // gives `datetime.date` as `PyDateTime`'s exact type, so the type is
    // compared here; the downcast has imported the datetime C API.)
    let moment_dt: &PyDateTime = match moment.downcast() {
        Ok(moment_dt) if unsafe { ffi::PyDateTime_CheckExact(moment.as_ptr()) } != 0 => moment_dt,
        _ => return definition(py, moment),
    };
    let zone = match moment_dt.get_tzinfo() {
        Some(zone) => zone,
        None => return definition(py, moment), // naive: the definition's error
    };
    let utc = imported(py, &UTC, "datetime", "UTC")?;
    let offset = if zone.as_ptr() == utc.as_ptr() {
        0
    } else {
        match moment
            .call_method0(intern!(py, "utcoffset"))?
            .downcast::<PyDelta>()
        {
            Ok(delta) => delta_us(delta),
            Err(_) => return definition(py, moment),
        }
    };
    let days = days_from_civil(
        i64::from(moment_dt.get_year()),
        i64::from(moment_dt.get_month()),
        i64::from(moment_dt.get_day()),
    );
    let seconds = days * SECONDS_PER_DAY
        + i64::from(moment_dt.get_hour()) * 3_600
        + i64::from(moment_dt.get_minute()) * 60
        + i64::from(moment_dt.get_second());
    Ok(seconds * US_PER_SECOND + i64::from(moment_dt.get_microsecond()) - offset)
}
