"""Outlier baselines: the trailing median and MAD of a stage's dwells.

``dataflows.dwell_history.DwellHistory`` is the reference; the native core
keeps the same history in Rust (``native/src/dwells.rs``).  Every test here
runs on both, and the native one must give the reference's floats.
"""

from __future__ import annotations

import pickle
from statistics import median

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_dwells
from dataflows.dwell_history import DwellHistory, History
from dataflows.lifecycle import Transition
from dataflows.native_core import native_module
from dataflows.native_dwells import NATIVE_DWELLS_OF, adopt_history, dwells_fingerprint, new_history
from dataflows.settings import HealthSettings, OutlierSettings
from tests.twin_guard import unchecked_twin

OUTLIERS = HealthSettings.load().outliers
CORES = ["python"] + (["native"] if native_module() is not None else [])
needs_native = pytest.mark.skipif(native_module() is None, reason="orderhealth_native is not built")


def _history(core: str, outliers: OutlierSettings = OUTLIERS) -> History:
    return new_history(outliers, core=core)


@pytest.mark.parametrize("core", CORES)
@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10**12) | st.sampled_from([0, 7, 7, 9]), min_size=1, max_size=40))
def test_dwell_baselines_are_statistics_median_exactly(core: str, dwells: list[int]) -> None:
    """The outlier baseline sorts in NumPy (or selects in Rust) but must give
    statistics.median's floats, ties and even counts included."""
    history = _history(core)
    hour = 10 * history.settings.bucket_us
    for i, dwell in enumerate(dwells):
        end = hour - history.settings.bucket_us + i
        history.replace(f"o{i}", (), (Transition("PICKED", end - dwell, end, None),))
    baseline = history.baseline("PICKED", hour)
    assert baseline is not None
    middle = float(median(dwells))
    assert baseline.median == middle
    assert baseline.mad == float(median(abs(d - middle) for d in dwells))
    assert baseline.samples == len(dwells)


@pytest.mark.parametrize("core", CORES)
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 40), st.integers(1, 10**9)),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.integers(0, 30), max_size=8),
)
def test_a_baseline_sees_every_change_made_before_it_is_asked(
    core: str, changes: list[tuple[int, int, int]], asks: list[int]
) -> None:
    """The buckets' cached arrays follow the buckets: asking for baselines
    between changes gives, for every hour asked afterwards, what a history
    built from the final dwells alone gives."""
    step = OUTLIERS.bucket_us
    history, final = _history(core), _history(core)
    current: dict[str, tuple[Transition, ...]] = {}
    hours = iter(asks)
    asked: set[int] = set()
    for order, bucket, dwell in changes:
        order_id = f"o{order}"
        end = bucket * step + dwell % step
        new = (Transition("PICKED", end - dwell, end, None),)
        history.replace(order_id, current.get(order_id, ()), new)
        current[order_id] = new
        hour = next(hours, None)
        if hour is not None:  # builds (and caches) the arrays of its buckets
            history.baseline("PICKED", hour * step)
            asked.add(hour)
    for order_id, transitions in current.items():
        final.replace(order_id, (), transitions)
    for hour in set(range(0, 45)) - asked:
        assert history.baseline("PICKED", hour * step) == final.baseline("PICKED", hour * step)


_STAGES = ["PICKED", "PACKED", "SHIPPED"]
#: One step of a partition's use of its history: an order's dwells swapped
#: (order, [(stage, end hour, minute, dwell)]), a baseline asked
#: (stage, hour, minute), or the watermark moved (hour).
_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("replace"),
            st.integers(0, 12),
            st.lists(
                st.tuples(
                    st.sampled_from(_STAGES),
                    # Negative hours too: buckets floor like Python's %.
                    st.integers(-3, 40),
                    st.integers(0, 59),
                    st.integers(0, 10**11) | st.sampled_from([0, 1, 2, 2**53 + 1]),
                ),
                max_size=3,
            ),
        ),
        st.tuples(
            st.just("baseline"), st.sampled_from(_STAGES), st.integers(-3, 45), st.integers(0, 59)
        ),
        st.tuples(st.just("evict"), st.integers(-3, 80)),
        st.tuples(st.just("pickle")),
    ),
    max_size=80,
)


@needs_native
@settings(max_examples=300, deadline=None)
@given(steps=_steps, history_hours=st.integers(1, 30))
def test_the_native_history_equals_the_reference(steps: list[tuple], history_hours: int) -> None:
    """Random swaps, baselines, evictions and pickle round trips (in either
    direction: a snapshot of one core restores into the other): the same
    baselines, the same state."""
    hour_us = OUTLIERS.bucket_us
    outliers = OutlierSettings(
        OUTLIERS.z_threshold, OUTLIERS.min_samples, history_hours * hour_us, hour_us
    )
    histories = {core: _history(core, outliers) for core in ("python", "native")}
    current: dict[str, tuple[Transition, ...]] = {}
    for step in steps:
        answers = {}
        for core, history in histories.items():
            if step[0] == "replace":
                _, order, dwells = step
                new = tuple(
                    Transition(stage, end - dwell, end, None)
                    for stage, h, minute, dwell in dwells
                    for end in [h * hour_us + minute * 60_000_000]
                )
                history.replace(f"o{order}", current.get(f"o{order}", ()), new)
            elif step[0] == "baseline":
                _, stage, h, minute = step
                answers[core] = history.baseline(stage, h * hour_us + minute * 60_000_000)
            elif step[0] == "evict":
                history.evict(step[1] * hour_us)
            else:
                histories[core] = pickle.loads(pickle.dumps(history))
        if step[0] == "replace":
            current[f"o{step[1]}"] = new
        if answers:
            assert answers["native"] == answers["python"]
    assert _state(histories["native"]) == _state(histories["python"])
    # Either core's snapshot restores into the other.
    for source, target in (("native", "python"), ("python", "native")):
        moved = new_history(outliers, histories[source].__getstate__(), target)
        assert _state(moved) == _state(histories[source])


def _state(history: History) -> tuple[dict, dict]:
    state = history.__getstate__()
    return state["_buckets"], state["_cache"]


@needs_native
def test_a_native_history_pickles_into_the_core_that_loads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A snapshot taken with the native core restores with the Python core."""
    history = _history("native")
    end = 5 * OUTLIERS.bucket_us + 7
    history.replace("o1", (), (Transition("PICKED", end - 60, end, None),))
    baseline = history.baseline("PICKED", end + OUTLIERS.bucket_us)
    snapshot = pickle.dumps(history)
    monkeypatch.setenv("ORDERHEALTH_CORE", "python")
    restored = pickle.loads(snapshot)
    assert isinstance(restored, DwellHistory)
    assert restored.baseline("PICKED", end + OUTLIERS.bucket_us) == baseline
    assert _state(restored) == _state(history)


@needs_native
def test_a_restored_history_is_copied_only_into_the_other_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A snapshot from before the native history holds the reference's."""
    end = 5 * OUTLIERS.bucket_us + 7
    legacy = _history("python")
    legacy.replace("o1", (), (Transition("PICKED", end - 60, end, None),))
    monkeypatch.setenv("ORDERHEALTH_CORE", "native")
    adopted = adopt_history(OUTLIERS, legacy)
    assert not isinstance(adopted, DwellHistory)
    assert _state(adopted) == _state(legacy)
    assert adopt_history(OUTLIERS, adopted) is adopted
    monkeypatch.setenv("ORDERHEALTH_CORE", "python")
    assert adopt_history(OUTLIERS, legacy) is legacy


def test_the_native_history_was_checked_against_this_reference() -> None:
    """The fingerprint names the reference the equality tests above passed on."""
    assert dwells_fingerprint() == NATIVE_DWELLS_OF, (
        "dataflows/dwell_history.py changed, so the native core now computes outlier "
        "baselines in Python.  Make native/src/dwells.rs match it, run this file's "
        f"equality tests, then set dataflows.native_dwells.NATIVE_DWELLS_OF = "
        f"{dwells_fingerprint()!r}"
    )


@needs_native
def test_a_changed_reference_runs_in_python_until_its_twin_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not isinstance(_history("native"), DwellHistory)
    with unchecked_twin(
        monkeypatch, native_dwells, "NATIVE_DWELLS_OF", native_dwells._native_dwells_current
    ):
        history = _history("native")
    assert isinstance(history, DwellHistory)
