//! An order's view derived from its events: the native twin of
//! `dataflows.lifecycle.derive_view`, which stays the definition.
//!
//! Every touch of an order derives its view again from all its events.  In
//! CPython that was ~15 us per derivation, the largest Python piece of the
//! per-partition step left: a dispatch per event, dicts and lists of stage
//! times, and the view's two dozen fields.  Here one pass over the events
//! collects the same values and builds the same Python objects (the view,
//! its transitions, flags and outcome, from the classes Python hands in), so
//! everything downstream is unchanged.
//!
//! An order whose stages contradict one another (a stage earlier than one
//! that should precede it) is handed to the Python definition whole: it is
//! rare, and its flag's text needs the reference's date formatting.
//! `tests/unit/test_native_view.py` holds the two equal on random orders, and
//! `dataflows.native_core.NATIVE_VIEW_OF` keeps this from running against a
//! changed definition.

use ahash::AHashMap;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::AsPyPointer;

use crate::fields::{field, field_named};

/// What an event class does in a derivation beyond its stage time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    Plain,
    Created,
    Promise,
    Cancelled,
    Routed,
    Rerouted,
    Shipped,
    Exception,
}

impl Special {
    fn named(name: &str) -> PyResult<Self> {
        Ok(match name {
            "" => Self::Plain,
            "created" => Self::Created,
            "promise" => Self::Promise,
            "cancelled" => Self::Cancelled,
            "routed" => Self::Routed,
            "rerouted" => Self::Rerouted,
            "shipped" => Self::Shipped,
            "exception" => Self::Exception,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown event role {other:?}"
                )))
            }
        })
    }
}

/// One event class's role (`dataflows.lifecycle._Stages.roles`).
struct Role {
    /// Its wire tag.
    name: Py<PyString>,
    /// Its index in the stage order, if it is a lifecycle stage.
    stage: Option<usize>,
    /// Whether it moves the current stage.
    moves: bool,
    special: Special,
}

/// One flag before it becomes a Python `Flag`: (at, kind, reason).
type RawFlag = (i64, Py<PyString>, Py<PyString>);

/// The derivation plan for one settings, and the classes it builds.
#[pyclass(module = "orderhealth_native", frozen)]
pub struct Views {
    /// Event class (by address: the classes live as long as the module) -> role.
    roles: AHashMap<usize, Role>,
    stages: Vec<Py<PyString>>,
    sla: Vec<Option<i64>>,
    /// `sla` as Python objects (int or None), made once.
    sla_objects: Vec<PyObject>,
    sla_reasons: Vec<Option<Py<PyString>>>,
    delivered: Option<usize>,
    base_attributes: Vec<Py<PyString>>,
    view_type: PyObject,
    transition_type: PyObject,
    flag_type: PyObject,
    outcome_type: PyObject,
    /// OPEN, ON_TIME, LATE, CANCELLED.
    statuses: [PyObject; 4],
    /// EXCEPTION, REROUTE, STAGE_SLA_BREACH.
    kinds: [Py<PyString>; 3],
    to_us: PyObject,
    /// `derive_view` for the orders handed to Python.
    fallback: PyObject,
}

fn py_int(py: Python<'_>, value: Option<i64>) -> PyObject {
    match value {
        Some(v) => v.into_py(py),
        None => py.None(),
    }
}

#[pymethods]
impl Views {
    /// ``roles``: event class -> (wire tag, stage index or None, moves the
    /// current stage, special role name or ""); ``stages``: the stage order's
    /// wire tags, with ``sla`` (us or None) and ``sla_reasons`` (the breach
    /// flag's text or None) per stage; ``classes``: (OrderView, Transition,
    /// Flag, Outcome); ``statuses``: OPEN, ON_TIME, LATE, CANCELLED;
    /// ``kinds``: the flag kinds EXCEPTION, REROUTE, STAGE_SLA_BREACH.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        roles: &PyDict,
        stages: Vec<Py<PyString>>,
        sla: Vec<Option<i64>>,
        sla_reasons: Vec<Option<Py<PyString>>>,
        delivered: Option<usize>,
        base_attributes: Vec<Py<PyString>>,
        classes: (PyObject, PyObject, PyObject, PyObject),
        statuses: (PyObject, PyObject, PyObject, PyObject),
        kinds: (Py<PyString>, Py<PyString>, Py<PyString>),
        to_us: PyObject,
        fallback: PyObject,
    ) -> PyResult<Self> {
        if sla.len() != stages.len() || sla_reasons.len() != stages.len() {
            return Err(PyValueError::new_err("an SLA and a reason per stage"));
        }
        if delivered.map_or(false, |d| d >= stages.len()) {
            return Err(PyValueError::new_err("stage index out of range"));
        }
        let mut by_class = AHashMap::new();
        for (cls, role) in roles {
            let cls: &PyType = cls.downcast()?;
            let (name, stage, moves, special): (Py<PyString>, Option<usize>, bool, &str) =
                role.extract()?;
            if stage.map_or(false, |s| s >= stages.len()) {
                return Err(PyValueError::new_err("stage index out of range"));
            }
            by_class.insert(
                cls.as_ptr() as usize,
                Role {
                    name,
                    stage,
                    moves,
                    special: Special::named(special)?,
                },
            );
        }
        let sla_objects = sla.iter().map(|s| py_int(py, *s)).collect();
        Ok(Views {
            roles: by_class,
            stages,
            sla,
            sla_objects,
            sla_reasons,
            delivered,
            base_attributes,
            view_type: classes.0,
            transition_type: classes.1,
            flag_type: classes.2,
            outcome_type: classes.3,
            statuses: [statuses.0, statuses.1, statuses.2, statuses.3],
            kinds: [kinds.0, kinds.1, kinds.2],
            to_us,
            fallback,
        })
    }

    /// The view of ``order_id`` from its ``events`` in `sort_events` order
    /// and their ``times`` (us), at ``watermark_us``: what
    /// `derive_view(order_id, events, settings, watermark_us, times=times)` gives.
    fn derive(
        &self,
        py: Python<'_>,
        order_id: &PyString,
        events: &PyList,
        watermark_us: Option<i64>,
        times: &PyList,
    ) -> PyResult<PyObject> {
        if events.len() != times.len() {
            return Err(PyValueError::new_err("one time per event"));
        }
        if events.is_empty() {
            return Err(PyValueError::new_err("an order has at least one event"));
        }
        let stage_dict = PyDict::new(py);
        let contexts = PyDict::new(py);
        // Each stage's first time, with the caller's int object for it: the
        // view's times share the objects of `times` instead of a new int
        // each (a fifth of a derivation was allocating ints; the transitions
        // stay in hot state, where shared ints are also 32 bytes less each).
        let mut first: Vec<Option<(i64, &PyAny)>> = vec![None; self.stages.len()];
        let mut created: Option<(&PyAny, &PyAny)> = None;
        let mut latest_promise: Option<i64> = None;
        let mut cancelled: Option<(&PyAny, i64, &PyAny)> = None;
        let mut warehouses: Vec<(i64, &PyAny)> = Vec::new();
        let mut carriers: Vec<(i64, &PyAny)> = Vec::new();
        let mut flags: Vec<RawFlag> = Vec::new();
        let mut current: Option<&Py<PyString>> = None;
        let mut last_time: Option<i64> = None;
        let mut time_objects: Vec<&PyAny> = Vec::with_capacity(times.len());

        for (event, at_object) in events.iter().zip(times.iter()) {
            let at: i64 = at_object.extract()?;
            if last_time != Some(at) {
                last_time = Some(at); // ascending: the events are sorted
                time_objects.push(at_object);
            }
            let role = self
                .roles
                .get(&(event.get_type().as_ptr() as usize))
                .ok_or_else(|| PyValueError::new_err("not an event of the contract"))?;
            if let Some(stage) = role.stage {
                if first[stage].is_none() {
                    first[stage] = Some((at, at_object));
                    stage_dict.set_item(&role.name, at_object)?;
                }
            }
            let context = field!(event, "context")?;
            if !context.is_none() {
                contexts.set_item(&role.name, context)?;
            }
            if role.moves {
                current = Some(&role.name);
            }
            match role.special {
                Special::Plain => {}
                Special::Created => {
                    if created.is_none() {
                        created = Some((event, at_object));
                    }
                }
                Special::Promise => {
                    let promised = field!(event, "promised_delivery_at")?;
                    latest_promise = Some(self.to_us.call1(py, (promised,))?.extract(py)?);
                }
                Special::Cancelled => {
                    if cancelled.is_none() {
                        cancelled = Some((event, at, at_object));
                    }
                }
                Special::Routed => {
                    warehouses.push((at, field!(event, "warehouse_id")?));
                }
                Special::Rerouted => {
                    let warehouse = field!(event, "warehouse_id")?;
                    let reason = field!(event, "reason")?;
                    warehouses.push((at, warehouse));
                    let text = format!("rerouted to {}: {}", warehouse.str()?, reason.str()?);
                    flags.push((
                        at,
                        self.kinds[1].clone_ref(py),
                        PyString::new(py, &text).into(),
                    ));
                }
                Special::Shipped => {
                    carriers.push((at, field!(event, "carrier_id")?));
                }
                Special::Exception => {
                    let code = field!(event, "exception_code")?;
                    let text = format!("exception {}", code.str()?);
                    flags.push((
                        at,
                        self.kinds[0].clone_ref(py),
                        PyString::new(py, &text).into(),
                    ));
                }
            }
        }

        let first_promise: Option<i64> = match created {
            Some((event, _)) => {
                let promised = field!(event, "promised_delivery_at")?;
                Some(self.to_us.call1(py, (promised,))?.extract(py)?)
            }
            None => None,
        };
        let cancelled_us = cancelled.map(|(_, at, _)| at);
        let present: Vec<(usize, i64, &PyAny)> = first
            .iter()
            .enumerate()
            .filter_map(|(index, at)| at.map(|(at, object)| (index, at, object)))
            .collect();
        if present.windows(2).any(|pair| pair[0].1 > pair[1].1) {
            // Stages out of lifecycle order: the reference flags them.
            return self
                .fallback
                .call1(py, (order_id, events, watermark_us, times));
        }

        let dwells = PyDict::new(py);
        let mut transitions: Vec<PyObject> = Vec::new();
        let mut deadlines: Vec<i64> = Vec::new();
        for (k, &(stage, start, start_object)) in present.iter().enumerate() {
            if Some(stage) == self.delivered {
                continue;
            }
            let completed_at = present.get(k + 1).map(|(_, at, _)| *at);
            let mut end = completed_at;
            if let Some(c) = cancelled_us {
                if c >= start && end.map_or(true, |e| c < e) {
                    end = Some(c);
                }
            }
            let sla = self.sla[stage];
            let name = &self.stages[stage];
            if let Some(done) = completed_at {
                dwells.set_item(name, done - start)?;
                let done_object = present[k + 1].2;
                transitions.push(self.transition_type.call1(
                    py,
                    (name, start_object, done_object, &self.sla_objects[stage]),
                )?);
            }
            let sla = match sla {
                Some(sla) => sla,
                None => continue,
            };
            let deadline = start + sla;
            let breached = match end {
                Some(e) => e > deadline,
                None => {
                    if watermark_us.map_or(false, |w| w > deadline) {
                        true
                    } else {
                        deadlines.push(deadline);
                        false
                    }
                }
            };
            if breached {
                let reason = self.sla_reasons[stage].as_ref().ok_or_else(|| {
                    PyValueError::new_err("no breach text for a stage with an SLA")
                })?;
                flags.push((deadline, self.kinds[2].clone_ref(py), reason.clone_ref(py)));
            }
        }

        // The promise outcome (dataflows.outcome.resolve).
        let delivered_us = self.delivered.and_then(|d| first[d].map(|(at, _)| at));
        let mut resolution: Option<(usize, i64)> = None;
        if let Some(promise) = first_promise {
            match delivered_us {
                Some(d) if d <= promise => resolution = Some((1, d)),
                Some(_) => resolution = Some((2, promise)),
                None if watermark_us.map_or(false, |w| w > promise) => {
                    resolution = Some((2, promise))
                }
                None => {}
            }
        }
        let outcome = match (cancelled_us, resolution) {
            (Some(c), None) => (3, Some(c)),
            (Some(c), Some((_, at))) if c < at => (3, Some(c)),
            (_, Some((status, at))) => (status, Some(at)),
            (None, None) => (0, None),
        };
        let outcome = self.outcome_type.call1(
            py,
            (
                self.statuses[outcome.0].clone_ref(py),
                py_int(py, outcome.1),
            ),
        )?;
        if let Some(promise) = first_promise {
            if delivered_us.is_none()
                && watermark_us.map_or(true, |w| w <= promise)
                && cancelled_us.map_or(true, |c| c >= promise)
            {
                // The outcome turns late when the watermark passes the first promise.
                deadlines.push(promise);
            }
        }

        flags.sort_by(|a, b| {
            let text = |s: &Py<PyString>| -> String {
                s.as_ref(py).to_str().map(str::to_owned).unwrap_or_default()
            };
            a.0.cmp(&b.0)
                .then_with(|| text(&a.1).cmp(&text(&b.1)))
                .then_with(|| text(&a.2).cmp(&text(&b.2)))
        });
        let mut flag_objects = Vec::with_capacity(flags.len());
        for (at, kind, reason) in flags {
            flag_objects.push(self.flag_type.call1(py, (kind, at, reason))?);
        }

        let attributes = PyDict::new(py);
        if let Some((event, _)) = created {
            for name in &self.base_attributes {
                attributes.set_item(name, field_named!(event, name.as_ref(py))?)?;
            }
        }
        let timeline = |entries: &[(i64, &PyAny)]| -> Py<PyTuple> {
            PyTuple::new(
                py,
                entries
                    .iter()
                    .map(|(at, value)| PyTuple::new(py, [at.into_py(py), value.into_py(py)])),
            )
            .into()
        };
        let last = |entries: &[(i64, &PyAny)]| -> PyObject {
            entries.last().map_or(py.None(), |e| e.1.into_py(py))
        };
        // The events are sorted, and there is at least one.
        let fields: [PyObject; 23] = [
            order_id.into_py(py),
            events.len().into_py(py),
            created.map_or(py.None(), |(_, at)| at.into_py(py)),
            py_int(py, first_promise),
            py_int(py, latest_promise.or(first_promise)),
            stage_dict.into_py(py),
            dwells.into_py(py),
            PyTuple::new(py, transitions).into_py(py),
            PyTuple::new(py, &time_objects).into_py(py),
            current.map_or(py.None(), |name| name.clone_ref(py).into_py(py)),
            time_objects[time_objects.len() - 1].into_py(py),
            cancelled.map_or(py.None(), |(_, _, at)| at.into_py(py)),
            match cancelled {
                Some((event, _, _)) => field!(event, "reason")?.into_py(py),
                None => py.None(),
            },
            warehouses.first().map_or(py.None(), |e| e.1.into_py(py)),
            last(&warehouses),
            last(&carriers),
            attributes.into_py(py),
            contexts.into_py(py),
            PyTuple::new(py, flag_objects).into_py(py),
            outcome,
            py_int(py, deadlines.iter().min().copied()),
            timeline(&warehouses).into_py(py),
            timeline(&carriers).into_py(py),
        ];
        self.view_type.call1(py, PyTuple::new(py, fields))
    }
}
