//! The outlier verdicts on an order's finished stages: the native twin of
//! `dataflows.lifecycle.add_outlier_flags`, which stays the definition.
//!
//! The stream derives every touched order's view again at each batch, and
//! then walks its transitions: a stage the watermark has not passed yet
//! gives a deadline, a passed one gives its verdict, judged once and kept in
//! the order's verdicts (`OutlierVerdicts`).  In CPython that walk was ~5%
//! of the event thread: a tuple key, a dict look-up and a few comparisons
//! per transition, plus the call itself, for views that nearly always come
//! back unchanged.
//!
//! Here the walk and the baseline test run in Rust.  Only a dwell the test
//! finds beyond its baseline is handed to the Python `judge_dwell` (rare),
//! so the flag and its text are the reference's own; a view that changes is
//! rebuilt with `msgspec.structs.replace`, as the reference does.
//! `tests/unit/test_native_outliers.py` holds the two equal, and
//! `dataflows.native_outliers.NATIVE_OUTLIERS_OF` keeps this from running
//! against a changed definition.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::dwells::DwellHistory;
use crate::fields::field;

/// Where baselines come from: the native history itself, called in Rust, or
/// any Python callable (the reference history's method).
enum Baselines<'py> {
    Native(&'py PyCell<DwellHistory>),
    Python(&'py PyAny),
}

impl<'py> Baselines<'py> {
    /// A native history's own `baseline` method is called without Python's
    /// call machinery (a thousand instructions a call, five calls an order).
    fn of(py: Python<'py>, baseline: &'py PyAny) -> Self {
        let native = baseline
            .getattr(intern!(py, "__self__"))
            .ok()
            .and_then(|owner| owner.downcast::<PyCell<DwellHistory>>().ok());
        let named_baseline = baseline
            .getattr(intern!(py, "__name__"))
            .map_or(false, |name| name.eq("baseline").unwrap_or(false));
        match native {
            Some(history) if named_baseline => Baselines::Native(history),
            _ => Baselines::Python(baseline),
        }
    }

    fn get(&self, py: Python<'py>, stage: &PyString, end: i64) -> PyResult<&'py PyAny> {
        match self {
            Baselines::Native(history) => Ok(history
                .try_borrow_mut()?
                .baseline(py, stage, end)?
                .into_ref(py)),
            Baselines::Python(baseline) => baseline.call1((stage, end)),
        }
    }
}

/// The verdict walk for one settings' outlier thresholds.
#[pyclass(module = "orderhealth_native", frozen)]
pub struct OutlierFlags {
    min_samples: i64,
    /// `OutlierSettings.scaled_threshold`, as Python computed it.
    scaled_threshold: f64,
    /// The `OutlierSettings` handed to `judge`.
    settings: PyObject,
    /// `judge_dwell(transition, baseline, settings)`.
    judge: PyObject,
    /// `msgspec.structs.replace`.
    replace: PyObject,
}

/// A flag's sort key: `(at_us, kind, reason)`.
type FlagKey = (i64, String, String);

fn flag_key(flag: &PyAny) -> PyResult<FlagKey> {
    Ok((
        field!(flag, "at_us")?.extract()?,
        field!(flag, "kind")?.extract()?,
        field!(flag, "reason")?.extract()?,
    ))
}

#[pymethods]
impl OutlierFlags {
    #[new]
    fn new(
        min_samples: i64,
        scaled_threshold: f64,
        settings: PyObject,
        judge: PyObject,
        replace: PyObject,
    ) -> Self {
        OutlierFlags {
            min_samples,
            scaled_threshold,
            settings,
            judge,
            replace,
        }
    }

    /// What `add_outlier_flags(view, settings, watermark_us, baseline,
    /// verdicts)` gives, updating ``verdicts`` as it does.
    fn add(
        &self,
        py: Python<'_>,
        view: &PyAny,
        watermark_us: Option<i64>,
        baseline: &PyAny,
        verdicts: &PyDict,
    ) -> PyResult<PyObject> {
        let next_deadline: Option<i64> = field!(view, "next_deadline_us")?.extract()?;
        let transitions: &PyTuple = field!(view, "transitions")?.downcast()?;
        let baselines = Baselines::of(py, baseline);
        let mut deadline = next_deadline;
        let mut added: Vec<&PyAny> = Vec::new();
        for transition in transitions.iter() {
            // The key holds the transition's own int, as the reference's
            // does: a new int per verdict was 32 bytes more per finished
            // stage of every order in hot state.
            let end_us = field!(transition, "end_us")?;
            let end: i64 = end_us.extract()?;
            if watermark_us.map_or(true, |w| w <= end) {
                // Decided once the watermark passes the end.
                deadline = Some(deadline.map_or(end, |d| d.min(end)));
                continue;
            }
            let stage: &PyString = field!(transition, "stage")?.downcast()?;
            let key = PyTuple::new(py, [stage.to_object(py), end_us.to_object(py)]);
            let flag = match verdicts.get_item(key) {
                Some(known) => known,
                None => {
                    let judged = self.judge(py, transition, stage, end, &baselines)?;
                    verdicts.set_item(key, judged)?;
                    judged
                }
            };
            if !flag.is_none() {
                added.push(flag);
            }
        }
        if added.is_empty() && deadline == next_deadline {
            return Ok(view.into());
        }
        let flags: &PyTuple = field!(view, "flags")?.downcast()?;
        let mut keyed: Vec<(FlagKey, &PyAny)> = Vec::with_capacity(flags.len() + added.len());
        for flag in flags.iter().chain(added) {
            keyed.push((flag_key(flag)?, flag));
        }
        // Stable, as Python's sort: equal keys keep their order.
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let sorted = PyTuple::new(py, keyed.into_iter().map(|(_, flag)| flag));
        let changes = PyDict::new(py);
        changes.set_item(intern!(py, "flags"), sorted)?;
        changes.set_item(intern!(py, "next_deadline_us"), deadline)?;
        self.replace.call(py, (view,), Some(changes))
    }
}

impl OutlierFlags {
    /// `judge_dwell(transition, baseline(stage, end), settings)`: the
    /// reference's test, with the reference itself called for a flag.
    fn judge<'py>(
        &self,
        py: Python<'py>,
        transition: &'py PyAny,
        stage: &PyString,
        end: i64,
        baselines: &Baselines<'py>,
    ) -> PyResult<&'py PyAny> {
        let reference = baselines.get(py, stage, end)?;
        if reference.is_none() {
            return Ok(py.None().into_ref(py));
        }
        let samples: i64 = field!(reference, "samples")?.extract()?;
        let mad: f64 = field!(reference, "mad")?.extract()?;
        let median: f64 = field!(reference, "median")?.extract()?;
        let start: i64 = field!(transition, "start_us")?.extract()?;
        // `int - float` in Python: the int rounded to a double first.
        let excess = (end - start) as f64 - median;
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN: not beyond, as in Python
        let within = !(excess > self.scaled_threshold * mad);
        if samples < self.min_samples || mad <= 0.0 || within {
            return Ok(py.None().into_ref(py));
        }
        Ok(self
            .judge
            .call1(py, (transition, reference, &self.settings))?
            .into_ref(py))
    }
}
