//! A partition batch's events taken in: the native twin of
//! `dataflows.partition_processor.PartitionProcessor.take_in`, which stays
//! the definition.
//!
//! Every event of a batch is decided duplicate, late or retired, written to
//! the batch's bronze rows and, if it counts, added to its order's hot state.
//! In CPython that loop was a tenth of the streaming core's instructions:
//! ~40 bytecodes per event, most of them attribute reads and writes by name.
//! Here each event costs the container operations themselves (a dict look-up,
//! a set test, six list appends); the rare cases -- a redelivered id (is its
//! payload different?), an event older than its order's newest (where in the
//! order does it go?) -- call the definition's own helpers, and a new order
//! is built by the definition's class.
//!
//! `dataflows.native_intake.NATIVE_INTAKE_OF` keeps this from running
//! against a changed definition; `tests/unit/test_native_intake.py` and the
//! cores' end-to-end equality tests hold the two equal.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString, PyTuple};
use pyo3::AsPyPointer;

use crate::fields::{field, set_slot, slot};
use crate::times::to_us;

/// What the definition's module provides, and the partition's settings.
#[pyclass(module = "orderhealth_native", frozen)]
pub struct Intake {
    /// `_Order`: a new order's hot state.
    order_class: PyObject,
    /// `_insert(order, event, at_us)`: an event not after the order's newest.
    insert: PyObject,
    /// `_conflicts(order, event)`: a redelivered id with a different payload.
    conflicts: PyObject,
    /// The event types that finish an order (`_TERMINAL`).
    terminal: Vec<PyObject>,
    /// Bronze warnings: `ORDER_EVICTED`, `EVENT_ID_CONFLICT`.
    evicted_warning: Py<PyString>,
    conflict_warning: Py<PyString>,
    lateness_us: i64,
    retention_us: i64,
}

/// The bronze rows' lists (`BronzeRows.add` appends to each).
struct Bronze<'py> {
    events: &'py PyList,
    offsets: &'py PyList,
    duplicate: &'py PyList,
    late: &'py PyList,
    warnings: &'py PyList,
    times: &'py PyList,
}

impl<'py> Bronze<'py> {
    fn of(rows: &'py PyAny) -> PyResult<Self> {
        let py = rows.py();
        let list =
            |name: &PyString| -> PyResult<&'py PyList> { Ok(rows.getattr(name)?.downcast()?) };
        Ok(Self {
            events: list(intern!(py, "_events"))?,
            offsets: list(intern!(py, "offsets"))?,
            duplicate: list(intern!(py, "duplicate"))?,
            late: list(intern!(py, "late"))?,
            warnings: list(intern!(py, "warnings"))?,
            times: list(intern!(py, "times"))?,
        })
    }
}

/// `",".join(warnings) if warnings else None`, with `extra` after them.
fn joined(py: Python<'_>, warnings: &PyTuple, extra: Option<&PyString>) -> PyResult<PyObject> {
    if warnings.is_empty() && extra.is_none() {
        return Ok(py.None());
    }
    let mut parts: Vec<&str> = Vec::with_capacity(warnings.len() + 1);
    for warning in warnings {
        parts.push(warning.downcast::<PyString>()?.to_str()?);
    }
    if let Some(extra) = extra {
        parts.push(extra.to_str()?);
    }
    Ok(PyString::new(py, &parts.join(",")).into())
}

fn optional_int(value: &PyAny) -> PyResult<Option<i64>> {
    value.extract()
}

#[pymethods]
impl Intake {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        order_class: PyObject,
        insert: PyObject,
        conflicts: PyObject,
        terminal: Vec<PyObject>,
        evicted_warning: Py<PyString>,
        conflict_warning: Py<PyString>,
        lateness_us: i64,
        retention_us: i64,
    ) -> Self {
        Self {
            order_class,
            insert,
            conflicts,
            terminal,
            evicted_warning,
            conflict_warning,
            lateness_us,
            retention_us,
        }
    }

    /// `processor.take_in(batch, bronze, touched)`.
    fn take_in(
        &self,
        py: Python<'_>,
        processor: &PyAny,
        batch: &PyList,
        bronze: &PyAny,
        touched: &PySet,
    ) -> PyResult<i64> {
        let orders: &PyDict = processor.getattr(intern!(py, "orders"))?.downcast()?;
        let evicted: &PyDict = processor.getattr(intern!(py, "evicted"))?.downcast()?;
        let mut max_event_us = optional_int(processor.getattr(intern!(py, "max_event_us"))?)?;
        let produced_name = intern!(py, "newest_produced_us");
        let mut newest_produced = optional_int(processor.getattr(produced_name)?)?;
        let (mut produced_moved, mut max_moved) = (false, false);
        let rows = Bronze::of(bronze)?;
        let mut watermark = max_event_us.map(|m| m - self.lateness_us);
        let mut last_offset: i64 = -1;
        let (true_, false_) = (true.to_object(py), false.to_object(py));
        for item in batch {
            let event = field!(item, "event")?;
            let order_id = field!(event, "order_id")?;
            let at = to_us(py, field!(event, "event_time")?)?;
            let order = orders.get_item(order_id);
            let warnings: &PyTuple = field!(item, "warnings")?.downcast()?;
            let retired = match (order, watermark) {
                (None, _) => evicted.contains(order_id)?,
                (Some(order), Some(w)) => {
                    slot!(order, "terminal")?.is_true()? && {
                        let last: i64 = slot!(order, "last_event_us")?.extract()?;
                        w > last + self.retention_us
                    }
                }
                (Some(_), None) => false,
            };
            let event_id = field!(event, "event_id")?;
            let (duplicate, late, extra) = if retired {
                (false, true, Some(self.evicted_warning.as_ref(py)))
            } else {
                let duplicate = match order {
                    None => false,
                    Some(order) => slot!(order, "event_ids")?
                        .downcast::<PySet>()?
                        .contains(event_id)?,
                };
                let late = !duplicate && watermark.map_or(false, |w| at < w);
                let conflict = duplicate
                    && self
                        .conflicts
                        .call1(py, (order, event))?
                        .as_ref(py)
                        .is_true()?;
                (
                    duplicate,
                    late,
                    conflict.then(|| self.conflict_warning.as_ref(py)),
                )
            };
            let offset = field!(item, "offset")?;
            let at_object = at.to_object(py);
            rows.events.append(event)?;
            rows.offsets.append(offset)?;
            rows.duplicate
                .append(if duplicate { &true_ } else { &false_ })?;
            rows.late.append(if late { &true_ } else { &false_ })?;
            rows.warnings.append(joined(py, warnings, extra)?)?;
            rows.times.append(&at_object)?;
            last_offset = offset.extract()?;
            if let Some(produced) = optional_int(field!(item, "produced_us")?)? {
                if produced > newest_produced.unwrap_or(-1) {
                    newest_produced = Some(produced);
                    produced_moved = true;
                }
            }
            if duplicate || late {
                continue;
            }
            let order = match order {
                Some(order) => order,
                None => {
                    let order = self.order_class.as_ref(py).call0()?;
                    set_slot!(order, "first_seen_us", at_object.as_ref(py))?;
                    orders.set_item(order_id, order)?;
                    order
                }
            };
            slot!(order, "event_ids")?
                .downcast::<PySet>()?
                .add(event_id)?;
            let times: &PyList = slot!(order, "times")?.downcast()?;
            let after_newest = times.is_empty()
                || times
                    .get_item(times.len() - 1)?
                    .extract::<i64>()
                    .map_or(false, |newest| newest < at);
            if after_newest {
                // Nearly always: an order's events come in order.
                slot!(order, "events")?
                    .downcast::<PyList>()?
                    .append(event)?;
                times.append(&at_object)?;
            } else {
                self.insert.call1(py, (order, event, &at_object))?;
            }
            set_slot!(order, "last_offset", offset)?;
            let last_event: i64 = slot!(order, "last_event_us")?.extract()?;
            if at > last_event {
                set_slot!(order, "last_event_us", at_object.as_ref(py))?;
            }
            let kind = event.get_type().as_ptr();
            if self.terminal.iter().any(|t| t.as_ptr() == kind) {
                set_slot!(order, "terminal", true_.as_ref(py))?;
            }
            touched.add(order_id)?;
            if max_event_us.map_or(true, |m| at > m) {
                max_event_us = Some(at);
                watermark = Some(at - self.lateness_us);
                max_moved = true;
            }
        }
        if max_moved {
            processor.setattr(intern!(py, "max_event_us"), max_event_us)?;
        }
        if produced_moved {
            processor.setattr(produced_name, newest_produced)?;
        }
        Ok(last_offset)
    }
}
