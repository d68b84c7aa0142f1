//! One partition batch's `bronze/order_events` table, built straight into
//! Arrow buffers: the native twin of `dataflows.bronze_rows.BronzeRows.table`,
//! which stays the reference.
//!
//! Every consumed event becomes a bronze row.  In CPython the rows were
//! grouped by event type, each type's values taken out as tuples and
//! converted to Arrow a column at a time (~25 conversions per type and
//! batch), then put back into offset order: ~2 us per event, a sixteenth of
//! the event thread.  Here, in one call per batch, each event's contract
//! fields are read once, straight from their slots (or with `astuple` for a
//! type whose slots are not plain), in offset order, into column buffers
//! that Python wraps as arrays (`dataflows.native_core.bronze_maker`).
//! Which fields an event type has comes from the contract
//! (`__struct_fields__`), so a new field needs no
//! Rust unless its Arrow type is new.  JSON the writer here does not handle
//! is written by Python (`json_text`), value by value.
//!
//! `tests/unit/test_bronze_rows.py` holds the two equal as Arrow tables on
//! random batches, and `dataflows.native_core.NATIVE_BRONZE_OF` keeps this
//! from running against a changed reference.

use ahash::AHashMap;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::AsPyPointer;

use crate::fields::{frozen_offsets, slot_value};
use crate::lifecycle::{
    buffers, json_text, push_float as float, push_int as int, push_text as text, take_buffers,
    Buffers, Column,
};

/// How a contract column is filled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The event type's wire tag.
    Tag,
    /// `event_time`: the time the caller already has, in us.
    EventTime,
    /// Another zoned time: `to_us(value)`.
    Time,
    Text,
    Int,
    Float,
    /// A free-form map, as `json_text(value)`.
    Json,
}

impl Kind {
    fn named(name: &str) -> PyResult<Self> {
        Ok(match name {
            "tag" => Self::Tag,
            "event_time" => Self::EventTime,
            "time" => Self::Time,
            "text" => Self::Text,
            "int" => Self::Int,
            "float" => Self::Float,
            "json" => Self::Json,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown bronze column kind {other:?}"
                )))
            }
        })
    }

    fn buffer_kind(self) -> u8 {
        match self {
            Self::Tag | Self::Text | Self::Json => b's',
            Self::EventTime | Self::Time | Self::Int => b'i',
            Self::Float => b'f',
        }
    }
}

/// One event type: its wire tag and, per contract column, the index of its
/// field in the type's fields (None when the type has no such field: null).
struct EventClass {
    tag: String,
    fields: Vec<Option<usize>>,
    /// Per contract column, where the type keeps its field (None: no such
    /// field), when every field is a frozen Struct's slot; else None, and
    /// the fields are read with `astuple`.
    slots: Option<Vec<Option<Slot>>>,
}

/// Where a type keeps a field, and its name (for Python's error if unset).
type Slot = (isize, Py<PyString>);

/// Per contract column, the slot and name of the type's field (see
/// [`EventClass::slots`]).
fn slots_of(cls: &PyType, fields: &[Option<usize>]) -> PyResult<Option<Vec<Option<Slot>>>> {
    let py = cls.py();
    let names: Vec<&PyString> = match cls.getattr(pyo3::intern!(py, "__struct_fields__")) {
        Ok(names) => names.extract()?,
        Err(_) => return Ok(None),
    };
    let mut wanted = Vec::with_capacity(fields.len());
    for field in fields.iter().flatten() {
        wanted.push(
            *names
                .get(*field)
                .ok_or_else(|| PyValueError::new_err("a field index beyond the type's fields"))?,
        );
    }
    let offsets = match frozen_offsets(cls, &wanted)? {
        Some(offsets) => offsets,
        None => return Ok(None),
    };
    let mut found = offsets.into_iter().zip(wanted);
    Ok(Some(
        fields
            .iter()
            .map(|field| {
                field.and_then(|_| found.next().map(|(offset, name)| (offset, name.into())))
            })
            .collect(),
    ))
}

/// How one batch's bronze table is built from what the partition step
/// collected (see `BronzePlan.table`).
#[pyclass(module = "orderhealth_native", frozen)]
pub struct BronzePlan {
    /// The contract columns: name and kind.
    columns: Vec<(String, Kind)>,
    classes: AHashMap<usize, EventClass>,
    /// The names of topic, partition, offset, is_duplicate, is_late and
    /// quality_warnings.
    coordinates: [String; 6],
    to_us: PyObject,
    json_fallback: PyObject,
    /// `msgspec.structs.astuple`: every field of an event in one call, which
    /// is cheaper than an attribute look-up per field, for a type whose
    /// slots are not read directly.
    astuple: PyObject,
}

#[pymethods]
impl BronzePlan {
    /// ``columns``: the contract columns as (name, kind: "tag", "event_time",
    /// "time", "text", "int", "float" or "json"); ``classes``: event class ->
    /// (wire tag, per contract column the index of its field in
    /// ``__struct_fields__`` or None); ``coordinates``: the names of the
    /// topic, partition, offset, is_duplicate, is_late and quality_warnings
    /// columns.
    #[new]
    fn new(
        columns: Vec<(String, String)>,
        classes: &PyDict,
        coordinates: [String; 6],
        to_us: PyObject,
        json_fallback: PyObject,
        astuple: PyObject,
    ) -> PyResult<Self> {
        let mut kinds = Vec::with_capacity(columns.len());
        for (name, kind) in columns {
            kinds.push((name, Kind::named(&kind)?));
        }
        let mut by_class = AHashMap::new();
        for (cls, spec) in classes {
            let cls: &PyType = cls.downcast()?;
            let (tag, fields): (String, Vec<Option<usize>>) = spec.extract()?;
            if fields.len() != kinds.len() {
                return Err(PyValueError::new_err(
                    "a field (or None) per contract column",
                ));
            }
            let slots = slots_of(cls, &fields)?;
            by_class.insert(cls.as_ptr() as usize, EventClass { tag, fields, slots });
        }
        Ok(BronzePlan {
            columns: kinds,
            classes: by_class,
            coordinates,
            to_us,
            json_fallback,
            astuple,
        })
    }

    /// The table of one batch (what `BronzeRows.table` builds from the same
    /// lists), as `(name, validity bits or None, offsets or None, values,
    /// null count)` per column, in schema order.
    #[allow(clippy::too_many_arguments)]
    fn table(
        &self,
        py: Python<'_>,
        topic: &str,
        partition: i64,
        events: &PyList,
        offsets: Vec<i64>,
        duplicate: Vec<bool>,
        late: Vec<bool>,
        warnings: Vec<Option<&str>>,
        times: Vec<i64>,
    ) -> PyResult<PyObject> {
        let n = events.len();
        if [
            offsets.len(),
            duplicate.len(),
            late.len(),
            warnings.len(),
            times.len(),
        ]
        .iter()
        .any(|len| *len != n)
        {
            return Err(PyValueError::new_err("one value of each per event"));
        }
        let mut columns: Vec<Buffers> = self
            .columns
            .iter()
            .map(|(name, kind)| buffers(name, kind.buffer_kind()))
            .collect();
        for (event, at_us) in events.iter().zip(&times) {
            self.write(py, &mut columns, event, *at_us)?;
        }
        let [t, p, o, d, l, w] = &self.coordinates;
        let mut topics = buffers(t, b's');
        let mut partitions = buffers(p, b'p');
        for _ in 0..n {
            text(&mut topics, Some(topic));
            int(&mut partitions, Some(partition));
        }
        let mut offset_column = buffers(o, b'i');
        offset_column.valid = vec![true; n];
        offset_column.column = Column::I64(offsets);
        let mut duplicates = buffers(d, b'b');
        duplicates.valid = vec![true; n];
        duplicates.column = Column::Bool(duplicate);
        let mut lates = buffers(l, b'b');
        lates.valid = vec![true; n];
        lates.column = Column::Bool(late);
        let mut warning_column = buffers(w, b's');
        for warning in warnings {
            text(&mut warning_column, warning);
        }
        columns.extend([
            topics,
            partitions,
            offset_column,
            duplicates,
            lates,
            warning_column,
        ]);
        take_buffers(py, &mut columns)
    }
}

impl BronzePlan {
    /// The contract columns of one event.
    fn write(
        &self,
        py: Python<'_>,
        columns: &mut [Buffers],
        event: &PyAny,
        at_us: i64,
    ) -> PyResult<()> {
        let class = self
            .classes
            .get(&(event.get_type().as_ptr() as usize))
            .ok_or_else(|| PyValueError::new_err("not an event of the contract"))?;
        // Straight from the slots: the tuple of `astuple` was a new object
        // and a reference per field, for every event (~a third of the call).
        let values: Option<&PyTuple> = match class.slots {
            Some(_) => None,
            None => Some(self.astuple.as_ref(py).call1((event,))?.downcast()?),
        };
        for (i, (((_, kind), field), buffer)) in self
            .columns
            .iter()
            .zip(&class.fields)
            .zip(columns)
            .enumerate()
        {
            let value = match (field, &class.slots, values) {
                (None, _, _) => None,
                (Some(_), Some(slots), _) => match slots[i] {
                    // SAFETY: the offset is of this exact type's field.
                    Some((offset, ref name)) => match unsafe { slot_value(event, offset) } {
                        Some(value) => Some(value),
                        None => Some(event.getattr(name.as_ref(py))?), // unset: Python's error
                    },
                    None => None,
                },
                (Some(index), None, Some(values)) => Some(values.get_item(*index)?),
                (Some(_), None, None) => unreachable!("astuple's values without slots"),
            }
            .filter(|v| !v.is_none());
            match (kind, value) {
                (Kind::Tag, _) => text(buffer, Some(&class.tag)),
                (Kind::EventTime, Some(_)) => int(buffer, Some(at_us)),
                (Kind::Time, Some(v)) => {
                    int(buffer, Some(self.to_us.call1(py, (v,))?.extract(py)?));
                }
                (Kind::Int, Some(v)) => int(buffer, Some(v.extract()?)),
                (Kind::Float, Some(v)) => float(buffer, Some(v.extract()?)),
                (Kind::Text, Some(v)) => text(buffer, Some(v.downcast::<PyString>()?.to_str()?)),
                (Kind::Json, Some(v)) => match json_text(v)? {
                    Some(json) => text(buffer, Some(&json)),
                    None => {
                        let json: String = self.json_fallback.call1(py, (v,))?.extract(py)?;
                        text(buffer, Some(&json));
                    }
                },
                (Kind::EventTime | Kind::Time | Kind::Int, None) => int(buffer, None),
                (Kind::Float, None) => float(buffer, None),
                (Kind::Text | Kind::Json, None) => text(buffer, None),
            }
        }
        Ok(())
    }
}
