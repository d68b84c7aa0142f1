"""Per-Kafka-partition processing: dedupe, lateness, lifecycle, window deltas.

All events of one order share a Kafka partition (key = ``order_id``) and a
partition is read in offset order, so everything decided here -- duplicate or
not, too late or not, the watermark -- is a deterministic function of the
partition's log.  That is what makes a replay after a crash reproduce the same
tables.  This module is pure: no Kafka, no Delta, no Bytewax.

Watermark: ``max event time seen in the partition - allowed lateness``.  An
event older than the watermark at arrival is *too late*: it is kept in bronze
(flagged ``is_late``) for restatement but does not change live metrics.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from typing import Any, cast

import msgspec

from dataflows.bronze_rows import BronzeRows
from dataflows.contributions import OrderItems, WindowDelta
from dataflows.lifecycle import (
    EVENT_RANK,
    Baseline,
    Flag,
    OrderView,
    Transition,
    judge_dwell,
)
from dataflows.native_bronze import bronze_maker
from dataflows.native_core import delta_factory
from dataflows.native_dwells import adopt_history, new_history
from dataflows.native_facts import items_maker
from dataflows.native_intake import intake_maker
from dataflows.native_lifecycle import lifecycle_maker
from dataflows.native_outliers import outlier_flagger
from dataflows.native_times import to_us_of
from dataflows.native_view import view_maker
from dataflows.settings import HealthSettings
from dataflows.timeutil import to_us
from dataflows.twin import LifecycleColumns
from schemas.events import Cancelled, Delivered, OrderEvent

__all__ = [
    "ORDER_EVICTED",
    "PartitionBatch",
    "PartitionProcessor",
    "SourcedEvent",
    "WindowFeed",
]


class SourcedEvent(msgspec.Struct, frozen=True, gc=False):
    """A decoded event with its Kafka coordinates (lineage).

    Like the event it holds, never part of a cycle: ``gc=False`` keeps the
    cyclic collector from tracking one per message.
    """

    event: OrderEvent
    topic: str
    partition: int
    offset: int
    #: Record rules (action "warn") this event broke.
    warnings: tuple[str, ...] = ()
    #: Kafka message timestamp (when it was produced), in us, if known.
    produced_us: int | None = None


class WindowFeed(msgspec.Struct):
    """What the window step reads of a partition batch.

    Sent alone to the window step's worker: with several workers the exchange
    pickles what it sends, and the bronze and lifecycle rows (most of a
    batch's bytes) are written on the partition's own worker.
    """

    stream: str
    last_offset: int
    watermark_us: int | None
    window_delta: WindowDelta
    #: Newest Kafka message timestamp seen in the partition so far (freshness).
    produced_us: int | None = None


class PartitionBatch(WindowFeed, kw_only=True):
    """What one batch of a partition produced."""

    bronze: BronzeRows
    #: The touched orders' silver/order_lifecycle rows (:mod:`dataflows.twin`).
    lifecycle: LifecycleColumns

    def window_feed(self) -> WindowFeed:
        """The window step's part, without the rows written here."""
        return WindowFeed(
            self.stream, self.last_offset, self.watermark_us, self.window_delta, self.produced_us
        )


class _Order:
    """Hot state of one order."""

    __slots__ = (
        "deadline_us",
        "dwells",
        "event_ids",
        "events",
        "evict_at",
        "first_seen_us",
        "items",
        "last_event_us",
        "last_offset",
        "terminal",
        "times",
        "verdicts",
    )

    def __init__(self) -> None:
        #: Accepted events in :func:`~dataflows.lifecycle.sort_events` order,
        #: and their times in us (parallel lists, not a (sort key, event)
        #: pair per event: two tuples less per event of every open order).
        self.events: list[OrderEvent] = []
        self.times: list[int] = []
        self.event_ids: set[str] = set()
        #: The order's facts with their dimension values: its contribution to
        #: the windows in compact form (dataflows.contributions.order_items;
        #: with the native core, kept in Rust).
        self.items: OrderItems = ()
        self.dwells: tuple[Transition, ...] = ()
        #: Outlier verdicts on this order's finished stages, by (stage, end):
        #: a decision is final, even after the partition history moves on.
        #: (Snapshots from before verdicts hold the baselines judged against
        #: instead; PartitionProcessor turns them into verdicts on load.)
        self.verdicts: dict[tuple[str, int], Flag | None] = {}
        self.deadline_us: int | None = None
        #: Watermark past which the finished order leaves hot state (None: not finished).
        self.evict_at: int | None = None
        self.last_offset = -1
        #: Newest accepted event time, and whether a DELIVERED or CANCELLED
        #: event was accepted: tracked event by event, so that when an order
        #: retires does not depend on how the log was cut into batches.
        self.last_event_us = -1
        self.terminal = False
        #: Event time of the first event accepted for the order, in log order:
        #: fixed for the order's life (silver/order_lifecycle is partitioned
        #: by its day, so a row never moves between partitions).
        self.first_seen_us = -1

    def __getstate__(self) -> tuple[Any, ...]:
        # The items are derivable from the rest, so snapshots leave them
        # out; PartitionProcessor rebuilds them.
        return (
            self.events,
            self.times,
            self.event_ids,
            self.dwells,
            self.verdicts,
            self.deadline_us,
            self.last_offset,
            self.evict_at,
            self.last_event_us,
            self.terminal,
            self.first_seen_us,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if len(state) == 6:  # a snapshot from before eviction existed
            state = (*state, None)
        if len(state) == 7:
            events = state[0]
            last = max((to_us(e.event_time) for _, e in events), default=-1)
            done = any(type(e) in _TERMINAL for _, e in events)
            state = (*state, last, done)
        if len(state) == 9:  # before first_seen_us: the earliest event stands in
            state = (*state, min(to_us(e.event_time) for _, e in state[0]))
        if len(state) == 10:  # events as (sort key, event) pairs
            pairs = state[0]
            state = ([e for _, e in pairs], [key[0] for key, _ in pairs], *state[1:])
        (
            self.events,
            self.times,
            self.event_ids,
            self.dwells,
            self.verdicts,
            self.deadline_us,
            self.last_offset,
            self.evict_at,
            self.last_event_us,
            self.terminal,
            self.first_seen_us,
        ) = state
        self.items = ()


#: Bronze warning for a duplicate ``event_id`` whose payload differs from the
#: first copy: the first copy counts, the second is kept (flagged) for review.
EVENT_ID_CONFLICT = "event_id_conflict"
#: Bronze warning for an event of an order already evicted from hot state
#: (finished long ago): kept, flagged is_late, left to a restatement.
ORDER_EVICTED = "order_evicted"
_TERMINAL = frozenset({Delivered, Cancelled})


def _conflicts(order: _Order | None, event: OrderEvent) -> bool:
    """A redelivered event id with a different payload (a producer bug or tampering)."""
    if order is None:
        return False
    for first in order.events:
        if first.event_id == event.event_id:
            return bool(first != event)
    return False


class PartitionProcessor:
    """Processes one Kafka partition's events in offset order."""

    def __init__(self, topic: str, partition: int, settings: HealthSettings) -> None:
        self.topic = topic
        self.partition = partition
        self.settings = settings
        self.max_event_us: int | None = None
        self.newest_produced_us: int | None = None
        self.orders: dict[str, _Order] = {}
        self.history = new_history(settings.outliers)
        self._timers: list[tuple[int, str]] = []
        #: (watermark past which to evict, order id) for finished orders.
        self._evictions: list[tuple[int, str]] = []
        #: Evicted order id -> watermark past which it is forgotten.
        self.evicted: dict[str, int] = {}
        self._forget: list[tuple[int, str]] = []
        self._new_delta = delta_factory(settings)
        self._items = items_maker(settings)
        self._new_rows = lifecycle_maker()
        self._view = view_maker(settings)
        self._new_bronze = bronze_maker()
        self._flag = outlier_flagger(settings)
        self._to_us = to_us_of()
        self._take_in = intake_maker(self)

    # -- recovery ---------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "settings": self.settings,
            "max_event_us": self.max_event_us,
            "newest_produced_us": self.newest_produced_us,
            "orders": self.orders,
            "history": self.history,
            "timers": self._timers,
            "evictions": self._evictions,
            "evicted": self.evicted,
            "forget": self._forget,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.topic = state["topic"]
        self.partition = state["partition"]
        self.settings = state["settings"]
        self.max_event_us = state["max_event_us"]
        self.newest_produced_us = state.get("newest_produced_us")
        self.orders = state["orders"]
        # In the core this process runs, whichever pickled it.
        self.history = adopt_history(self.settings.outliers, state["history"])
        self._timers = state["timers"]
        self._evictions = state.get("evictions", [])
        self.evicted = state.get("evicted", {})
        self._forget = state.get("forget", [])
        self._new_delta = delta_factory(self.settings)
        self._items = items_maker(self.settings)
        self._new_rows = lifecycle_maker()
        self._view = view_maker(self.settings)
        self._new_bronze = bronze_maker()
        self._flag = outlier_flagger(self.settings)
        self._to_us = to_us_of()
        self._take_in = intake_maker(self)
        # Between batches every order's view is up to date with the watermark
        # (all passed deadlines have fired), so its items are exactly what
        # deriving them again now gives.
        watermark = self.watermark_us
        for order_id, order in self.orders.items():
            _judge_legacy_baselines(order, self.settings)
            view = self._view(order_id, order.events, watermark, order.times)
            view = self._flag(view, watermark, self.history.baseline, order.verdicts)
            order.items = self._items(view)

    @property
    def watermark_us(self) -> int | None:
        if self.max_event_us is None:
            return None
        return self.max_event_us - self.settings.allowed_lateness_us

    @property
    def stream(self) -> str:
        return f"{self.topic}/{self.partition}"

    # -- processing -------------------------------------------------------
    def process(self, batch: list[SourcedEvent]) -> PartitionBatch:
        """Apply a batch (in offset order) and return rows and window deltas."""
        bronze = self._new_bronze(self.topic, self.partition)
        touched: set[str] = set()
        last_offset = self._take_in(self, batch, bronze, touched)
        watermark = self.watermark_us
        if watermark is not None:
            while self._timers and self._timers[0][0] < watermark:
                deadline, order_id = heapq.heappop(self._timers)
                timed = self.orders.get(order_id)
                if timed is not None and timed.deadline_us == deadline:
                    touched.add(order_id)

        delta = self._new_delta()
        lifecycle = self._new_rows()
        # Two phases: register every changed dwell first, so that the outlier
        # baselines read below are complete whatever the order of refreshes.
        views = {order_id: self._derive(order_id, watermark) for order_id in sorted(touched)}
        for order_id, base_view in views.items():
            order = self.orders[order_id]
            view = self._flag(base_view, watermark, self.history.baseline, order.verdicts)
            self._apply(order_id, view, delta)
            lifecycle.add(view, self.topic, self.partition, order.last_offset, order.first_seen_us)
        delta.drop_unchanged()
        if watermark is not None:
            self.history.evict(watermark)
            self._evict_finished(watermark)
        return PartitionBatch(
            stream=self.stream,
            last_offset=last_offset,
            watermark_us=watermark,
            bronze=bronze,
            lifecycle=lifecycle.columns(),
            window_delta=delta,
            produced_us=self.newest_produced_us,
        )

    def take_in(self, batch: list[SourcedEvent], bronze: BronzeRows, touched: set[str]) -> int:
        """Each event of ``batch`` into ``bronze`` and, if it counts, into its order.

        Decides duplicate, late and retired event by event, adds the ids of
        the orders that changed to ``touched`` and moves the partition's
        newest event time; returns the batch's last offset (-1 if empty).
        The definition: ``native/src/intake.rs`` is its twin
        (:data:`~dataflows.native_intake.NATIVE_INTAKE_OF`).
        """
        last_offset = -1
        lateness = self.settings.allowed_lateness_us
        max_event_us = self.max_event_us
        watermark = None if max_event_us is None else max_event_us - lateness
        event_us = self._to_us
        for item in batch:
            event = item.event
            order_id = event.order_id
            at = event_us(event.event_time)
            order = self.orders.get(order_id)
            warnings = item.warnings
            if self._retired(order_id, order, watermark):
                # Finished and past its retention: whether or not it is still
                # in memory, nothing more counts live (see _retired).
                duplicate, late = False, True
                warnings = (*warnings, ORDER_EVICTED)
            else:
                duplicate = order is not None and event.event_id in order.event_ids
                late = not duplicate and watermark is not None and at < watermark
                if duplicate and _conflicts(order, event):
                    warnings = (*warnings, EVENT_ID_CONFLICT)
            bronze.add(
                event, item.offset, duplicate, late, ",".join(warnings) if warnings else None, at
            )
            last_offset = item.offset
            if item.produced_us is not None and item.produced_us > (self.newest_produced_us or -1):
                self.newest_produced_us = item.produced_us
            if duplicate or late:
                continue
            if order is None:
                order = self.orders[order_id] = _Order()
                order.first_seen_us = at
            order.event_ids.add(event.event_id)
            _insert(order, event, at)
            order.last_offset = item.offset
            if at > order.last_event_us:
                order.last_event_us = at
            if type(event) in _TERMINAL:
                order.terminal = True
            touched.add(order_id)
            if max_event_us is None or at > max_event_us:
                max_event_us = self.max_event_us = at
                watermark = at - lateness
        return last_offset

    def _retired(self, order_id: str, order: _Order | None, watermark: int | None) -> bool:
        """A finished order whose retention has passed: its events no longer count live.

        Decided event by event from what the partition's log has shown so far
        (a DELIVERED or CANCELLED event, the newest event time, the
        watermark), never from when a batch ended, so every replay and every
        batching flags the same events.  Eviction from memory follows later
        (:meth:`_evict_finished`) and changes nothing about this decision.
        """
        if order is None:
            return order_id in self.evicted
        return (
            order.terminal
            and watermark is not None
            and watermark > order.last_event_us + self.settings.finished_retention_us
        )

    def _evict_finished(self, watermark: int) -> None:
        """Drop finished orders whose retention has passed; forget old evicted ids.

        Deterministic in the partition's log (the watermark is), so a replay
        evicts the same orders at the same point.
        """
        while self._evictions and self._evictions[0][0] < watermark:
            when, order_id = heapq.heappop(self._evictions)
            order = self.orders.get(order_id)
            if order is None or order.evict_at != when:
                continue  # it changed since (a newer entry exists) or is gone
            del self.orders[order_id]
            forget_at = when - self.settings.finished_retention_us + self.settings.evicted_memory_us
            self.evicted[order_id] = forget_at
            heapq.heappush(self._forget, (forget_at, order_id))
        while self._forget and self._forget[0][0] < watermark:
            when, order_id = heapq.heappop(self._forget)
            if self.evicted.get(order_id) == when:
                del self.evicted[order_id]

    @property
    def open_orders(self) -> int:
        """Orders in hot state (open, or finished within the retention)."""
        return len(self.orders)

    def _derive(self, order_id: str, watermark: int | None) -> OrderView:
        order = self.orders[order_id]
        view = self._view(order_id, order.events, watermark, order.times)
        self.history.replace(order_id, order.dwells, view.transitions)
        order.dwells = view.transitions
        return view

    def _apply(self, order_id: str, view: OrderView, delta: WindowDelta) -> None:
        order = self.orders[order_id]
        items = self._items(view)
        delta.apply(order.items, items)
        order.items = items
        if view.next_deadline_us != order.deadline_us:
            order.deadline_us = view.next_deadline_us
            if view.next_deadline_us is not None:
                heapq.heappush(self._timers, (view.next_deadline_us, order_id))
        # Out of memory once retired and nothing is left for the watermark to
        # change (no deadline pending): its view is final.
        finished = order.terminal and view.next_deadline_us is None
        evict_at = order.last_event_us + self.settings.finished_retention_us if finished else None
        if evict_at != order.evict_at:
            order.evict_at = evict_at
            if evict_at is not None:
                heapq.heappush(self._evictions, (evict_at, order_id))


def _judge_legacy_baselines(order: _Order, settings: HealthSettings) -> None:
    """Turn a snapshot's memo of baselines (before verdicts) into verdicts.

    Such a memo holds, for each finished stage already judged, the baseline
    it was judged against; the stage itself is among the order's dwells.
    """
    memo = cast(dict[tuple[str, int], Flag | Baseline | None], order.verdicts)
    if not any(isinstance(value, Baseline) for value in memo.values()):
        return
    dwells = {(t.stage, t.end_us): t for t in order.dwells}
    order.verdicts = {
        key: judge_dwell(dwells[key], value, settings.outliers)
        if isinstance(value, Baseline)
        else value
        for key, value in memo.items()
        if key in dwells
    }


def _insert(order: _Order, event: OrderEvent, at_us: int) -> None:
    """Add an accepted event in :func:`dataflows.lifecycle.sort_events` order."""
    events, times = order.events, order.times
    if (
        not times
        or times[-1] < at_us
        or _sort_key(events[-1], times[-1]) <= _sort_key(event, at_us)
    ):
        events.append(event)  # nearly always: an order's events come in order
        times.append(at_us)
        return
    key = _sort_key(event, at_us)
    index = bisect_right(range(len(events)), key, key=lambda i: _sort_key(events[i], times[i]))
    events.insert(index, event)
    times.insert(index, at_us)


def _sort_key(event: OrderEvent, at_us: int) -> tuple[int, int, str]:
    """Same order as :func:`dataflows.lifecycle.sort_events`."""
    return (at_us, EVENT_RANK[event.event_type], event.event_id)
