//! Native kernels of the Order Health streaming core.
//!
//! The Python core (`dataflows/contributions.py`) stays the reference: this
//! module implements the same `Delta` -- window-row changes of the facts an
//! epoch changed -- and the tests hold the two equal on random input.  Fact
//! expansion (one fact into window sizes x dimensions rows) was the largest
//! single cost of the per-partition step in CPython; here a row change is a
//! hash-map update on a packed key instead of a tuple, a dict lookup and a
//! list per row.
//!
//! Nothing here knows a metric: the plan (which measures a fact moves, and
//! how) comes from `dataflows.metrics.FACTS` through `Plan`.

use std::sync::{Arc, Mutex};

use ahash::{AHashMap, RandomState};
use indexmap::IndexMap;
use once_cell::sync::Lazy;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::AsPyPointer;

mod bronze;
mod decode;
mod dwells;
mod facts;
mod fields;
mod intake;
mod lifecycle;
mod outliers;
mod times;
mod view;
use bronze::BronzePlan;
use dwells::DwellHistory;
use facts::{Facts, Items};
use lifecycle::LifecycleRows;
use outliers::OutlierFlags;
use view::Views;

/// Window size label, window start (us), dimension, dimension value; strings
/// are ids in the process-wide [`Interner`].
type Key = (u32, i64, u32, u32);
/// Kept-value changes of one row: (slot in VALUE_FACTS, value, +count or -count).
type Kept = Vec<(i64, i64, i64)>;

const COUNT: u8 = 0;
const SUM: u8 = 1;
const SUMSQ: u8 = 2;
const DISTINCT: u8 = 3;

/// Strings (labels, dimension names and values) as small ids, shared by every
/// Delta of the process so that keys stay comparable across them.  Keeps the
/// Python string of each id, so exporting a key allocates nothing new.
struct Interner {
    ids: AHashMap<String, u32>,
    names: Vec<Py<PyString>>,
    /// The text of each id, for sorting by it without asking Python.
    texts: Vec<Box<str>>,
}

static INTERNER: Lazy<Mutex<Interner>> = Lazy::new(|| {
    Mutex::new(Interner {
        ids: AHashMap::new(),
        names: Vec::new(),
        texts: Vec::new(),
    })
});

impl Interner {
    fn id(&mut self, text: &PyString) -> PyResult<u32> {
        let s = text.to_str()?;
        if let Some(id) = self.ids.get(s) {
            return Ok(*id);
        }
        let id = u32::try_from(self.names.len())
            .ok()
            .filter(|id| *id != u32::MAX)
            .ok_or_else(|| PyValueError::new_err("more than 2^32 - 1 distinct strings"))?;
        self.ids.insert(s.to_owned(), id);
        self.names.push(text.into());
        self.texts.push(s.into());
        Ok(id)
    }

    fn name(&self, py: Python<'_>, id: u32) -> Py<PyString> {
        self.names[id as usize].clone_ref(py)
    }
}

/// A Python int of a 128-bit sum: through 64 bits when it fits, which is
/// nearly always and several times cheaper than PyO3's 128-bit conversion.
fn int(py: Python<'_>, v: i128) -> PyObject {
    match i64::try_from(v) {
        Ok(small) => small.into_py(py),
        Err(_) => v.into_py(py),
    }
}

fn ints<'py>(py: Python<'py>, vector: &[i128]) -> &'py PyList {
    PyList::new(py, vector.iter().map(|v| int(py, *v)))
}

/// An integer column: its int64 bytes (little-endian, for `numpy.frombuffer`)
/// when every value fits in an i64, else a list of Python ints.  A column of
/// bytes costs no Python object per row; the rare column holding a larger
/// value (sums are 128-bit) stays exact, as the Python store's.  Whether a
/// column converts to float64 exactly is for `dataflows.formulas` to say.
fn int_column(py: Python<'_>, column: &[i128]) -> PyObject {
    if column.iter().all(|v| i64::try_from(*v).is_ok()) {
        le_bytes(py, column, |v| (v as i64).to_le_bytes()).into()
    } else {
        PyList::new(py, column.iter().map(|v| int(py, *v))).into()
    }
}

/// Interned texts as the buffers of an Arrow string column: int32 offsets
/// (little-endian, one more than the rows) and the UTF-8 data; as a list of
/// str if the data is beyond int32 offsets.  Converting a list of str was a
/// fifth of the rows-to-Arrow stage (`bench.instructions`).
fn text_column(py: Python<'_>, strings: &Interner, ids: &[u32]) -> PyObject {
    let text = |id: &u32| strings.texts[*id as usize].as_bytes();
    let total: usize = ids.iter().map(|id| text(id).len()).sum();
    if i32::try_from(total).is_err() {
        return PyList::new(py, ids.iter().map(|id| strings.name(py, *id))).into();
    }
    let mut ends = Vec::with_capacity(ids.len() + 1);
    ends.push(0_i32);
    let mut at = 0_i32;
    for id in ids {
        at += text(id).len() as i32; // within i32: checked above
        ends.push(at);
    }
    let offsets = le_bytes(py, &ends, i32::to_le_bytes);
    let data = PyBytes::new_with(py, total, |out: &mut [u8]| {
        let mut pos = 0;
        for id in ids {
            let bytes = text(id);
            out[pos..pos + bytes.len()].copy_from_slice(bytes);
            pos += bytes.len();
        }
        Ok(())
    })
    .expect("allocating a bytes object");
    (offsets, data).into_py(py)
}

/// The values as little-endian bytes, written straight into a new `bytes`
/// object (a byte-by-byte `collect` and a copy were ~5% of the window step).
pub(crate) fn le_bytes<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    values: &[T],
    f: impl Fn(T) -> [u8; N],
) -> &'py PyBytes {
    PyBytes::new_with(py, values.len() * N, |out: &mut [u8]| {
        for (chunk, v) in out.chunks_exact_mut(N).zip(values) {
            chunk.copy_from_slice(&f(*v));
        }
        Ok(())
    })
    .expect("allocating a bytes object")
}

/// The largest magnitude a `decimal128(38, 0)` holds: 10^38 - 1.
const DECIMAL38_MAX: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

/// A measure column: an `int_column`, except that a column with a value
/// beyond an i64 (sums of squares, nearly always) comes as a 1-tuple of the
/// values' 16-byte little-endian two's complement, which is a
/// `decimal128(38, 0)` Arrow buffer as it is: the window step hands that to
/// the writers, where pyarrow converted a list of ints through each int's
/// decimal text (~1,600 instructions a value), and reads a row's exact int
/// from it only where a formula needs one (`dataflows.formulas.WideInts`:
/// a Python int per row and hand-out was ~2% of the window step).  A value
/// beyond 38 digits leaves the list of ints, so pyarrow's own error stays.
fn measure_column(py: Python<'_>, column: &[i128]) -> PyObject {
    let wide = column.iter().any(|v| i64::try_from(*v).is_err());
    if !wide
        || column
            .iter()
            .any(|v| v.unsigned_abs() > DECIMAL38_MAX as u128)
    {
        return int_column(py, column);
    }
    (le_bytes(py, column, i128::to_le_bytes),).into_py(py)
}

/// A kept-values slot of the rows handed out, as three flat columns: every
/// row's values ascending, one after the other; where each row's values end;
/// whether the row has any container (else None in Python).  The window step
/// reads them into NumPy (`dataflows.formulas.KeptValues`): a list of Python
/// ints per row and slot, built here and then walked in Python for a
/// percentile, cost more than the percentile itself.
#[derive(Default)]
struct KeptColumn {
    flat: Vec<i64>,
    ends: Vec<i64>,
    present: Vec<u8>,
}

impl KeptColumn {
    /// Append one row: its values (each repeated by its count) ascending.
    fn push(&mut self, counts: Option<&Counts>) {
        if let Some(counts) = counts {
            let first = self.flat.len();
            for (value, count) in counts {
                for _ in 0..(*count).max(0) {
                    self.flat.push(*value);
                }
            }
            self.flat[first..].sort_unstable();
        }
        self.ends.push(self.flat.len() as i64);
        self.present.push(u8::from(counts.is_some()));
    }

    fn into_py(self, py: Python<'_>) -> PyObject {
        (
            le_bytes(py, &self.flat, i64::to_le_bytes),
            le_bytes(py, &self.ends, i64::to_le_bytes),
            PyBytes::new(py, &self.present),
        )
            .into_py(py)
    }
}

fn interner() -> std::sync::MutexGuard<'static, Interner> {
    // A panic while holding the lock cannot leave the maps inconsistent
    // (each insert is one push and one map insert), so a poisoned lock is fine.
    INTERNER.lock().unwrap_or_else(|e| e.into_inner())
}

struct FactPlan {
    /// (measure index, aggregation code)
    measures: Vec<(usize, u8)>,
    /// Slot in VALUE_FACTS, or -1.
    slot: i64,
}

struct PlanData {
    width: usize,
    /// (label id, size in us)
    sizes: Vec<(u32, i64)>,
    dims: Vec<u32>,
    facts: Vec<FactPlan>,
}

/// Stands for a dimension value of None (no interned string reaches it: see
/// Interner::id).
const NONE: u32 = u32::MAX;

/// One fact of an order with its dimension values resolved (the Python
/// tuple ``(fact index, at us, dimension values, value)``); ``dims`` indexes
/// the call's [`DimValues`], so equal items are equal fields.
#[derive(PartialEq, Eq, Hash, Clone, Copy)]
struct Item {
    fact: usize,
    at: i64,
    dims: usize,
    value: i64,
}

/// The distinct tuples of dimension values of one `apply` call, as string
/// ids ([`NONE`] for None).  An order's facts at one moment share one Python
/// tuple, so each tuple object is read once (``by_object``; both sides of a
/// call are alive during it, so an address is not reused).
#[derive(Default)]
struct DimValues {
    tuples: Vec<Vec<u32>>,
    by_ids: AHashMap<Vec<u32>, usize>,
    by_object: AHashMap<usize, usize>,
}

impl DimValues {
    fn index(
        &mut self,
        plan: &PlanData,
        strings: &mut Interner,
        values: &PyTuple,
    ) -> PyResult<usize> {
        let address = values.as_ptr() as usize;
        if let Some(index) = self.by_object.get(&address) {
            return Ok(*index);
        }
        if values.len() != plan.dims.len() {
            return Err(PyValueError::new_err("one dimension value per dimension"));
        }
        let mut ids = Vec::with_capacity(values.len());
        for v in values.iter() {
            ids.push(if v.is_none() {
                NONE
            } else {
                strings.id(v.downcast()?)?
            });
        }
        let next = self.tuples.len();
        let index = *self.by_ids.entry(ids.clone()).or_insert(next);
        if index == next {
            self.tuples.push(ids);
        }
        self.by_object.insert(address, index);
        Ok(index)
    }

    /// The index of a tuple already read as string ids.
    fn index_ids(&mut self, ids: &[u32]) -> usize {
        if let Some(index) = self.by_ids.get(ids) {
            return *index;
        }
        let next = self.tuples.len();
        self.by_ids.insert(ids.to_vec(), next);
        self.tuples.push(ids.to_vec());
        next
    }
}

/// Additive changes of an order at one moment under one tuple of dimension
/// values: (measure index, amount), and kept-value changes.
#[derive(Default)]
struct Moment {
    amounts: Vec<(usize, i128)>,
    kept: Kept,
}

/// An order's items, checked against the plan.
fn parse_items(
    plan: &PlanData,
    strings: &mut Interner,
    dims: &mut DimValues,
    items: &PyTuple,
) -> PyResult<Vec<Item>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter() {
        let item: &PyTuple = item.downcast()?;
        if item.len() != 4 {
            return Err(PyValueError::new_err(
                "an item is (fact index, at us, dimension values, value)",
            ));
        }
        let fact: usize = item.get_item(0)?.extract()?;
        if fact >= plan.facts.len() {
            return Err(PyValueError::new_err("fact index out of range"));
        }
        out.push(Item {
            fact,
            at: item.get_item(1)?.extract()?,
            dims: dims.index(plan, strings, item.get_item(2)?.downcast()?)?,
            value: item.get_item(3)?.extract()?,
        });
    }
    Ok(out)
}

/// An order's items: native [`Items`] (from `Facts.items`) or a tuple of
/// Python items.
fn read_items(
    plan: &PlanData,
    strings: &mut Interner,
    dims: &mut DimValues,
    items: &PyAny,
) -> PyResult<Vec<Item>> {
    let native = match items.extract::<PyRef<Items>>() {
        Ok(native) => native,
        Err(_) => return parse_items(plan, strings, dims, items.downcast()?),
    };
    if native.dims.iter().any(|ids| ids.len() != plan.dims.len()) {
        return Err(PyValueError::new_err("one dimension value per dimension"));
    }
    let indexes: Vec<usize> = native.dims.iter().map(|ids| dims.index_ids(ids)).collect();
    let mut out = Vec::with_capacity(native.items.len());
    for item in native.items.iter() {
        let fact = item.fact as usize;
        if fact >= plan.facts.len() {
            return Err(PyValueError::new_err("fact index out of range"));
        }
        out.push(Item {
            fact,
            at: item.at,
            dims: indexes[item.dims as usize],
            value: item.value,
        });
    }
    Ok(out)
}

/// How facts expand into window rows: built once per settings from the
/// metric catalogue (`dataflows.contributions.native_plan`).
#[pyclass(module = "orderhealth_native", frozen)]
struct Plan {
    data: Arc<PlanData>,
}

#[pymethods]
impl Plan {
    /// `width`: len(MEASURES); `sizes`: [(label, size_us)]; `dims`: dimension
    /// names in settings order; `facts`: per fact in FACTS order,
    /// ([(measure index, "count" | "sum" | "sumsq" | "distinct")], slot or -1).
    #[new]
    fn new(
        width: usize,
        sizes: Vec<(&PyString, i64)>,
        dims: Vec<&PyString>,
        facts: Vec<(Vec<(usize, &str)>, i64)>,
    ) -> PyResult<Self> {
        let mut strings = interner();
        let mut size_ids = Vec::with_capacity(sizes.len());
        for (label, size) in sizes {
            if size <= 0 {
                return Err(PyValueError::new_err("window sizes must be positive"));
            }
            size_ids.push((strings.id(label)?, size));
        }
        let mut dim_ids = Vec::with_capacity(dims.len());
        for dim in dims {
            dim_ids.push(strings.id(dim)?);
        }
        let mut plans = Vec::with_capacity(facts.len());
        for (measures, slot) in facts {
            let mut coded = Vec::with_capacity(measures.len());
            for (index, agg) in measures {
                if index >= width {
                    return Err(PyValueError::new_err("measure index out of range"));
                }
                let code = match agg {
                    "count" => COUNT,
                    "sum" => SUM,
                    "sumsq" => SUMSQ,
                    "distinct" => DISTINCT,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "unknown aggregation {other:?}"
                        )))
                    }
                };
                coded.push((index, code));
            }
            plans.push(FactPlan {
                measures: coded,
                slot,
            });
        }
        Ok(Plan {
            data: Arc::new(PlanData {
                width,
                sizes: size_ids,
                dims: dim_ids,
                facts: plans,
            }),
        })
    }
}

/// Changes to window rows: measure differences, and kept values in and out
/// (the native twin of `dataflows.contributions.Delta`).
#[pyclass(module = "orderhealth_native")]
#[derive(Default)]
struct Delta {
    plan: Option<Arc<PlanData>>,
    vectors: IndexMap<Key, Vec<i128>, RandomState>,
    kept: IndexMap<Key, Kept, RandomState>,
}

impl Delta {
    fn plan(&self) -> PyResult<Arc<PlanData>> {
        self.plan
            .clone()
            .ok_or_else(|| PyValueError::new_err("this Delta was unpickled: it has no plan"))
    }

    fn key_of(py: Python<'_>, strings: &Interner, key: &Key) -> Py<PyTuple> {
        PyTuple::new(
            py,
            [
                strings.name(py, key.0).into_py(py),
                key.1.into_py(py),
                strings.name(py, key.2).into_py(py),
                strings.name(py, key.3).into_py(py),
            ],
        )
        .into()
    }

    /// Add one moment's summed additive changes to every row it lands in.
    fn expand(&mut self, plan: &PlanData, at: i64, values: &[u32], moment: &Moment) {
        for &(label, size) in &plan.sizes {
            let start = at - at.rem_euclid(size);
            for (&dim, &dim_value) in plan.dims.iter().zip(values) {
                if dim_value == NONE {
                    continue;
                }
                let key = (label, start, dim, dim_value);
                let vector = self
                    .vectors
                    .entry(key)
                    .or_insert_with(|| vec![0; plan.width]);
                for &(index, amount) in &moment.amounts {
                    vector[index] += amount;
                }
                if !moment.kept.is_empty() {
                    self.kept
                        .entry(key)
                        .or_default()
                        .extend_from_slice(&moment.kept);
                }
            }
        }
    }

    /// The row changes of one DISTINCT fact between an order's ``old`` and
    /// ``new`` items, in the windows of the times it ``changed`` at (see
    /// `dataflows.contributions._distinct_changes`, the reference).
    fn distinct(
        &mut self,
        plan: &PlanData,
        dims: &DimValues,
        fact_index: usize,
        old: &[Item],
        new: &[Item],
        changed: &[i64],
    ) {
        // Everything here is a handful of entries (an order's items, the
        // windows of a few times, seven dimensions), so sorted vectors stand
        // in for the reference's sets: hash sets built and dropped per call
        // were a third of this method's instructions.
        // (size label, window start, size) of each window a change is in.
        let mut windows: Vec<(u32, i64, i64)> =
            Vec::with_capacity(changed.len() * plan.sizes.len());
        for at in changed {
            for &(label, size) in &plan.sizes {
                let window = (label, at - at.rem_euclid(size), size);
                if !windows.contains(&window) {
                    windows.push(window);
                }
            }
        }
        // The dimension tuples (by index) the order has the fact at in a
        // window, into a buffer reused from window to window.
        let cells = |items: &[Item], (_, start, size): (u32, i64, i64), out: &mut Vec<usize>| {
            out.clear();
            out.extend(
                items
                    .iter()
                    .filter(|item| {
                        item.fact == fact_index && item.at - item.at.rem_euclid(size) == start
                    })
                    .map(|item| item.dims),
            );
            out.sort_unstable();
            out.dedup();
        };
        // The rows (dimension, value) those tuples count in.
        let rows = |cells: &[usize], out: &mut Vec<(u32, u32)>| {
            out.clear();
            for index in cells {
                for (dim, value) in plan.dims.iter().zip(&dims.tuples[*index]) {
                    if *value != NONE {
                        out.push((*dim, *value));
                    }
                }
            }
            out.sort_unstable();
            out.dedup();
        };
        let measures = &plan.facts[fact_index].measures;
        let (mut was, mut now) = (Vec::new(), Vec::new());
        let (mut rows_before, mut rows_after) = (Vec::new(), Vec::new());
        for window in windows {
            cells(old, window, &mut was);
            cells(new, window, &mut now);
            if was == now {
                continue;
            }
            rows(&was, &mut rows_before);
            rows(&now, &mut rows_after);
            for (set, other, sign) in [
                (&rows_after, &rows_before, 1i128),
                (&rows_before, &rows_after, -1),
            ] {
                for &(dim, value) in set.iter().filter(|row| other.binary_search(row).is_err()) {
                    let key = (window.0, window.1, dim, value);
                    let vector = self
                        .vectors
                        .entry(key)
                        .or_insert_with(|| vec![0; plan.width]);
                    for &(index, _agg) in measures {
                        vector[index] += sign;
                    }
                }
            }
        }
    }

    fn parse_key(strings: &mut Interner, key: &PyTuple) -> PyResult<Key> {
        if key.len() != 4 {
            return Err(PyValueError::new_err("a window key has 4 parts"));
        }
        Ok((
            strings.id(key.get_item(0)?.downcast()?)?,
            key.get_item(1)?.extract()?,
            strings.id(key.get_item(2)?.downcast()?)?,
            strings.id(key.get_item(3)?.downcast()?)?,
        ))
    }
}

#[pymethods]
impl Delta {
    #[new]
    #[args(plan = "None")]
    fn new(plan: Option<&Plan>) -> Self {
        Delta {
            plan: plan.map(|p| p.data.clone()),
            ..Default::default()
        }
    }

    /// Add ``new - old`` of one order's items ``(fact index, at us,
    /// dimension values, value)`` (the reference is
    /// `dataflows.contributions.add_item_changes`).  Only the facts that
    /// changed are expanded: additive ones into a row per window size and
    /// known dimension value; for a DISTINCT fact, which counts an order once
    /// per row, the rows the order has it in are compared before and after,
    /// in the windows of its changed items.
    fn apply(&mut self, old: &PyAny, new: &PyAny) -> PyResult<()> {
        let plan = self.plan()?;
        let mut dims = DimValues::default();
        let (old, new) = {
            let mut strings = interner();
            (
                read_items(&plan, &mut strings, &mut dims, old)?,
                read_items(&plan, &mut strings, &mut dims, new)?,
            )
        };
        if old == new {
            return Ok(());
        }
        let mut changes: Vec<(&Item, i64)> = Vec::new();
        if old.is_empty() {
            // An order's first facts: all added, a repeated one once per copy
            // (as the reference does).
            changes.extend(new.iter().map(|item| (item, 1)));
        } else {
            let mut net: IndexMap<&Item, i64, RandomState> = IndexMap::default();
            for item in &new {
                *net.entry(item).or_default() += 1;
            }
            for item in &old {
                *net.entry(item).or_default() -= 1;
            }
            changes.extend(net.into_iter().filter(|(_, count)| *count != 0));
        }
        // Additive changes at one moment under the same dimension values land
        // in the same rows (an order's delivery moves five facts at once):
        // their amounts are summed first, so each row is looked up once.
        let mut moments: IndexMap<(usize, i64), Moment, RandomState> = IndexMap::default();
        let mut distinct: IndexMap<usize, Vec<i64>, RandomState> = IndexMap::default();
        for (item, count) in changes {
            let fact = &plan.facts[item.fact];
            if fact.measures.iter().any(|&(_, agg)| agg == DISTINCT) {
                distinct.entry(item.fact).or_default().push(item.at);
                continue;
            }
            let moment = moments.entry((item.dims, item.at)).or_default();
            let (sign, value) = (i128::from(count), i128::from(item.value));
            for &(index, agg) in &fact.measures {
                moment.amounts.push((
                    index,
                    match agg {
                        COUNT => sign,
                        SUM => sign * value,
                        _ => sign * value * value, // SUMSQ
                    },
                ));
            }
            if fact.slot >= 0 {
                moment.kept.push((fact.slot, item.value, count));
            }
        }
        for ((index, at), moment) in &moments {
            self.expand(&plan, *at, &dims.tuples[*index], moment);
        }
        for (fact_index, changed) in distinct {
            self.distinct(&plan, &dims, fact_index, &old, &new, &changed);
        }
        Ok(())
    }

    /// Remove rows whose changes cancel out (an order's fact moved within a window).
    fn drop_unchanged(&mut self) {
        let kept = &mut self.kept;
        self.vectors.retain(|key, vector| {
            if vector.iter().any(|v| *v != 0) {
                return true;
            }
            let moves_cancel = match kept.get(key) {
                None => true,
                Some(changes) => {
                    let mut net: AHashMap<(i64, i64), i64> = AHashMap::new();
                    for &(slot, value, count) in changes {
                        *net.entry((slot, value)).or_default() += count;
                    }
                    net.values().all(|c| *c == 0)
                }
            };
            if moves_cancel {
                kept.shift_remove(key);
            }
            !moves_cancel
        });
    }

    /// Row -> measure differences (a new dict each time).
    #[getter]
    fn vectors(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let strings = interner();
        let out = PyDict::new(py);
        for (key, vector) in &self.vectors {
            out.set_item(Self::key_of(py, &strings, key), ints(py, vector))?;
        }
        Ok(out.into())
    }

    /// Row -> kept-value changes (a new dict each time).
    #[getter]
    fn kept(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let strings = interner();
        let out = PyDict::new(py);
        for (key, changes) in &self.kept {
            out.set_item(Self::key_of(py, &strings, key), PyList::new(py, changes))?;
        }
        Ok(out.into())
    }

    fn __getstate__(&self, py: Python<'_>) -> PyResult<PyObject> {
        Ok((self.vectors(py)?, self.kept(py)?).into_py(py))
    }

    fn __setstate__(&mut self, state: (&PyDict, &PyDict)) -> PyResult<()> {
        let (vectors, kept) = state;
        let mut strings = interner();
        self.vectors.clear();
        self.kept.clear();
        for (key, vector) in vectors.iter() {
            let key = Self::parse_key(&mut strings, key.downcast()?)?;
            self.vectors.insert(key, vector.extract()?);
        }
        for (key, changes) in kept.iter() {
            let key = Self::parse_key(&mut strings, key.downcast()?)?;
            self.kept.insert(key, changes.extract()?);
        }
        Ok(())
    }
}

/// (window size label, dimension, dimension value)
type Series = (u32, u32, u32);
/// Kept values of one slot: value -> count.
type Counts = std::collections::HashMap<i64, i64, RandomState>;

struct Window {
    /// Kept values per VALUE_FACTS slot (value -> count); None until one arrives.
    values: Option<Vec<Counts>>,
    /// Start plus the size: every hand-out and watermark reads it.
    end: i64,
    /// Waiting for a hand-out: listed once in `WindowStore::changed`.
    changed: bool,
    /// Ends at or before the watermark: listed once in `WindowStore::finals`.
    is_final: bool,
}

impl Window {
    fn new(end: i64) -> Self {
        Window {
            values: None,
            end,
            changed: false,
            is_final: false,
        }
    }

    /// Mark the window changed, listing its key once.
    fn touch(&mut self, key: Key, changed: &mut Vec<Key>) {
        if !self.changed {
            self.changed = true;
            changed.push(key);
        }
    }
}

/// Window totals across partitions (the native twin of the window store in
/// `dataflows.window_metrics`): absorbs deltas, marks windows final, and
/// hands out the changed rows with their running late-open totals.
#[pyclass(module = "orderhealth_native")]
struct WindowStore {
    width: usize,
    slots: usize,
    late_in: usize,
    late_out: usize,
    /// Window size per label id.
    sizes: AHashMap<u32, i64>,
    /// Open windows.  Dense entries: `finalize` walks them, and a hand-out
    /// reaches each changed window by its index after one look-up (the
    /// store was ~a fifth of the flow's main thread, mostly look-ups of
    /// windows waiting on memory: `docs/scaling.md`, "The window store").
    windows: IndexMap<Key, Window, RandomState>,
    /// The windows' measure totals, `width` per window in the order of
    /// `windows` (one buffer: a window's totals are found by its index, not
    /// behind a pointer of its own).
    totals: Vec<i128>,
    /// Per series, the open windows whose late-open net (in - out) is not
    /// zero, by start: a running late-open total sums these, so a hand-out
    /// walks the few windows with late data instead of every open window
    /// of each changed series (each a look-up of a cold window).
    late_net: AHashMap<Series, std::collections::BTreeMap<i64, i128>>,
    base: AHashMap<Series, i128>,
    /// Windows waiting for a hand-out, each once (its `changed` flag): a
    /// flag in the window the delta row reaches anyway, instead of a hash
    /// set probed for every delta row.
    changed: Vec<Key>,
    /// Windows made final since the last hand-out, each once (`is_final`).
    finals: Vec<Key>,
    moved_from: AHashMap<Series, i64>,
}

fn series_of(key: &Key) -> Series {
    (key.0, key.2, key.3)
}

impl WindowStore {
    /// Record a window's late-open net (see `late_net`).
    fn set_late_net(&mut self, key: &Key, net: i128) {
        let series = series_of(key);
        if net != 0 {
            self.late_net.entry(series).or_default().insert(key.1, net);
        } else if let Some(nets) = self.late_net.get_mut(&series) {
            nets.remove(&key.1);
            if nets.is_empty() {
                self.late_net.remove(&series);
            }
        }
    }

    /// The changed windows (and those after a moved late-open total, whose
    /// running totals changed) in output order -- by series, as text, then
    /// start -- each by its index in `windows`, with its running late-open
    /// total.  They are no longer marked changed.
    fn changed_in_order(&mut self) -> Vec<(usize, i128)> {
        // One walk over the open windows finds those after a move: an
        // ordered set of starts per series, kept for this, cost an insert
        // and a removal for every window.
        let moved = std::mem::take(&mut self.moved_from);
        if !moved.is_empty() {
            for (key, window) in self.windows.iter_mut() {
                if matches!(moved.get(&series_of(key)), Some(first) if key.1 > *first) {
                    window.touch(*key, &mut self.changed);
                }
            }
        }
        // (start, index) of each changed window, by series.
        let mut by_series: AHashMap<Series, Vec<(i64, usize)>> = AHashMap::new();
        for key in std::mem::take(&mut self.changed) {
            if let Some((index, _, window)) = self.windows.get_full_mut(&key) {
                window.changed = false;
                by_series
                    .entry(series_of(&key))
                    .or_default()
                    .push((key.1, index));
            }
        }
        let strings = interner();
        let text = |id: u32| -> &str { &strings.texts[id as usize] };
        let mut order: Vec<(&str, &str, &str, Series)> = by_series
            .keys()
            .map(|s| (text(s.0), text(s.1), text(s.2), *s))
            .collect();
        order.sort_unstable();
        let mut selected = Vec::new();
        let no_nets = std::collections::BTreeMap::new();
        for (_, _, _, series) in order {
            let wanted = by_series
                .get_mut(&series)
                .expect("a series of the changed keys");
            // (A changed window is listed once.)
            wanted.sort_unstable();
            // The running total at a start: the base plus the nets of the
            // windows starting at or before it (only those with late data
            // have one).
            let mut running = self.base.get(&series).copied().unwrap_or(0);
            let mut nets = self
                .late_net
                .get(&series)
                .unwrap_or(&no_nets)
                .iter()
                .peekable();
            for (start, index) in wanted.iter() {
                while let Some((_, net)) = nets.next_if(|(at, _)| *at <= start) {
                    running += net;
                }
                selected.push((*index, running));
            }
        }
        selected
    }

    /// Forget the windows made final since the last hand-out, keeping their
    /// late-open totals in their series' base.
    fn forget_finals(&mut self) {
        let width = self.width;
        for key in std::mem::take(&mut self.finals) {
            if let Some((index, _, _)) = self.windows.swap_remove_full(&key) {
                let at = index * width;
                let net = self.totals[at + self.late_in] - self.totals[at + self.late_out];
                // As `windows` did: the last window's totals move into the gap.
                let last = self.windows.len() * width;
                if at != last {
                    self.totals.copy_within(last..last + width, at);
                }
                self.totals.truncate(last);
                *self.base.entry(series_of(&key)).or_default() += net;
                if net != 0 {
                    // (Only a window with a net is in `late_net`.)
                    self.set_late_net(&key, 0);
                }
            }
        }
    }
}

#[pymethods]
impl WindowStore {
    /// `sizes`: [(label, size_us)]; `slots`: len(VALUE_FACTS); `late_in` and
    /// `late_out`: the indexes of late_open_in and late_open_out in MEASURES.
    #[new]
    fn new(
        width: usize,
        sizes: Vec<(&PyString, i64)>,
        slots: usize,
        late_in: usize,
        late_out: usize,
    ) -> PyResult<Self> {
        let mut strings = interner();
        let mut by_label = AHashMap::new();
        for (label, size) in sizes {
            by_label.insert(strings.id(label)?, size);
        }
        if late_in >= width || late_out >= width {
            return Err(PyValueError::new_err("measure index out of range"));
        }
        Ok(WindowStore {
            width,
            slots,
            late_in,
            late_out,
            sizes: by_label,
            windows: IndexMap::default(),
            totals: Vec::new(),
            late_net: AHashMap::new(),
            base: AHashMap::new(),
            changed: Vec::new(),
            finals: Vec::new(),
            moved_from: AHashMap::new(),
        })
    }

    /// Add one partition's delta; return the keys of contributions to windows
    /// already final under ``watermark`` (ignored, for the caller to report).
    fn add(
        &mut self,
        py: Python<'_>,
        delta: PyRef<'_, Delta>,
        watermark: Option<i64>,
    ) -> PyResult<Vec<Py<PyTuple>>> {
        let mut late = Vec::new();
        for (key, change) in &delta.vectors {
            if change.len() != self.width {
                return Err(PyValueError::new_err("a delta row has the wrong width"));
            }
            let size = *self
                .sizes
                .get(&key.0)
                .ok_or_else(|| PyValueError::new_err("unknown window size label"))?;
            if let Some(w) = watermark {
                if key.1 + size <= w {
                    late.push(Delta::key_of(py, &interner(), key));
                    continue;
                }
            }
            let (width, slots) = (self.width, self.slots);
            let (late_in, late_out) = (self.late_in, self.late_out);
            let (index, window) = match self.windows.entry(*key) {
                indexmap::map::Entry::Occupied(entry) => {
                    let index = entry.index();
                    (index, entry.into_mut())
                }
                indexmap::map::Entry::Vacant(entry) => {
                    self.totals.resize(self.totals.len() + width, 0);
                    let index = entry.index();
                    (index, entry.insert(Window::new(key.1 + size)))
                }
            };
            window.touch(*key, &mut self.changed);
            let totals = &mut self.totals[index * width..(index + 1) * width];
            for (total, part) in totals.iter_mut().zip(change) {
                *total += part;
            }
            let net = totals[late_in] - totals[late_out];
            if let Some(changes) = delta.kept.get(key) {
                let counters = window
                    .values
                    .get_or_insert_with(|| (0..slots).map(|_| Counts::default()).collect());
                for &(slot, value, count) in changes {
                    let counter = counters
                        .get_mut(slot as usize)
                        .ok_or_else(|| PyValueError::new_err("kept-value slot out of range"))?;
                    *counter.entry(value).or_default() += count;
                }
            }
            if change[late_in] != 0 || change[late_out] != 0 {
                self.set_late_net(key, net);
                let from = self.moved_from.entry(series_of(key)).or_insert(key.1);
                *from = (*from).min(key.1);
            }
        }
        Ok(late)
    }

    /// Mark every window ending at or before ``watermark`` final (and changed).
    fn finalize(&mut self, watermark: i64) {
        for (key, window) in self.windows.iter_mut() {
            if !window.is_final && window.end <= watermark {
                window.is_final = true;
                self.finals.push(*key);
                window.touch(*key, &mut self.changed);
            }
        }
    }

    /// The changed rows since the last call, ordered by series then start,
    /// as columns: (labels, starts, ends, dimensions, values, is_final,
    /// late_open, one column per measure, one `KeptColumn` per kept-values
    /// slot: each row's values ascending, or None).  Final windows are then
    /// forgotten.
    /// Columns because the window step wants them: a tuple and a measure
    /// list per row, transposed in Python, were ~8% of it.  The integer
    /// columns (starts, ends, late_open, measures) are `int_column`s: int64
    /// bytes unless a value does not fit, so the window step reads them into
    /// NumPy without a Python int per row and measure.
    /// `hold_until`: windows not final that end at or before it stay
    /// changed and are left out (the reference's `take_rows` says why).
    #[args(hold_until = "None")]
    fn take_columns(&mut self, py: Python<'_>, hold_until: Option<i64>) -> PyResult<PyObject> {
        let mut selected = self.changed_in_order();
        if let Some(limit) = hold_until {
            let mut handed = Vec::with_capacity(selected.len());
            for (index, running) in selected {
                let (key, window) = self
                    .windows
                    .get_index_mut(index)
                    .expect("a changed window's index");
                if !window.is_final && window.end <= limit {
                    window.touch(*key, &mut self.changed);
                } else {
                    handed.push((index, running));
                }
            }
            selected = handed;
        }
        let n = selected.len();
        let (mut labels, mut dims, mut values, mut finals) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut starts, mut ends, mut late) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut measures: Vec<Vec<i128>> = (0..self.width).map(|_| Vec::with_capacity(n)).collect();
        let mut kept: Vec<KeptColumn> = (0..self.slots).map(|_| KeptColumn::default()).collect();
        for (index, running) in &selected {
            let (key, window) = self
                .windows
                .get_index(*index)
                .expect("a changed window's index");
            labels.push(key.0);
            starts.push(i128::from(key.1));
            ends.push(i128::from(window.end));
            dims.push(key.2);
            values.push(key.3);
            finals.push(u8::from(window.is_final));
            late.push(*running);
            let totals = &self.totals[index * self.width..(index + 1) * self.width];
            for (column, total) in measures.iter_mut().zip(totals) {
                column.push(*total);
            }
            match &window.values {
                None => kept.iter_mut().for_each(|column| column.push(None)),
                Some(slots) => {
                    for (column, counts) in kept.iter_mut().zip(slots) {
                        column.push(Some(counts));
                    }
                }
            }
        }
        self.forget_finals();
        let measures = PyList::new(py, measures.iter().map(|c| measure_column(py, c)));
        let kept = PyList::new(py, kept.into_iter().map(|c| c.into_py(py)));
        let strings = interner();
        let (labels, dims, values) = (
            text_column(py, &strings, &labels),
            text_column(py, &strings, &dims),
            text_column(py, &strings, &values),
        );
        drop(strings);
        Ok((
            labels,
            int_column(py, &starts),
            int_column(py, &ends),
            dims,
            values,
            PyBytes::new(py, &finals),
            int_column(py, &late),
            measures,
            kept,
        )
            .into_py(py))
    }

    /// Changed windows waiting for a hand-out (after one: those it held back).
    fn pending(&self) -> usize {
        self.changed.len()
    }

    /// Mark every open window changed: the next hand-out has them all.
    fn touch_all(&mut self) {
        for (key, window) in self.windows.iter_mut() {
            window.touch(*key, &mut self.changed);
        }
    }

    /// Open windows: key -> (measure totals, kept values per slot as
    /// {value: count} or None); and the late-open base per series.
    fn export(&self, py: Python<'_>) -> PyResult<PyObject> {
        let strings = interner();
        let windows = PyDict::new(py);
        for (index, (key, window)) in self.windows.iter().enumerate() {
            let totals = &self.totals[index * self.width..(index + 1) * self.width];
            let values: PyObject = match &window.values {
                None => py.None(),
                Some(slots) => PyList::new(
                    py,
                    slots.iter().map(|counts| {
                        let d = PyDict::new(py);
                        for (v, c) in counts {
                            d.set_item(v, c).expect("int keys");
                        }
                        d
                    }),
                )
                .into(),
            };
            windows.set_item(Delta::key_of(py, &strings, key), (ints(py, totals), values))?;
        }
        let base = PyDict::new(py);
        for (series, total) in &self.base {
            base.set_item(
                (
                    strings.name(py, series.0),
                    strings.name(py, series.1),
                    strings.name(py, series.2),
                ),
                int(py, *total),
            )?;
        }
        Ok((windows, base).into_py(py))
    }

    /// Load what `export` gave (replacing everything).
    fn load(&mut self, windows: &PyDict, base: &PyDict) -> PyResult<()> {
        let mut strings = interner();
        self.windows.clear();
        self.totals.clear();
        self.late_net.clear();
        self.base.clear();
        self.changed.clear();
        self.finals.clear();
        self.moved_from.clear();
        for (key, window) in windows.iter() {
            let key = Delta::parse_key(&mut strings, key.downcast()?)?;
            let (vector, values): (Vec<i128>, Option<Vec<Counts>>) = window.extract()?;
            if vector.len() != self.width {
                return Err(PyValueError::new_err(
                    "a window's totals have the wrong width",
                ));
            }
            let size = *self
                .sizes
                .get(&key.0)
                .ok_or_else(|| PyValueError::new_err("unknown window size label"))?;
            self.set_late_net(&key, vector[self.late_in] - vector[self.late_out]);
            let mut window = Window::new(key.1 + size);
            window.values = values;
            if let (index, Some(_)) = self.windows.insert_full(key, window) {
                // A key twice (not from a dict): the later totals replace.
                self.totals[index * self.width..(index + 1) * self.width].copy_from_slice(&vector);
            } else {
                self.totals.extend_from_slice(&vector);
            }
        }
        for (series, total) in base.iter() {
            let series: &PyTuple = series.downcast()?;
            let id = |i: usize, s: &mut Interner| -> PyResult<u32> {
                s.id(series.get_item(i)?.downcast()?)
            };
            let parsed = (
                id(0, &mut strings)?,
                id(1, &mut strings)?,
                id(2, &mut strings)?,
            );
            self.base.insert(parsed, total.extract()?);
        }
        Ok(())
    }
}

#[pymodule]
fn orderhealth_native(_py: Python<'_>, m: &PyModule) -> PyResult<()> {
    m.add_class::<Plan>()?;
    m.add_class::<Delta>()?;
    m.add_class::<WindowStore>()?;
    m.add_class::<Facts>()?;
    m.add_class::<Items>()?;
    m.add_class::<LifecycleRows>()?;
    m.add_class::<DwellHistory>()?;
    m.add_class::<Views>()?;
    m.add_class::<OutlierFlags>()?;
    m.add_class::<intake::Intake>()?;
    m.add_class::<decode::Decode>()?;
    m.add_function(wrap_pyfunction!(fields::struct_field, m)?)?;
    m.add_function(wrap_pyfunction!(fields::slot_field, m)?)?;
    m.add_function(wrap_pyfunction!(fields::set_slot_field, m)?)?;
    m.add_function(wrap_pyfunction!(times::to_us, m)?)?;
    m.add_class::<BronzePlan>()?;
    Ok(())
}
