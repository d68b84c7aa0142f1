//! The digital-twin rows of `silver/order_lifecycle`, built from order views
//! straight into Arrow buffers.
//!
//! Every derivation of an order writes its lifecycle row.  In CPython that
//! row (`dataflows.twin.lifecycle_values`) was a dict of 46 values, two JSON
//! texts, a transposition into columns and a conversion of every value to
//! Arrow again: ~16 us per view, a twelfth of the event thread.  Here the
//! view's fields are read once and appended to column buffers (values,
//! offsets, validity bits); Python wraps the buffers as Arrow arrays
//! (`dataflows.native_core.lifecycle_maker`) without touching a value.
//!
//! `lifecycle_values` stays the definition and the reference:
//! `tests/unit/test_native_lifecycle.py` holds these rows equal to its rows
//! on random orders, and `dataflows.native_core.NATIVE_TWIN_OF` keeps this
//! from running against a changed definition.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use std::fmt::Write;

use pyo3::ffi;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::AsPyPointer;

use crate::fields::field;
use crate::le_bytes;

const US_PER_HOUR: f64 = 3_600_000_000.0;

/// One column's buffers, in the Arrow layout of its type.
pub(crate) enum Column {
    /// `string`: i32 offsets and UTF-8 data.
    Str {
        offsets: Vec<i32>,
        data: Vec<u8>,
    },
    /// `int64` and `timestamp("us")`.
    I64(Vec<i64>),
    /// `int32`.
    I32(Vec<i32>),
    F64(Vec<f64>),
    /// `bool`: bit-packed on the way out.
    Bool(Vec<bool>),
}

pub(crate) struct Buffers {
    pub(crate) name: String,
    pub(crate) column: Column,
    pub(crate) valid: Vec<bool>,
}

/// The columns of `lifecycle_values`, in its order (the stage columns follow).
const FIXED: [(&str, u8); 30] = [
    ("order_id", b's'),
    ("customer_id", b's'),
    ("customer_segment", b's'),
    ("channel", b's'),
    ("region", b's'),
    ("seller_id", b's'),
    ("order_value", b'f'),
    ("currency", b's'),
    ("line_count", b'i'),
    ("promise_confidence", b'f'),
    ("first_warehouse_id", b's'),
    ("warehouse_id", b's'),
    ("carrier_id", b's'),
    ("first_promised_at", b'i'),
    ("latest_promised_at", b'i'),
    ("current_stage", b's'),
    ("outcome", b's'),
    ("resolved_at", b'i'),
    ("cancelled_at", b'i'),
    ("cancel_reason", b's'),
    ("anomaly_count", b'i'),
    ("anomaly_kinds", b's'),
    ("anomaly_flags", b's'),
    ("event_count", b'i'),
    ("last_event_at", b'i'),
    ("context_by_stage", b's'),
    ("topic", b's'),
    ("partition", b'p'),
    ("last_event_offset", b'i'),
    ("first_seen_at", b'i'),
];

/// Columns 1-9 of `FIXED` are the base-layer (ORDER_CREATED) attributes,
/// each under its own name in `OrderView.attributes`.
const ATTRIBUTE_COLUMNS: std::ops::Range<usize> = 1..10;

pub(crate) fn buffers(name: &str, kind: u8) -> Buffers {
    let column = match kind {
        b's' => Column::Str {
            offsets: vec![0],
            data: Vec::new(),
        },
        b'i' => Column::I64(Vec::new()),
        b'p' => Column::I32(Vec::new()),
        b'b' => Column::Bool(Vec::new()),
        _ => Column::F64(Vec::new()),
    };
    Buffers {
        name: name.to_owned(),
        column,
        valid: Vec::new(),
    }
}

/// Appends one row's values to the columns, in column order.
struct Row<'a> {
    columns: std::slice::IterMut<'a, Buffers>,
}

impl Row<'_> {
    fn next(&mut self) -> &mut Buffers {
        self.columns.next().expect("a value per column")
    }

    fn text(&mut self, value: Option<&str>) {
        push_text(self.next(), value);
    }

    /// A str or None.
    fn py_text(&mut self, value: Option<&PyAny>) -> PyResult<()> {
        match value {
            Some(v) if !v.is_none() => {
                let text = v.downcast::<PyString>()?.to_str()?;
                self.text(Some(text));
            }
            _ => self.text(None),
        }
        Ok(())
    }

    fn int(&mut self, value: Option<i64>) {
        push_int(self.next(), value);
    }

    fn float(&mut self, value: Option<f64>) {
        push_float(self.next(), value);
    }
}

/// Append a str or None to a string column.
pub(crate) fn push_text(buffer: &mut Buffers, value: Option<&str>) {
    buffer.valid.push(value.is_some());
    if let Column::Str { offsets, data } = &mut buffer.column {
        data.extend_from_slice(value.unwrap_or("").as_bytes());
        offsets.push(i32::try_from(data.len()).unwrap_or(i32::MAX));
    } else {
        unreachable!("{} is not a string column", buffer.name);
    }
}

/// Append an integer or None to an int64 (or int32) column.
pub(crate) fn push_int(buffer: &mut Buffers, value: Option<i64>) {
    buffer.valid.push(value.is_some());
    match &mut buffer.column {
        Column::I64(values) => values.push(value.unwrap_or(0)),
        Column::I32(values) => values.push(value.unwrap_or(0) as i32),
        _ => unreachable!("{} is not an integer column", buffer.name),
    }
}

/// Append a float or None to a float64 column.
pub(crate) fn push_float(buffer: &mut Buffers, value: Option<f64>) {
    buffer.valid.push(value.is_some());
    if let Column::F64(values) = &mut buffer.column {
        values.push(value.unwrap_or(0.0));
    } else {
        unreachable!("{} is not a float column", buffer.name);
    }
}

/// Collects lifecycle rows as Arrow column buffers.
#[pyclass(module = "orderhealth_native")]
pub(crate) struct LifecycleRows {
    columns: Vec<Buffers>,
    /// (stage wire tag) per stage column pair, in `STAGE_COLUMNS` order.
    stages: Vec<Py<PyString>>,
    /// The attribute columns' names and kinds, the names as Python strings
    /// (dict keys).
    attributes: Vec<(Py<PyString>, u8)>,
    /// `(view) -> (anomaly_flags, context_by_stage)` texts in Python, for a
    /// view holding what the JSON writer here does not handle.
    texts: PyObject,
    rows: usize,
}

#[pymethods]
impl LifecycleRows {
    /// `stage_columns`: `(stage, at column, dwell column)` per stage
    /// (`dataflows.twin._STAGE_COLUMN_NAMES`); `texts`: the Python fallback.
    #[new]
    fn new(py: Python<'_>, stage_columns: Vec<(String, String, String)>, texts: PyObject) -> Self {
        let mut columns: Vec<Buffers> = FIXED.iter().map(|(n, k)| buffers(n, *k)).collect();
        let mut stages = Vec::new();
        for (stage, at, dwell) in stage_columns {
            columns.push(buffers(&at, b'i'));
            columns.push(buffers(&dwell, b'f'));
            stages.push(PyString::new(py, &stage).into());
        }
        LifecycleRows {
            columns,
            stages,
            attributes: FIXED[ATTRIBUTE_COLUMNS]
                .iter()
                .map(|(name, kind)| (PyString::new(py, name).into(), *kind))
                .collect(),
            texts,
            rows: 0,
        }
    }

    /// Append the row of one view (`lifecycle_values` with the same arguments).
    fn add(
        &mut self,
        py: Python<'_>,
        view: &PyAny,
        topic: &str,
        partition: i64,
        last_offset: i64,
        first_seen_us: i64,
    ) -> PyResult<()> {
        let attrs: &PyDict = field!(view, "attributes")?.downcast()?;
        let flags: &PyTuple = field!(view, "flags")?.downcast()?;
        let context: &PyAny = field!(view, "context_by_stage")?;
        let outcome = field!(view, "outcome")?;
        let (flags_json, context_json) = match (flags_text(py, flags)?, json_text(context)?) {
            (Some(f), Some(c)) => (f, c),
            _ => self.texts.as_ref(py).call1((view,))?.extract()?,
        };
        let mut kinds: Vec<&str> = Vec::with_capacity(flags.len());
        for flag in flags {
            kinds.push(str_attr(flag, intern!(py, "kind"))?);
        }
        kinds.sort_unstable();
        kinds.dedup();

        let mut row = Row {
            columns: self.columns.iter_mut(),
        };
        row.py_text(Some(field!(view, "order_id")?))?;
        for (name, kind) in &self.attributes {
            let value = attrs.get_item(name.as_ref(py)).filter(|v| !v.is_none());
            match kind {
                b'f' => row.float(value.map(|v| v.extract()).transpose()?),
                b'i' => row.int(value.map(|v| v.extract()).transpose()?),
                _ => row.py_text(value)?,
            }
        }
        row.py_text(Some(field!(view, "first_warehouse")?))?;
        row.py_text(Some(field!(view, "warehouse")?))?;
        row.py_text(Some(field!(view, "carrier")?))?;
        row.int(field!(view, "first_promise_us")?.extract()?);
        row.int(field!(view, "latest_promise_us")?.extract()?);
        row.py_text(Some(field!(view, "current_stage")?))?;
        row.py_text(Some(field!(outcome, "status")?))?;
        row.int(field!(outcome, "resolved_at_us")?.extract()?);
        row.int(field!(view, "cancelled_us")?.extract()?);
        row.py_text(Some(field!(view, "cancel_reason")?))?;
        row.int(Some(flags.len() as i64));
        let kinds = kinds.join(",");
        row.text(if kinds.is_empty() { None } else { Some(&kinds) });
        row.text(Some(&flags_json));
        row.int(Some(field!(view, "event_count")?.extract()?));
        row.int(Some(field!(view, "last_event_us")?.extract()?));
        row.text(Some(&context_json));
        row.text(Some(topic));
        row.int(Some(partition));
        row.int(Some(last_offset));
        row.int(Some(first_seen_us));
        let stage_us: &PyDict = field!(view, "stage_us")?.downcast()?;
        let dwell_us: &PyDict = field!(view, "dwell_us")?.downcast()?;
        for stage in &self.stages {
            let stage = stage.as_ref(py);
            row.int(stage_us.get_item(stage).map(|v| v.extract()).transpose()?);
            let dwell: Option<i64> = dwell_us.get_item(stage).map(|v| v.extract()).transpose()?;
            row.float(dwell.map(|d| d as f64 / US_PER_HOUR));
        }
        self.rows += 1;
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.rows
    }

    /// The rows so far, then none: `(name, validity bits or None, offsets or
    /// None, values, null count)` per column, buffers as `bytes` in Arrow's
    /// layout (little-endian, validity LSB first).
    fn take(&mut self, py: Python<'_>) -> PyResult<PyObject> {
        let out = take_buffers(py, &mut self.columns)?;
        self.rows = 0;
        Ok(out)
    }
}

/// The columns' rows so far, then none: `(name, validity bits or None,
/// offsets or None, values, null count)` per column, buffers as `bytes` in
/// Arrow's layout (little-endian, validity LSB first).
pub(crate) fn take_buffers(py: Python<'_>, columns: &mut [Buffers]) -> PyResult<PyObject> {
    let out = PyList::empty(py);
    for b in columns {
        let nulls = b.valid.iter().filter(|v| !**v).count();
        let validity: PyObject = if nulls == 0 {
            py.None()
        } else {
            PyBytes::new(py, &bits(&b.valid)).into()
        };
        let (offsets, values): (PyObject, &PyBytes) = match &mut b.column {
            Column::Str { offsets, data } => {
                if i32::try_from(data.len()).is_err() {
                    return Err(PyValueError::new_err(format!(
                        "{}: more than 2 GiB of text in one batch",
                        b.name
                    )));
                }
                let o = le_bytes(py, offsets, |v| v.to_le_bytes());
                let d = PyBytes::new(py, data);
                offsets.clear();
                offsets.push(0);
                data.clear();
                (o.into(), d)
            }
            Column::I64(values) => (py.None(), drain(py, values, i64::to_le_bytes)),
            Column::I32(values) => (py.None(), drain(py, values, i32::to_le_bytes)),
            Column::F64(values) => (py.None(), drain(py, values, f64::to_le_bytes)),
            Column::Bool(values) => {
                let packed = PyBytes::new(py, &bits(values));
                values.clear();
                (py.None(), packed)
            }
        };
        b.valid.clear();
        out.append((b.name.as_str(), validity, offsets, values, nulls))?;
    }
    Ok(out.into())
}

/// The values as little-endian bytes, then none.
fn drain<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    values: &mut Vec<T>,
    f: impl Fn(T) -> [u8; N],
) -> &'py PyBytes {
    let bytes = le_bytes(py, values, f);
    values.clear();
    bytes
}

/// Arrow validity bits, least significant bit first.
fn bits(valid: &[bool]) -> Vec<u8> {
    valid
        .chunks(8)
        .map(|eight| {
            eight
                .iter()
                .enumerate()
                .fold(0u8, |byte, (i, v)| byte | (u8::from(*v) << i))
        })
        .collect()
}

/// `json_text([{"kind", "at" (ISO time), "reason"}...])`, or None when an
/// instant is outside what this writes (years 1-9999).
fn flags_text(py: Python<'_>, flags: &PyTuple) -> PyResult<Option<String>> {
    let mut out = String::from("[");
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let at: i64 = field!(flag, "at_us")?.extract()?;
        let iso = match isoformat(at) {
            Some(iso) => iso,
            None => return Ok(None),
        };
        out.push_str("{\"at\":\"");
        out.push_str(&iso);
        out.push_str("\",\"kind\":");
        string(&mut out, str_attr(flag, intern!(py, "kind"))?);
        out.push_str(",\"reason\":");
        string(&mut out, str_attr(flag, intern!(py, "reason"))?);
        out.push('}');
    }
    out.push(']');
    Ok(Some(out))
}

fn str_attr<'py>(object: &'py PyAny, name: &PyString) -> PyResult<&'py str> {
    object.getattr(name)?.downcast::<PyString>()?.to_str()
}

/// `from_us(at).isoformat()`: `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`.
fn isoformat(at_us: i64) -> Option<String> {
    let seconds = at_us.div_euclid(1_000_000);
    let micros = at_us.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return None;
    }
    let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let mut out = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    if micros != 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    out.push_str("+00:00");
    Some(out)
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `dataflows.json_text.json_text(value)` for dicts with str keys of str,
/// int (64-bit), float, bool and None values, nested dicts included (what
/// the contract's contexts hold); None for anything else (the caller falls
/// back to Python).
pub(crate) fn json_text(value: &PyAny) -> PyResult<Option<String>> {
    let mut out = String::new();
    let mut scratch = Scratch::default();
    // SAFETY: the GIL is held and no Python code runs while the writer reads
    // the value, so every borrowed pointer it follows stays valid.
    let written = unsafe { write_json(&mut out, &mut scratch, value.as_ptr()) };
    if !written && PyErr::occurred(value.py()) {
        PyErr::fetch(value.py()); // a str without UTF-8 form: Python decides
    }
    Ok(if written { Some(out) } else { None })
}

/// Reused buffers of one JSON text: number formatting, and the entries of
/// the dicts being written (a stack: a nested dict's above its parent's).
#[derive(Default)]
struct Scratch {
    number: String,
    entries: Vec<(&'static str, *mut ffi::PyObject)>,
}

/// Appends the JSON of `value`; false if it holds a type not handled here.
///
/// Raw C-API reads: the context of every stage is written at every
/// derivation, and PyO3's owned references (one pool entry per key and
/// value) made this slower than msgspec.
unsafe fn write_json(out: &mut String, scratch: &mut Scratch, value: *mut ffi::PyObject) -> bool {
    if value == ffi::Py_None() {
        out.push_str("null");
    } else if ffi::PyBool_Check(value) != 0 {
        out.push_str(if value == ffi::Py_True() {
            "true"
        } else {
            "false"
        });
    } else if ffi::PyUnicode_Check(value) != 0 {
        match utf8(value) {
            Some(text) => string(out, text),
            None => return false,
        }
    } else if ffi::PyLong_Check(value) != 0 {
        let mut overflow = 0;
        let v = ffi::PyLong_AsLongLongAndOverflow(value, &mut overflow);
        if overflow != 0 || (v == -1 && !ffi::PyErr_Occurred().is_null()) {
            return false;
        }
        decimal(out, v);
    } else if ffi::PyFloat_Check(value) != 0 {
        if !float(out, &mut scratch.number, ffi::PyFloat_AsDouble(value)) {
            return false;
        }
    } else if ffi::PyDict_Check(value) != 0 {
        let base = scratch.entries.len();
        let mut pos: ffi::Py_ssize_t = 0;
        let mut key: *mut ffi::PyObject = std::ptr::null_mut();
        let mut item: *mut ffi::PyObject = std::ptr::null_mut();
        while ffi::PyDict_Next(value, &mut pos, &mut key, &mut item) != 0 {
            if ffi::PyUnicode_Check(key) == 0 {
                return false;
            }
            match utf8(key) {
                Some(k) => scratch.entries.push((k, item)),
                None => return false,
            }
        }
        scratch.entries[base..].sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.push('{');
        for i in base..scratch.entries.len() {
            if i > base {
                out.push(',');
            }
            let (k, v) = scratch.entries[i];
            string(out, k);
            out.push(':');
            if !write_json(out, scratch, v) {
                return false;
            }
        }
        scratch.entries.truncate(base);
        out.push('}');
    } else {
        return false;
    }
    true
}

/// The UTF-8 form of a str (cached by CPython in the object), or None.
/// Borrowed from the object: valid while it is, which the caller ensures.
pub(crate) unsafe fn utf8<'a>(text: *mut ffi::PyObject) -> Option<&'a str> {
    let mut size: ffi::Py_ssize_t = 0;
    let data = ffi::PyUnicode_AsUTF8AndSize(text, &mut size);
    if data.is_null() {
        return None;
    }
    let bytes = std::slice::from_raw_parts(data as *const u8, size as usize);
    Some(std::str::from_utf8_unchecked(bytes))
}

/// A JSON string as msgspec writes it: `"` and `\` escaped, control
/// characters as `\b \t \n \f \r` or `\u00XX`, everything else as is.
fn string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s); // nearly always: ids, codes, names
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An integer in decimal digits (`{}` without the formatting machinery:
/// every context holds a few).
fn decimal(out: &mut String, v: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = v.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// A float as msgspec writes it: the shortest digits that read back the
/// same, positional for decimal exponents -5..=15 (at least one fractional
/// digit), else `<mantissa>e<exponent>`; NaN and infinities as null.
///
/// False (nothing written) for a float whose shortest digits are more than
/// 15: two texts of 16 or 17 digits can read back as the same double, and
/// where they tie msgspec rounds to even but Rust's formatting does not
/// (`-1267860061485775.2` against `.3`), so such a value is left to Python.
/// With 15 digits or fewer the shortest text is unique.
fn float(out: &mut String, scratch: &mut String, x: f64) -> bool {
    if !x.is_finite() {
        out.push_str("null");
        return true;
    }
    let magnitude = x.abs();
    if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
        // Decimal exponents -5..=15 (1e-5 and 1e16 are the doubles those
        // texts read as, so the bounds are exact): Rust's `{}` writes the
        // same shortest digits positionally, without a point for a whole
        // number.  Half the instructions of the general path below.
        scratch.clear();
        let _ = write!(scratch, "{x}");
        if significant_digits(scratch) > 15 {
            return false;
        }
        out.push_str(scratch);
        if !scratch.contains('.') {
            out.push_str(".0");
        }
        return true;
    }
    scratch.clear();
    let _ = write!(scratch, "{x:e}");
    let (mantissa, _) = scratch.split_once('e').expect("{:e} has an exponent");
    if significant_digits(mantissa) > 15 {
        return false;
    }
    // Outside -5..=15 the exponent form: `{:e}`'s own.
    out.push_str(scratch);
    true
}

/// The significant digits of a decimal text (sign, point and the zeros
/// before the first and after the last other digit aside).
fn significant_digits(text: &str) -> usize {
    let digits = text.bytes().filter(u8::is_ascii_digit);
    let (mut first, mut last) = (None, 0);
    for (i, digit) in digits.enumerate() {
        if digit != b'0' {
            first.get_or_insert(i);
            last = i;
        }
    }
    first.map_or(1, |first| last - first + 1)
}
