"""Bounded hot state: finished orders leave memory after their retention.

The flow must not keep every order it ever saw.  A finished order (delivered
or cancelled, nothing left for the watermark to change) is evicted once the
watermark is ``finished_retention`` past its last event; its id is remembered
for ``evicted_memory`` so that a straggler is flagged instead of starting a
phantom order; the window totals are untouched by eviction.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.lifecycle import EVENT_RANK, sort_events
from dataflows.partition_processor import ORDER_EVICTED, PartitionProcessor, SourcedEvent
from dataflows.settings import DEFAULT_CONFIG_PATH, HealthSettings, SettingsError
from dataflows.timeutil import to_us
from dataflows.twin import lifecycle_rows
from dataflows.window_metrics import MetricWindows
from schemas.events import OrderEvent
from tests.factories import at, event
from tests.strategies import lifecycle, streams

HOUR = 3_600_000_000
SETTINGS = msgspec.structs.replace(
    HealthSettings.load(), finished_retention_us=2 * HOUR, evicted_memory_us=10 * HOUR
)


class _Partition:
    """One partition's processor fed one event at a time, with window totals."""

    def __init__(self, settings: HealthSettings = SETTINGS) -> None:
        self.processor = PartitionProcessor("t", 0, settings)
        self.windows = MetricWindows(settings, ["t/0"])
        self.bronze: list[dict] = []  # type: ignore[type-arg]
        self.offset = 0

    def feed(self, *events: OrderEvent) -> None:
        batch = []
        for e in events:
            batch.append(SourcedEvent(e, "t", 0, self.offset))
            self.offset += 1
        result = self.processor.process(batch)
        self.bronze.extend(result.bronze.rows())
        self.windows.apply(result)
        self.processor = pickle.loads(pickle.dumps(self.processor))  # recovery round trip

    def vectors(self) -> dict:  # type: ignore[type-arg]
        return self.windows.vectors()


def _order(order_id: str, start_h: float) -> list[OrderEvent]:
    return [
        event("ORDER_CREATED", order_id, at(start_h)),
        event("ROUTED", order_id, at(start_h + 0.5)),
        event("SHIPPED", order_id, at(start_h + 1)),
        event("DELIVERED", order_id, at(start_h + 3)),
    ]


def test_finished_orders_leave_hot_state_and_state_stays_bounded() -> None:
    part = _Partition()
    sizes = []
    for i in range(60):  # one order an hour, each finished 3 hours after it starts
        for e in _order(f"O{i}", i):
            part.feed(e)
        sizes.append(part.processor.open_orders)
    # Watermark = newest event - 15 min; an order is evicted 2 h after its
    # delivery, so at most ~6 orders are ever held, however long the stream.
    assert max(sizes) <= 7, sizes
    assert sizes[-1] == sizes[30], sizes
    assert "O55" not in part.processor.orders and "O55" in part.processor.evicted
    # Ids are remembered for 10 h only: the memory of evicted ids is bounded too.
    assert "O0" not in part.processor.orders and "O0" not in part.processor.evicted
    assert len(part.processor.evicted) <= 11
    assert "O59" in part.processor.orders


def test_eviction_does_not_change_any_window_total() -> None:
    keep = _Partition(
        msgspec.structs.replace(
            SETTINGS, finished_retention_us=1000 * HOUR, evicted_memory_us=1000 * HOUR
        )
    )
    evict = _Partition()
    for i in range(30):
        for e in _order(f"O{i}", i):
            keep.feed(e)
            evict.feed(e)
    assert evict.processor.open_orders < keep.processor.open_orders
    assert evict.vectors() == keep.vectors()


def test_a_straggler_of_an_evicted_order_is_flagged_not_applied() -> None:
    part = _Partition()
    for e in _order("A", 0):
        part.feed(e)
    part.feed(*_order("B", 10))  # the watermark moves 10 h on: A is evicted
    assert "A" not in part.processor.orders
    before = part.vectors()
    part.feed(event("EXCEPTION", "A", at(13.5)))  # after the watermark, but A is done
    row = part.bronze[-1]
    assert row["is_late"] is True and row["quality_warnings"] == ORDER_EVICTED
    assert part.vectors() == before
    assert "A" not in part.processor.orders  # no phantom order


def test_evicted_ids_are_forgotten_after_their_memory() -> None:
    part = _Partition()
    for e in _order("A", 0):
        part.feed(e)
    part.feed(*_order("B", 6))
    assert "A" in part.processor.evicted
    part.feed(*_order("C", 20))  # A's last event + 10 h memory is behind the watermark
    assert "A" not in part.processor.evicted


def test_retention_settings_are_validated(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG_PATH.read_text()
    bad = text.replace('evicted_order_memory = "30d"', 'evicted_order_memory = "1h"')
    assert bad != text
    path = tmp_path / "health.toml"
    path.write_text(bad)
    with pytest.raises(SettingsError, match="evicted_order_memory must be at least"):
        HealthSettings.load(path)


EAGER = msgspec.structs.replace(
    HealthSettings.load(), finished_retention_us=0, evicted_memory_us=1000 * 24 * HOUR
)


def _run(partitions: list[list[SourcedEvent]], sizes: list[int]) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """Bronze flags by (partition, offset) and final window vectors, for one batching."""
    names = [f"t/{p}" for p, items in enumerate(partitions) if items]
    windows = MetricWindows(EAGER, names)
    flags = {}
    for p, items in enumerate(partitions):
        processor = PartitionProcessor("t", p, EAGER)
        cursor = 0
        for size in sizes:
            if cursor >= len(items):
                break
            result = processor.process(items[cursor : cursor + size])
            cursor += size
            windows.apply(result)
            for row in result.bronze.rows():
                flags[(p, row["offset"])] = (
                    row["is_duplicate"],
                    row["is_late"],
                    row["quality_warnings"],
                )
        if cursor < len(items):
            windows.apply(processor.process(items[cursor:]))
    # A window whose measures cancelled out across batches (an order's fact
    # moved away) holds zeros; within one batch the change is dropped before
    # it makes a window.  Both mean "nothing here", as in the stream = batch
    # tests, so only windows with a non-zero measure are compared.
    return flags, {k: v for k, v in windows.vectors().items() if any(v)}


@settings(max_examples=80, deadline=None)
@given(case=streams(EAGER, max_orders=12), cut=st.integers(1, 7))
def test_what_retires_does_not_depend_on_how_the_log_is_batched(case, cut: int) -> None:  # type: ignore[no-untyped-def]
    """Replays after a crash cut the log into other batches; eviction must not care."""
    partitions, _seed = case
    one_by_one = _run(partitions, [1] * 10_000)
    in_chunks = _run(partitions, [cut] * 10_000)
    assert one_by_one == in_chunks


def test_an_orders_first_seen_time_is_its_first_accepted_event_and_never_moves() -> None:
    """silver/order_lifecycle is partitioned by this day: a row must not change partition."""
    part = _Partition()
    part.feed(event("ROUTED", "A", at(30)))  # seen first, out of order
    part.feed(event("ORDER_CREATED", "A", at(29)))  # earlier, but seen later
    part.feed(event("ROUTED", "A", at(30)))  # a duplicate changes nothing either
    result = part.processor.process([SourcedEvent(event("SHIPPED", "A", at(40)), "t", 0, 9)])
    assert part.processor.orders["A"].first_seen_us == to_us(at(30))
    (row,) = lifecycle_rows(result.lifecycle)
    assert row["first_seen_at"] == to_us(at(30))


@settings(max_examples=100, deadline=None)
@given(events=lifecycle("A"), order=st.randoms(use_true_random=False))
def test_an_orders_events_stay_in_event_time_order_whatever_the_arrival_order(
    events: list[OrderEvent], order: random.Random
) -> None:
    """Hot state keeps each order's events and times as two parallel lists, sorted."""
    arrivals = list(events)
    order.shuffle(arrivals)
    processor = PartitionProcessor(
        "t", 0, msgspec.structs.replace(SETTINGS, allowed_lateness_us=10**15)
    )
    processor.process([SourcedEvent(e, "t", 0, i) for i, e in enumerate(arrivals)])
    kept = processor.orders["A"]
    assert kept.events == sort_events(events)
    assert kept.times == [to_us(e.event_time) for e in kept.events]


def test_an_order_snapshot_from_before_the_parallel_lists_restores() -> None:
    """Snapshots kept each event as a (sort key, event) pair until the seventeenth pass."""
    part = _Partition()
    part.feed(event("ORDER_CREATED", "A", at(1)), event("ROUTED", "A", at(2)))
    order = part.processor.orders["A"]
    events, times, *rest = order.__getstate__()
    pairs = [
        ((t, EVENT_RANK[e.event_type], e.event_id), e) for e, t in zip(events, times, strict=True)
    ]
    restored = type(order).__new__(type(order))
    restored.__setstate__((pairs, *rest))
    assert restored.events == order.events and restored.times == order.times
    assert restored.__getstate__() == order.__getstate__()
