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
