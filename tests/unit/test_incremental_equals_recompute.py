"""The incremental stream state equals a from-scratch recomputation.

Random order lifecycles arrive out of order (inside the allowed lateness),
duplicated, split into random batches across two partitions, with a
pickle round-trip (what Bytewax recovery does) at a random point.  The
emitted window rows must equal the sum of every order's contribution derived
once from its complete event set at the final watermark.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec
from hypothesis import given, settings

from dataflows.contributions import order_contribution
from dataflows.dwell_history import DwellHistory
from dataflows.lifecycle import add_outlier_flags, derive_view, sort_events
from dataflows.metrics import MEASURES
from dataflows.partition_processor import ORDER_EVICTED, PartitionProcessor, SourcedEvent
from dataflows.settings import HealthSettings
from dataflows.timeutil import to_us
from dataflows.twin import lifecycle_rows
from schemas.events import OrderEvent
from tests.factories import at, event
from tests.strategies import streams
from tests.stream_driver import run_stream

SETTINGS = HealthSettings.load()
LATENESS_MIN = SETTINGS.allowed_lateness_us / 60_000_000


def _recompute(partitions: list[list[SourcedEvent]], evicted: set[tuple[int, int]]) -> dict:
    """From scratch; without events the stream dropped for an evicted order
    (``evicted`` = their (partition, offset): finished orders leave hot state
    and their stragglers only count after a restatement)."""
    totals: dict = defaultdict(lambda: [0] * len(MEASURES))
    for items in partitions:
        items = [i for i in items if (i.partition, i.offset) not in evicted]
        if not items:
            continue
        wm = max(to_us(i.event.event_time) for i in items) - SETTINGS.allowed_lateness_us
        by_order: dict[str, dict[str, OrderEvent]] = defaultdict(dict)
        for item in items:
            by_order[item.event.order_id].setdefault(item.event.event_id, item.event)
        history = DwellHistory(SETTINGS.outliers)
        views = {}
        for order_id, events in by_order.items():
            ordered = sort_events(list(events.values()))
            views[order_id] = derive_view(order_id, ordered, SETTINGS, wm)
            history.replace(order_id, (), views[order_id].transitions)
        for view in views.values():
            view = add_outlier_flags(view, SETTINGS, wm, history.baseline)
            for key, row in order_contribution(view, SETTINGS).items():
                totals[key] = [a + b for a, b in zip(totals[key], row.vector, strict=True)]
    return {k: v for k, v in totals.items() if any(v)}


@settings(max_examples=60, deadline=None)
@given(streams(SETTINGS))
def test_stream_rows_equal_recomputation(case: tuple[list[list[SourcedEvent]], int]) -> None:
    partitions, seed = case
    run = run_stream(partitions, SETTINGS, seed)
    windows, emitted = run.windows, run.rows
    assert windows is not None

    evicted = {
        (row["partition"], row["offset"])
        for row in run.bronze
        if ORDER_EVICTED in (row["quality_warnings"] or "").split(",")
    }
    expected = _recompute(partitions, evicted)
    got = {k: [r[m] for m in MEASURES] for k, r in emitted.items() if any(r[m] for m in MEASURES)}
    zero = [0] * len(MEASURES)
    mismatches = {
        key: {
            m: (a, b)
            for m, a, b in zip(MEASURES, got.get(key, zero), expected.get(key, zero), strict=True)
            if a != b
        }
        for key in set(got) | set(expected)
        if got.get(key) != expected.get(key)
    }
    assert not mismatches, f"stream vs recomputation (stream, expected): {mismatches}"
    assert windows.late_contributions == 0
    final_wm = windows.watermark_us
    for key, row in emitted.items():
        end = key[1] + dict(SETTINGS.window_sizes)[key[0]]
        assert row["is_final"] == (final_wm is not None and end <= final_wm)


def test_duplicates_and_too_late_events_are_flagged_not_counted() -> None:
    processor = PartitionProcessor("t", 0, SETTINGS)
    created = event("ORDER_CREATED", "A", at(0))
    later = event("ORDER_CREATED", "B", at(5))
    too_late = event("EXCEPTION", "A", at(1))
    batch = [SourcedEvent(e, "t", 0, i) for i, e in enumerate([created, created, later, too_late])]
    result = processor.process(batch)
    flags = [(r["is_duplicate"], r["is_late"]) for r in result.bronze.rows()]
    assert flags == [(False, False), (True, False), (False, False), (False, True)]
    rows = lifecycle_rows(result.lifecycle)
    assert sorted(r["order_id"] for r in rows) == ["A", "B"]
    assert {r["order_id"]: r["event_count"] for r in rows} == {"A": 1, "B": 1}
    assert result.watermark_us == to_us(at(5)) - SETTINGS.allowed_lateness_us
    assert result.last_offset == 3


def test_a_duplicate_event_id_with_another_payload_is_kept_and_flagged() -> None:
    processor = PartitionProcessor("t", 0, SETTINGS)
    created = event("ORDER_CREATED", "A", at(0))
    same = created
    forged = msgspec.structs.replace(created, source_system="somebody-else")
    batch = [SourcedEvent(e, "t", 0, i) for i, e in enumerate([created, same, forged])]
    rows = processor.process(batch).bronze.rows()
    assert [(r["is_duplicate"], r["quality_warnings"]) for r in rows] == [
        (False, None),
        (True, None),
        (True, "event_id_conflict"),
    ]
