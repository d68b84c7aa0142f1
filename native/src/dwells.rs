//! Trailing per-stage dwell distributions for outlier flags: the native twin
//! of `dataflows.dwell_history.DwellHistory`, which stays the reference.
//!
//! Every derivation of an order swaps its completed dwells in the history,
//! and every finished stage asks for the baseline of its hour.  In CPython
//! the swap, the cached look-ups and the baselines computed (24 hourly
//! buckets gathered, sorted twice in NumPy) were ~6% of the event thread.
//! Here a bucket is a hash map of order id to dwell, and a baseline selects
//! the middle of the gathered dwells and of their deviations (the values a
//! sort would put there), with the same IEEE operations as the reference, so
//! the same floats
//! (`tests/unit/test_dwell_history.py` holds the two equal).

use ahash::AHashMap;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::fields::field;
use crate::interner;

/// (stage as an interned string id, start of the hour bucket in us).
type BucketKey = (u32, i64);

/// The median of integers as `statistics.median` gives it, as a float: the
/// middle one, or the two middle ones' exact sum halved.  An integer's
/// conversion and the halving each round once (the halving is exact), so
/// this is the float Python's ``int / 2`` gives.  The middle values are
/// selected, not sorted for: the same values, in linear time (sorting the
/// trailing day's dwells was ~5% of the per-partition step's instructions).
fn middle_of_ints(values: &mut [i64]) -> f64 {
    let n = values.len();
    let (below, upper, _) = values.select_nth_unstable(n / 2);
    if n % 2 == 1 {
        return *upper as f64;
    }
    let lower = *below.iter().max().expect("an even count has a lower half");
    (i128::from(lower) + i128::from(*upper)) as f64 / 2.0
}

/// The median of floats (no NaN), as the reference's ``(a + b) / 2`` of
/// the middle ones in ascending order.
fn middle_of_floats(values: &mut [f64]) -> f64 {
    let n = values.len();
    let (below, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return *upper;
    }
    let lower = below
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .expect("an even count has a lower half");
    (lower + *upper) / 2.0
}

/// The history of one Kafka partition (see the Python reference for why
/// baselines are per partition, and why one is cached once computed).
#[pyclass(module = "orderhealth_native")]
pub struct DwellHistory {
    bucket_us: i64,
    history_us: i64,
    /// `dataflows.lifecycle.Baseline`, called to make each baseline.
    baseline_type: PyObject,
    /// (stage, hour) -> order id -> dwell in us.  A bucket emptied by
    /// `replace` stays until `evict`, as in the reference.
    buckets: AHashMap<BucketKey, AHashMap<Box<str>, i64>>,
    /// (stage, hour) -> the Baseline (or None) computed for it.
    cache: AHashMap<BucketKey, PyObject>,
}

impl DwellHistory {
    fn bucket(&self, end_us: i64) -> i64 {
        end_us - end_us.rem_euclid(self.bucket_us)
    }

    /// A transition's (stage id, end, dwell) (`dataflows.lifecycle.Transition`).
    fn read(transition: &PyAny) -> PyResult<(u32, i64, i64)> {
        let stage: &PyString = field!(transition, "stage")?.downcast()?;
        let start: i64 = field!(transition, "start_us")?.extract()?;
        let end: i64 = field!(transition, "end_us")?.extract()?;
        Ok((interner().id(stage)?, end, end - start))
    }

    fn key_tuple(py: Python<'_>, key: &BucketKey) -> Py<PyTuple> {
        let stage = interner().name(py, key.0);
        PyTuple::new(py, [stage.into_py(py), key.1.into_py(py)]).into()
    }

    fn parse_key(key: &PyAny) -> PyResult<BucketKey> {
        let (stage, hour): (&PyString, i64) = key.extract()?;
        Ok((interner().id(stage)?, hour))
    }
}

#[pymethods]
impl DwellHistory {
    #[new]
    fn new(bucket_us: i64, history_us: i64, baseline_type: PyObject) -> PyResult<Self> {
        if bucket_us <= 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "the bucket must be positive",
            ));
        }
        Ok(DwellHistory {
            bucket_us,
            history_us,
            baseline_type,
            buckets: AHashMap::new(),
            cache: AHashMap::new(),
        })
    }

    /// Swap an order's completed dwells ``old`` for ``new`` (tuples of
    /// `Transition`).
    fn replace(&mut self, order_id: &PyString, old: &PyAny, new: &PyAny) -> PyResult<()> {
        if old.eq(new)? {
            return Ok(());
        }
        let id = order_id.to_str()?;
        for transition in old.iter()? {
            let (stage, end, _) = Self::read(transition?)?;
            let key = (stage, self.bucket(end));
            if let Some(bucket) = self.buckets.get_mut(&key) {
                bucket.remove(id);
            }
        }
        for transition in new.iter()? {
            let (stage, end, dwell) = Self::read(transition?)?;
            let key = (stage, self.bucket(end));
            self.buckets
                .entry(key)
                .or_default()
                .insert(Box::from(id), dwell);
        }
        Ok(())
    }

    /// The Baseline (median, MAD, samples) of ``stage``'s dwells that ended
    /// in the history before the hour of ``end_us``, or None without any.
    pub(crate) fn baseline(
        &mut self,
        py: Python<'_>,
        stage: &PyString,
        end_us: i64,
    ) -> PyResult<PyObject> {
        let hour = self.bucket(end_us);
        let key = (interner().id(stage)?, hour);
        if let Some(known) = self.cache.get(&key) {
            return Ok(known.clone_ref(py));
        }
        let mut dwells: Vec<i64> = Vec::new();
        let mut start = hour - self.history_us;
        while start < hour {
            if let Some(bucket) = self.buckets.get(&(key.0, start)) {
                dwells.extend(bucket.values());
            }
            start += self.bucket_us;
        }
        let result = if dwells.is_empty() {
            py.None()
        } else {
            let middle = middle_of_ints(&mut dwells);
            let mut deviations: Vec<f64> =
                dwells.iter().map(|d| (*d as f64 - middle).abs()).collect();
            let mad = middle_of_floats(&mut deviations);
            self.baseline_type.call1(py, (middle, mad, dwells.len()))?
        };
        self.cache.insert(key, result.clone_ref(py));
        Ok(result)
    }

    /// Forget buckets and baselines no future baseline can read.
    fn evict(&mut self, watermark_us: i64) {
        let horizon = watermark_us - self.history_us - 2 * self.bucket_us;
        self.buckets.retain(|key, _| key.1 >= horizon);
        self.cache.retain(|key, _| key.1 >= horizon);
    }

    /// The reference's state: ``{(stage, hour): {order id: dwell}}`` and
    /// ``{(stage, hour): Baseline | None}`` (snapshots keep this form, so
    /// either core restores the other's).
    fn state(&self, py: Python<'_>) -> PyResult<(Py<PyDict>, Py<PyDict>)> {
        let buckets = PyDict::new(py);
        for (key, bucket) in &self.buckets {
            let dwells = PyDict::new(py);
            for (order_id, dwell) in bucket {
                dwells.set_item(&**order_id, dwell)?;
            }
            buckets.set_item(Self::key_tuple(py, key), dwells)?;
        }
        let cache = PyDict::new(py);
        for (key, baseline) in &self.cache {
            cache.set_item(Self::key_tuple(py, key), baseline)?;
        }
        Ok((buckets.into(), cache.into()))
    }

    /// Load the reference's state (see `state`).
    fn load(&mut self, buckets: &PyDict, cache: &PyDict) -> PyResult<()> {
        self.buckets.clear();
        self.cache.clear();
        for (key, dwells) in buckets {
            let dwells: &PyDict = dwells.downcast()?;
            let mut bucket = AHashMap::with_capacity(dwells.len());
            for (order_id, dwell) in dwells {
                let order_id: &PyString = order_id.downcast()?;
                bucket.insert(Box::from(order_id.to_str()?), dwell.extract()?);
            }
            self.buckets.insert(Self::parse_key(key)?, bucket);
        }
        for (key, baseline) in cache {
            self.cache.insert(Self::parse_key(key)?, baseline.into());
        }
        Ok(())
    }
}
