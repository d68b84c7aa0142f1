//! The built-in facts of `dataflows.metrics.FACTS`, read from an order view.
//!
//! An order is derived again at every touch, and turning its view into
//! items -- `(fact index, at us, dimension values, value)`, see
//! `dataflows.contributions.order_items` -- was the largest part of that in
//! CPython: a generator and a `FactValue` per fact, a tuple per item, and
//! the dimension values read again at every moment.  Here the catalogue's
//! built-in facts are evaluated in one pass over the view's fields, and the
//! items stay in Rust (an [`Items`]) until `Delta.apply` diffs them.
//!
//! The Python catalogue stays the definition and the reference:
//! `tests/unit/test_native_facts.py` holds these to `order_items` on random
//! orders.  A fact not named here -- a plugin's, or a new one -- is
//! evaluated in Python and handed in (`extra`), so adding a metric still
//! needs no Rust.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::fields::{field, field_named};
use crate::{interner, Interner, NONE};

/// A built-in fact's stream function (`dataflows/metrics.py`), by name.
enum Builtin {
    Created,
    Resolved,
    Delivered,
    Deviation,
    Cancelled,
    Shipped,
    Cycle,
    /// Created -> the first time of this stage.
    SinceCreated(Py<PyString>),
    Transition,
    Active,
    Anomalous,
    LateOpenIn,
    LateOpenOut,
    /// Evaluated in Python, handed to [`Facts::items`] as `extra`.
    Python,
}

impl Builtin {
    fn named(py: Python<'_>, name: &str) -> Self {
        match name {
            "created" => Self::Created,
            "resolved" => Self::Resolved,
            "delivered" => Self::Delivered,
            "deviation" => Self::Deviation,
            "cancelled" => Self::Cancelled,
            "shipped" => Self::Shipped,
            "cycle" => Self::Cycle,
            "gray_zone" => Self::SinceCreated(PyString::new(py, "WAREHOUSE_ACCEPTED").into()),
            "finance_review" => Self::SinceCreated(PyString::new(py, "FINANCE_APPROVED").into()),
            "stage_transition" => Self::Transition,
            "active" => Self::Active,
            "anomalous" => Self::Anomalous,
            "late_open_in" => Self::LateOpenIn,
            "late_open_out" => Self::LateOpenOut,
            _ => Self::Python,
        }
    }
}

/// How one dimension is read (`dataflows.dimensions.DIMENSION_READERS`).
enum Reader {
    /// The same value at every moment (interned id).
    Constant(u32),
    /// An ORDER_CREATED attribute, known from the order's creation on.
    Attribute(Py<PyString>),
    /// The latest `(time, value)` of a view timeline at or before the moment.
    Timeline(Py<PyString>),
}

/// One item: the Python tuple `(fact index, at us, dimension values,
/// value)`, with the values as an index into [`Items::dims`].  24 bytes: the
/// hot state keeps one per fact of every open order.
#[derive(Clone, Copy)]
pub(crate) struct Item {
    pub(crate) at: i64,
    pub(crate) value: i64,
    pub(crate) fact: u32,
    pub(crate) dims: u32,
}

/// An order's items, and their distinct tuples of dimension values
/// (interned ids, [`NONE`] for None).  Boxed slices: no spare capacity.
#[pyclass(module = "orderhealth_native", frozen)]
pub(crate) struct Items {
    pub(crate) items: Box<[Item]>,
    pub(crate) dims: Box<[Box<[u32]>]>,
}

#[pymethods]
impl Items {
    /// The items as `order_items` gives them (for tests and inspection).
    fn as_tuples(&self, py: Python<'_>) -> Py<PyTuple> {
        let strings = interner();
        let dims: Vec<Py<PyTuple>> = self
            .dims
            .iter()
            .map(|ids| {
                let values = ids.iter().map(|id| {
                    if *id == NONE {
                        py.None()
                    } else {
                        strings.name(py, *id).into_py(py)
                    }
                });
                PyTuple::new(py, values).into()
            })
            .collect();
        let items = self.items.iter().map(|item| {
            let values = dims[item.dims as usize].clone_ref(py);
            (item.fact, item.at, values, item.value).into_py(py)
        });
        PyTuple::new(py, items.collect::<Vec<PyObject>>()).into()
    }

    fn __len__(&self) -> usize {
        self.items.len()
    }
}

/// The view's fields the built-in facts read.
struct View<'py> {
    created: Option<i64>,
    first_promise: Option<i64>,
    status: &'py PyAny,
    resolved: Option<i64>,
    stage_us: &'py PyDict,
    cancelled: Option<i64>,
    first_warehouse: &'py PyAny,
    warehouse_timeline: Vec<(i64, &'py PyAny)>,
    attributes: &'py PyDict,
    view: &'py PyAny,
}

impl<'py> View<'py> {
    fn read(view: &'py PyAny) -> PyResult<Self> {
        let outcome = field!(view, "outcome")?;
        Ok(View {
            created: field!(view, "created_us")?.extract()?,
            first_promise: field!(view, "first_promise_us")?.extract()?,
            status: field!(outcome, "status")?,
            resolved: field!(outcome, "resolved_at_us")?.extract()?,
            stage_us: field!(view, "stage_us")?.downcast()?,
            cancelled: field!(view, "cancelled_us")?.extract()?,
            first_warehouse: field!(view, "first_warehouse")?,
            warehouse_timeline: timeline(field!(view, "warehouse_timeline")?)?,
            attributes: field!(view, "attributes")?.downcast()?,
            view,
        })
    }

    fn stage(&self, py: Python<'_>, name: &str) -> PyResult<Option<i64>> {
        match self.stage_us.get_item(PyString::new(py, name)) {
            Some(at) => Ok(Some(at.extract()?)),
            None => Ok(None),
        }
    }

    /// `_created_by`: outcome facts count only from the order's creation on.
    fn created_by(&self, at: Option<i64>) -> bool {
        matches!((at, self.created), (Some(at), Some(created)) if created <= at)
    }
}

/// A view timeline: `(time, value)` pairs in time order.
fn timeline(value: &PyAny) -> PyResult<Vec<(i64, &PyAny)>> {
    let pairs: &PyTuple = value.downcast()?;
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs.iter() {
        let pair: &PyTuple = pair.downcast()?;
        out.push((pair.get_item(0)?.extract()?, pair.get_item(1)?));
    }
    Ok(out)
}

/// `OrderView.value_at`: the latest entry at or before `at` (times ascend).
fn value_at<'a>(timeline: &[(i64, &'a PyAny)], at: i64) -> Option<&'a PyAny> {
    let found = timeline.partition_point(|(t, _)| *t <= at);
    if found == 0 {
        None
    } else {
        Some(timeline[found - 1].1)
    }
}

/// The interned id of a dimension value (`str()` of it, as the Python readers).
fn value_id(strings: &mut Interner, value: Option<&PyAny>) -> PyResult<u32> {
    match value {
        None => Ok(NONE),
        Some(v) if v.is_none() => Ok(NONE),
        Some(v) => match v.downcast::<PyString>() {
            Ok(text) => strings.id(text),
            Err(_) => strings.id(v.str()?),
        },
    }
}

/// Every built-in fact of an order (see the module docs).
#[pyclass(module = "orderhealth_native", frozen)]
pub(crate) struct Facts {
    facts: Vec<Builtin>,
    readers: Vec<Reader>,
    /// OutcomeStatus members ON_TIME, LATE and CANCELLED (compared by identity).
    on_time: PyObject,
    late: PyObject,
    cancelled: PyObject,
}

#[pymethods]
impl Facts {
    /// `names`: the fact names in FACTS order; `dims`: per dimension in
    /// settings order, `("constant", value)`, `("attribute", name)` or
    /// `("timeline", view field)`; `statuses`: OutcomeStatus ON_TIME, LATE,
    /// CANCELLED.
    #[new]
    fn new(
        py: Python<'_>,
        names: Vec<&str>,
        dims: Vec<(&str, &PyString)>,
        statuses: (PyObject, PyObject, PyObject),
    ) -> PyResult<Self> {
        let mut readers = Vec::with_capacity(dims.len());
        {
            let mut strings = interner();
            for (kind, arg) in dims {
                readers.push(match kind {
                    "constant" => Reader::Constant(strings.id(arg)?),
                    "attribute" => Reader::Attribute(arg.into()),
                    "timeline" => Reader::Timeline(arg.into()),
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "unknown dimension reader {other:?}"
                        )))
                    }
                });
            }
        }
        let (on_time, late, cancelled) = statuses;
        Ok(Facts {
            facts: names.iter().map(|name| Builtin::named(py, name)).collect(),
            readers,
            on_time,
            late,
            cancelled,
        })
    }

    /// Fact indexes evaluated in Python (to hand in as `extra`).
    fn python_facts(&self) -> Vec<usize> {
        (0..self.facts.len())
            .filter(|i| matches!(self.facts[*i], Builtin::Python))
            .collect()
    }

    /// The order's items, in `order_items` order.  `extra`: the items of the
    /// facts evaluated in Python, in fact order.
    #[args(extra = "None")]
    fn items(&self, py: Python<'_>, view: &PyAny, extra: Option<&PyTuple>) -> PyResult<Items> {
        let v = View::read(view)?;
        let outcome = self.outcome(py, &v)?;
        // (fact, at, value, dimensions' moment)
        let mut raw: Vec<(usize, i64, i64, i64)> = Vec::new();
        let mut extra_items = extra.map(|t| t.iter()).into_iter().flatten().peekable();
        let mut python_dims: Vec<(usize, &PyTuple)> = Vec::new();
        for (index, fact) in self.facts.iter().enumerate() {
            if !matches!(fact, Builtin::Python) {
                let mut push = |at, value, moment| raw.push((index, at, value, moment));
                self.builtin(py, fact, &v, &outcome, &mut push)?;
                continue;
            }
            while let Some(item) = extra_items.peek() {
                let item: &PyTuple = item.downcast()?;
                if item.get_item(0)?.extract::<usize>()? != index {
                    break;
                }
                python_dims.push((raw.len(), item.get_item(2)?.downcast()?));
                let (at, value) = (item.get_item(1)?.extract()?, item.get_item(3)?.extract()?);
                raw.push((index, at, value, 0));
                extra_items.next();
            }
        }
        if extra_items.peek().is_some() {
            return Err(PyValueError::new_err(
                "extra items must be of the facts evaluated in Python, in fact order",
            ));
        }
        self.resolve_dims(py, &v, raw, python_dims)
    }
}

/// What several facts read of the order's outcome alike.
struct OutcomeFacts {
    on_time: bool,
    late: bool,
    cancelled: bool,
    delivered: Option<i64>,
    /// Delivery time of an order not cancelled before resolving (`_delivered_kept`).
    delivered_kept: Option<i64>,
}

impl Facts {
    fn outcome(&self, py: Python<'_>, v: &View<'_>) -> PyResult<OutcomeFacts> {
        let cancelled = v.status.is(&self.cancelled);
        let delivered = v.stage(py, "DELIVERED")?;
        Ok(OutcomeFacts {
            on_time: v.status.is(&self.on_time),
            late: v.status.is(&self.late),
            cancelled,
            delivered,
            delivered_kept: delivered.filter(|_| !cancelled && v.created_by(delivered)),
        })
    }

    /// One built-in fact's items, as `push(at, value, dimensions' moment)`:
    /// the twin of its `stream` function in `dataflows/metrics.py`.
    fn builtin(
        &self,
        py: Python<'_>,
        fact: &Builtin,
        v: &View<'_>,
        o: &OutcomeFacts,
        push: &mut impl FnMut(i64, i64, i64),
    ) -> PyResult<()> {
        let view = v.view;
        match fact {
            Builtin::Created => {
                if let Some(at) = v.created {
                    push(at, 1, at);
                }
            }
            Builtin::Resolved => {
                if let (true, Some(at)) = (o.on_time || o.late, v.resolved) {
                    if v.created_by(Some(at)) {
                        push(at, i64::from(o.on_time), at);
                    }
                }
            }
            Builtin::Delivered => {
                if let Some(at) = o.delivered_kept {
                    push(at, 1, at);
                }
            }
            Builtin::Deviation => {
                if let (Some(at), Some(promise)) = (o.delivered_kept, v.first_promise) {
                    push(at, at - promise, at);
                }
            }
            Builtin::Cancelled => {
                if let (true, Some(at)) = (o.cancelled, v.resolved) {
                    if v.created_by(Some(at)) {
                        push(at, 1, at);
                    }
                }
            }
            Builtin::Shipped => {
                if let Some(at) = v.stage(py, "SHIPPED")? {
                    if let Some(warehouse) = value_at(&v.warehouse_timeline, at) {
                        let same = warehouse.rich_compare(v.first_warehouse, CompareOp::Eq)?;
                        push(at, i64::from(same.is_true()?), at);
                    }
                }
            }
            Builtin::Cycle => {
                if let (Some(at), Some(created)) = (o.delivered_kept, v.created) {
                    push(at, at - created, at);
                }
            }
            Builtin::SinceCreated(stage) => {
                let at = match v.stage_us.get_item(stage.as_ref(py)) {
                    Some(at) => Some(at.extract::<i64>()?),
                    None => None,
                };
                if let (Some(at), Some(created)) = (at, v.created) {
                    if created <= at {
                        push(at, at - created, at);
                    }
                }
            }
            Builtin::Transition => {
                let transitions: &PyTuple = field!(view, "transitions")?.downcast()?;
                for transition in transitions.iter() {
                    let sla: Option<i64> = field!(transition, "sla_us")?.extract()?;
                    if let Some(sla) = sla {
                        let end: i64 = field!(transition, "end_us")?.extract()?;
                        let start: i64 = field!(transition, "start_us")?.extract()?;
                        push(end, i64::from(end - start > sla), end);
                    }
                }
            }
            Builtin::Active | Builtin::Anomalous => {
                if matches!(fact, Builtin::Active) {
                    let times: &PyTuple = field!(view, "event_times")?.downcast()?;
                    for at in times.iter() {
                        let at = at.extract()?;
                        push(at, 1, at);
                    }
                }
                let flags: &PyTuple = field!(view, "flags")?.downcast()?;
                for flag in flags.iter() {
                    let at = field!(flag, "at_us")?.extract()?;
                    push(at, 1, at);
                }
            }
            Builtin::LateOpenIn | Builtin::LateOpenOut => {
                let promise = match v.first_promise {
                    Some(promise) if o.late && v.created_by(Some(promise)) => promise,
                    _ => return Ok(()),
                };
                if matches!(fact, Builtin::LateOpenIn) {
                    push(promise, 1, promise);
                } else if let Some(end) = [o.delivered, v.cancelled].into_iter().flatten().min() {
                    push(end, 1, promise); // dimensions as at the promise
                }
            }
            Builtin::Python => {}
        }
        Ok(())
    }

    /// Items with their dimension values read at each distinct moment once.
    fn resolve_dims(
        &self,
        py: Python<'_>,
        v: &View<'_>,
        raw: Vec<(usize, i64, i64, i64)>,
        python_dims: Vec<(usize, &PyTuple)>,
    ) -> PyResult<Items> {
        let mut strings = interner();
        // Per dimension: its value before the order's creation and from it
        // on (constants and attributes), or its timeline.
        let mut settled: Vec<Option<(u32, u32)>> = Vec::with_capacity(self.readers.len());
        let mut timelines: Vec<Vec<(i64, &PyAny)>> = Vec::new();
        for reader in &self.readers {
            settled.push(match reader {
                Reader::Constant(id) => Some((*id, *id)),
                Reader::Attribute(name) => Some((
                    NONE,
                    value_id(&mut strings, v.attributes.get_item(name.as_ref(py)))?,
                )),
                Reader::Timeline(field) => {
                    timelines.push(timeline(field_named!(v.view, field.as_ref(py))?)?);
                    None
                }
            });
        }
        let mut dims: Vec<Vec<u32>> = Vec::new();
        let mut moments: Vec<(i64, usize)> = Vec::new();
        let mut items = Vec::with_capacity(raw.len());
        let mut python_dims = python_dims.into_iter().peekable();
        for (position, (fact, at, value, moment)) in raw.into_iter().enumerate() {
            if python_dims.peek().map(|(p, _)| *p) == Some(position) {
                let (_, values) = python_dims.next().unwrap_or_else(|| unreachable!());
                let mut ids = Vec::with_capacity(values.len());
                for value in values.iter() {
                    ids.push(value_id(&mut strings, Some(value))?);
                }
                if ids.len() != self.readers.len() {
                    return Err(PyValueError::new_err("one dimension value per dimension"));
                }
                items.push(item(fact, at, index_of(&mut dims, ids), value)?);
                continue;
            }
            let index = match moments.iter().find(|(m, _)| *m == moment) {
                Some((_, index)) => *index,
                None => {
                    let after = matches!(v.created, Some(created) if moment >= created);
                    let mut lines = timelines.iter();
                    let mut ids = Vec::with_capacity(settled.len());
                    for pair in &settled {
                        ids.push(match pair {
                            Some((before, from_created)) => {
                                if after {
                                    *from_created
                                } else {
                                    *before
                                }
                            }
                            None => {
                                let line = lines.next().unwrap_or_else(|| unreachable!());
                                value_id(&mut strings, value_at(line, moment))?
                            }
                        });
                    }
                    let index = index_of(&mut dims, ids);
                    moments.push((moment, index));
                    index
                }
            };
            items.push(item(fact, at, index, value)?);
        }
        Ok(Items {
            items: items.into_boxed_slice(),
            dims: dims.into_iter().map(Vec::into_boxed_slice).collect(),
        })
    }
}

fn item(fact: usize, at: i64, dims: usize, value: i64) -> PyResult<Item> {
    let narrow = |n: usize| u32::try_from(n).map_err(|_| PyValueError::new_err("too many facts"));
    Ok(Item {
        at,
        value,
        fact: narrow(fact)?,
        dims: narrow(dims)?,
    })
}

/// The index of `ids` in `dims`, added if new (an order has a handful).
fn index_of(dims: &mut Vec<Vec<u32>>, ids: Vec<u32>) -> usize {
    match dims.iter().position(|d| *d == ids) {
        Some(index) => index,
        None => {
            dims.push(ids);
            dims.len() - 1
        }
    }
}
