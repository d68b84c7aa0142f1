//! The flow's decode step: the native twin of
//! `dataflows.decode_step.DecodeStep.decode_all`, which stays the definition.
//!
//! Per message the definition runs ~6 Python frames around msgspec's typed
//! decode (the step's loop, `EventDecoder.decode`, its range check,
//! `RuleBook.check` and a frame per rule): in `bench.instructions` the
//! interpreter was a third of the decode stage, which executed twice the
//! instructions of the ceiling's bare decode.  Here a message that is plainly
//! valid costs the decode itself, the message's accessors and the event's
//! fields read from their slots.
//!
//! The twin only ever says "valid": any message it does not find plainly
//! valid -- a rejection, a broken rule, a value of a type its tests do not
//! cover, a time near the supported range's ends -- goes, alone, to the
//! definition, which decides it (a dead letter, a warning, a `fail` rule's
//! error) as it always did.  `dataflows.native_decode.NATIVE_DECODE_OF` keeps
//! this from running against a changed definition;
//! `tests/unit/test_native_decode.py` holds the two equal.

use std::ptr::NonNull;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::AsPyPointer;

use crate::fields::{field, field_named};
use crate::lifecycle;
use crate::times::to_us;

/// A record rule as the twin runs it (`dataflows.native_decode._rule_plan`).
enum Rule {
    /// `event_time_not_in_future`, with its tolerance in us.
    Future(i64),
    /// `promise_after_creation`.
    Promise,
    /// `order_value_plausible`, with its limit.
    Value(f64),
    /// `reroute_has_reason`.
    Reroute,
    /// Any other rule: `check(event, produced_us, params)`, called as it is.
    Python(PyObject, PyObject),
}

/// What one event type needs: its range-checked fields and its rules.
struct PerType {
    ty: PyObject,
    range: Vec<Py<PyString>>,
    rules: Vec<Rule>,
}

/// A new reference, released on drop (the GIL is held wherever one lives):
/// no entry in PyO3's pool per message.
struct Owned(NonNull<ffi::PyObject>);

impl Owned {
    /// Takes a call's result; a null result is the call's error.
    fn of(py: Python<'_>, ptr: *mut ffi::PyObject) -> PyResult<Self> {
        NonNull::new(ptr).map(Owned).ok_or_else(|| PyErr::fetch(py))
    }

    fn ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    fn any<'a>(&'a self, _py: Python<'a>) -> &'a PyAny {
        // SAFETY: a live object, referenced for as long as `self` is.
        unsafe { &*self.ptr().cast::<PyAny>() }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: our own reference; the GIL is held (module docs).
        unsafe { ffi::Py_DECREF(self.ptr()) }
    }
}

/// `object.name()`.
fn method0(py: Python<'_>, object: &PyAny, name: &PyString) -> PyResult<Owned> {
    Owned::of(py, unsafe {
        ffi::PyObject_CallMethodNoArgs(object.as_ptr(), name.as_ptr())
    })
}

/// The UTF-8 form of an exact str, or None (a str without one: its error cleared).
fn utf8<'a>(py: Python<'_>, text: &'a PyAny) -> Option<&'a [u8]> {
    // SAFETY: reading a str the caller holds; CPython caches the UTF-8 form
    // in the object, so the slice lives as long as the object.
    unsafe {
        if ffi::PyUnicode_CheckExact(text.as_ptr()) == 0 {
            return None;
        }
        let form = lifecycle::utf8(text.as_ptr());
        if form.is_none() {
            PyErr::fetch(py);
        }
        form.map(str::as_bytes)
    }
}

/// An exact `datetime` whose zone is a `datetime.timezone` (a fixed offset,
/// UTC among them): for two of those, `<=` compares the instants, which is
/// what comparing `to_us` compares.
fn fixed_offset_time(value: &PyAny) -> bool {
    // SAFETY: the datetime C API was imported by `Decode::new`.
    unsafe {
        let ptr = value.as_ptr();
        if ffi::PyDateTime_CheckExact(ptr) == 0 {
            return false;
        }
        let zone = ffi::PyDateTime_DATE_GET_TZINFO(ptr);
        zone != ffi::Py_None() && ffi::Py_TYPE(zone) == ffi::Py_TYPE(ffi::PyDateTime_TimeZone_UTC())
    }
}

/// What the definition's module and the worker's decoder and rules provide.
#[pyclass(module = "orderhealth_native", frozen)]
pub struct Decode {
    /// `EventDecoder.parse`: msgspec's typed decode of the contract.
    parse: PyObject,
    max_bytes: usize,
    schema_version: i64,
    /// `_SAFE_YEARS`: a time of a year strictly between these is in range.
    safe_years: (i32, i32),
    /// `KeyRing.sources`: the source systems that sign their events.
    signing: Py<PyDict>,
    /// `EventDecoder.signature_problem(raw)`.
    signature_problem: PyObject,
    per_type: Vec<PerType>,
    /// `SourcedEvent`.
    sourced: PyObject,
    /// confluent-kafka's `TIMESTAMP_NOT_AVAILABLE`.
    no_timestamp: i64,
    /// `DecodeStep.decode_all`: the definition, for every message the twin
    /// does not find plainly valid.
    definition: PyObject,
}

impl Decode {
    /// The `SourcedEvent` of a plainly valid message; None leaves the
    /// message to the definition.
    fn event_of(&self, py: Python<'_>, msg: &PyAny) -> PyResult<Option<Owned>> {
        let raw = method0(py, msg, intern!(py, "value"))?;
        // SAFETY: type checks and reads of a live object.
        let size = unsafe {
            if ffi::PyBytes_Check(raw.ptr()) == 0 {
                return Ok(None);
            }
            ffi::PyBytes_Size(raw.ptr()) as usize
        };
        if size == 0 || size > self.max_bytes {
            return Ok(None);
        }
        // (Not `PyObject_CallOneArg`: PyO3 0.17's inline version panics on
        // its own argument-offset flag for a callable without vectorcall.)
        let args = [raw.ptr()];
        let event = match Owned::of(py, unsafe {
            ffi::PyObject_Vectorcall(self.parse.as_ptr(), args.as_ptr(), 1, std::ptr::null_mut())
        }) {
            Ok(event) => event,
            Err(_) => return Ok(None), // rejected: the definition says why
        };
        let event_any = event.any(py);
        let ty = unsafe { ffi::Py_TYPE(event.ptr()) }.cast::<ffi::PyObject>();
        let kind = match self.per_type.iter().find(|t| t.ty.as_ptr() == ty) {
            Some(kind) => kind,
            None => return Ok(None),
        };
        match int(field!(event_any, "schema_version")?) {
            Some(version) if version <= self.schema_version => {}
            _ => return Ok(None),
        }
        for name in &kind.range {
            if !self.in_range(field_named!(event_any, name.as_ref(py))?) {
                return Ok(None);
            }
        }
        let key = method0(py, msg, intern!(py, "key"))?;
        let key_bytes = unsafe {
            if ffi::PyBytes_Check(key.ptr()) == 0 {
                return Ok(None); // no key: the definition's rejection
            }
            std::slice::from_raw_parts(
                ffi::PyBytes_AsString(key.ptr()).cast::<u8>(),
                ffi::PyBytes_Size(key.ptr()) as usize,
            )
        };
        match utf8(py, field!(event_any, "order_id")?) {
            Some(order_id) if order_id == key_bytes => {}
            _ => return Ok(None),
        }
        let signing = self.signing.as_ref(py);
        if !signing.is_empty() && signing.contains(field!(event_any, "source_system")?)? {
            let problem = self.signature_problem.call1(py, (raw.any(py),))?;
            if !problem.is_none(py) {
                return Ok(None);
            }
        }
        let produced = match self.produced_us(py, msg)? {
            Ok(produced) => produced,
            Err(()) => return Ok(None),
        };
        for rule in &kind.rules {
            if !self.passes(py, rule, event_any, produced)? {
                return Ok(None);
            }
        }
        let topic = method0(py, msg, intern!(py, "topic"))?;
        let partition = method0(py, msg, intern!(py, "partition"))?;
        let offset = method0(py, msg, intern!(py, "offset"))?;
        let none = unsafe { ffi::Py_None() };
        if [topic.ptr(), partition.ptr(), offset.ptr()].contains(&none) {
            return Ok(None);
        }
        let produced = match produced {
            Some(us) => Some(Owned::of(py, unsafe { ffi::PyLong_FromLongLong(us) })?),
            None => None,
        };
        let args = [
            event.ptr(),
            topic.ptr(),
            partition.ptr(),
            offset.ptr(),
            PyTuple::empty(py).as_ptr(), // RuleVerdict().warnings
            produced.as_ref().map_or(none, Owned::ptr),
        ];
        Owned::of(py, unsafe {
            ffi::PyObject_Vectorcall(
                self.sourced.as_ptr(),
                args.as_ptr(),
                args.len(),
                std::ptr::null_mut(),
            )
        })
        .map(Some)
    }

    /// `_out_of_range` finds nothing wrong with this value, plainly: a time of
    /// a safe year, a finite float, or neither.
    fn in_range(&self, value: &PyAny) -> bool {
        let ptr = value.as_ptr();
        // SAFETY: type checks and reads of a live object; the datetime C API
        // was imported by `new`.
        unsafe {
            if ffi::PyDateTime_Check(ptr) != 0 {
                let year = ffi::PyDateTime_GET_YEAR(ptr);
                self.safe_years.0 < year && year < self.safe_years.1
            } else if ffi::PyFloat_Check(ptr) != 0 {
                ffi::PyFloat_AS_DOUBLE(ptr).is_finite()
            } else {
                true
            }
        }
    }

    /// The message's produce time in us (`Ok(None)`: the broker has none);
    /// `Err(())` for what the definition should see (a timestamp beyond i64).
    fn produced_us(&self, py: Python<'_>, msg: &PyAny) -> PyResult<Result<Option<i64>, ()>> {
        let stamp = method0(py, msg, intern!(py, "timestamp"))?;
        let (kind, ms): (i64, &PyAny) = stamp.any(py).extract()?;
        if kind == self.no_timestamp {
            return Ok(Ok(None));
        }
        Ok(match int(ms).and_then(|ms| ms.checked_mul(1000)) {
            Some(us) => Ok(Some(us)),
            None => Err(()),
        })
    }

    /// Whether `rule` passes the event, plainly (false: let the definition decide).
    fn passes(
        &self,
        py: Python<'_>,
        rule: &Rule,
        event: &PyAny,
        produced: Option<i64>,
    ) -> PyResult<bool> {
        Ok(match rule {
            Rule::Future(tolerance) => match produced {
                None => true,
                Some(produced) => {
                    let at = to_us(py, field!(event, "event_time")?)?;
                    at.checked_sub(produced)
                        .map_or(false, |ahead| ahead <= *tolerance)
                }
            },
            Rule::Promise => {
                let promised = field!(event, "promised_delivery_at")?;
                let created = field!(event, "event_time")?;
                fixed_offset_time(promised)
                    && fixed_offset_time(created)
                    && to_us(py, promised)? > to_us(py, created)?
            }
            Rule::Value(limit) => {
                let value = field!(event, "order_value")?;
                if value.is_none() {
                    not_above(0.0, *limit) // `(None or 0.0) > limit`
                } else if unsafe { ffi::PyFloat_CheckExact(value.as_ptr()) } != 0 {
                    not_above(unsafe { ffi::PyFloat_AS_DOUBLE(value.as_ptr()) }, *limit)
                } else {
                    false
                }
            }
            Rule::Reroute => {
                // A printable ASCII character is not whitespace to `str.strip`;
                // anything else the definition looks at.
                utf8(py, field!(event, "reason")?).map_or(false, |reason| {
                    reason.iter().any(|b| (0x21..0x7f).contains(b))
                })
            }
            Rule::Python(check, params) => {
                let produced = produced
                    .map(|us| us.into_py(py))
                    .unwrap_or_else(|| py.None());
                check.call1(py, (event, produced, params))?.is_none(py)
            }
        })
    }
}

/// An int that fits i64, or None.
fn int(value: &PyAny) -> Option<i64> {
    // SAFETY: a type check, then a conversion that reports overflow.
    unsafe {
        if ffi::PyLong_Check(value.as_ptr()) == 0 {
            return None;
        }
        let mut overflow = 0;
        let v = ffi::PyLong_AsLongLongAndOverflow(value.as_ptr(), &mut overflow);
        if v == -1 && !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        (overflow == 0).then_some(v)
    }
}

/// Python's `value > limit` is false (so a NaN on either side passes).
fn not_above(value: f64, limit: f64) -> bool {
    value.partial_cmp(&limit) != Some(std::cmp::Ordering::Greater)
}

/// An event type's plan from `dataflows.native_decode.decode_maker`: the
/// type, its range-checked fields and its rules as `(kind, parameter)`.
type TypePlan<'a> = (PyObject, Vec<Py<PyString>>, Vec<(String, &'a PyAny)>);

fn rule_of(kind: &str, param: &PyAny) -> PyResult<Rule> {
    Ok(match kind {
        "future" => Rule::Future(param.extract()?),
        "promise" => Rule::Promise,
        "value" => Rule::Value(param.extract()?),
        "reroute" => Rule::Reroute,
        "python" => {
            let (check, params): (PyObject, PyObject) = param.extract()?;
            Rule::Python(check, params)
        }
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown record rule kind {other:?}"
            )))
        }
    })
}

#[pymethods]
impl Decode {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        parse: PyObject,
        max_bytes: usize,
        schema_version: i64,
        safe_years: (i32, i32),
        signing: Py<PyDict>,
        signature_problem: PyObject,
        per_type: Vec<TypePlan<'_>>,
        sourced: PyObject,
        no_timestamp: i64,
        definition: PyObject,
    ) -> PyResult<Self> {
        // SAFETY: imports the datetime C API the type checks above read.
        unsafe { ffi::PyDateTime_IMPORT() };
        if unsafe { ffi::PyDateTimeAPI() }.is_null() {
            return Err(PyErr::fetch(py));
        }
        let per_type = per_type
            .into_iter()
            .map(|(ty, range, rules)| {
                let rules = rules
                    .into_iter()
                    .map(|(kind, param)| rule_of(&kind, param))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok(PerType { ty, range, rules })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self {
            parse,
            max_bytes,
            schema_version,
            safe_years,
            signing,
            signature_problem,
            per_type,
            sourced,
            no_timestamp,
            definition,
        })
    }

    /// `step.decode_all(messages)`.
    fn decode_all<'py>(&self, py: Python<'py>, messages: &'py PyList) -> PyResult<&'py PyList> {
        let out = PyList::empty(py);
        for msg in messages {
            match self.event_of(py, msg)? {
                Some(item) => {
                    // SAFETY: appending a live object to a list (which takes
                    // its own reference).
                    if unsafe { ffi::PyList_Append(out.as_ptr(), item.ptr()) } != 0 {
                        return Err(PyErr::fetch(py));
                    }
                }
                None => {
                    let decided = self.definition.call1(py, (PyList::new(py, [msg]),))?;
                    for item in decided.as_ref(py).downcast::<PyList>()? {
                        out.append(item)?;
                    }
                }
            }
        }
        Ok(out)
    }
}
