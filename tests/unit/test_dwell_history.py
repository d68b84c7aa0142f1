"""Outlier baselines: the trailing median and MAD of a stage's dwells."""

from __future__ import annotations

from statistics import median

from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.dwell_history import DwellHistory
from dataflows.lifecycle import Transition
from dataflows.settings import HealthSettings


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=40))
def test_dwell_baselines_are_statistics_median_exactly(dwells: list[int]) -> None:
    """The outlier baseline sorts in NumPy but must give statistics.median's floats."""
    history = DwellHistory(HealthSettings.load().outliers)
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
    changes: list[tuple[int, int, int]], asks: list[int]
) -> None:
    """The buckets' cached arrays follow the buckets: asking for baselines
    between changes gives, for every hour asked afterwards, what a history
    built from the final dwells alone gives."""
    outliers = HealthSettings.load().outliers
    step = outliers.bucket_us
    history, final = DwellHistory(outliers), DwellHistory(outliers)
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
