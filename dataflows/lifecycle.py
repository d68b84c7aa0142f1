"""Per-order lifecycle: the behaviour layer of the digital twin, as a pure function.

:func:`derive_view` turns the set of an order's accepted events (deduplicated,
any arrival order) and the watermark into an :class:`OrderView`: stage times,
dwell times, current stage, outcome and anomaly flags.  Because the view is a
function of the *set* of events sorted by event time, the same events in any
arrival order give the same view -- the property the stream-equals-batch
guarantee rests on.  The only dependence on the watermark is through deadlines
(the first promise, stage SLAs); :attr:`OrderView.next_deadline_us` says when
the view must be derived again.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, cast

import msgspec

from dataflows.outcome import Outcome, resolve
from dataflows.settings import HealthSettings, OutlierSettings
from dataflows.timeutil import from_us, to_us
from schemas.events import (
    ALL_EVENT_TYPES,
    Cancelled,
    EventType,
    Exception_,
    OrderCreated,
    OrderEvent,
    PromiseUpdated,
    Rerouted,
    Routed,
    Shipped,
)

__all__ = [
    "EVENT_RANK",
    "SPECIAL_ROLES",
    "Baseline",
    "BaselineLookup",
    "Flag",
    "FlagKind",
    "OrderView",
    "OutlierVerdicts",
    "Transition",
    "add_outlier_flags",
    "derive_view",
    "judge_dwell",
    "sla_breach_reason",
    "sort_events",
]


class FlagKind:
    """Anomaly flag kinds (SPEC §4 component 4)."""

    EXCEPTION = "exception"
    REROUTE = "reroute"
    STAGE_SLA_BREACH = "stage_sla_breach"
    IMPOSSIBLE_TRANSITION = "impossible_transition"
    OUTLIER_DWELL = "outlier_dwell"


class Baseline(msgspec.Struct, frozen=True, gc=False):
    """Trailing dwell distribution of one stage: median, MAD and sample size."""

    median: float
    mad: float
    samples: int


#: (stage, dwell end time) -> the trailing baseline for that moment, or None.
#: Only asked once the watermark has passed the end time (the history is then
#: complete), so the answer never changes.
BaselineLookup = Callable[[str, int], Baseline | None]


class Transition(msgspec.Struct, frozen=True, gc=False):
    """A completed stage: it ended when a later stage happened.

    Kept in hot state for an order's life.  Like :class:`Baseline` and
    :class:`Flag` it holds only numbers and strings, so it cannot be part of
    a cycle and the cyclic collector need not track it (``gc=False``).
    """

    stage: str
    start_us: int
    end_us: int
    sla_us: int | None

    @property
    def dwell_us(self) -> int:
        return self.end_us - self.start_us

    @property
    def breached(self) -> bool:
        return self.sla_us is not None and self.dwell_us > self.sla_us


class Flag(msgspec.Struct, frozen=True, gc=False):
    """One anomaly on an order: what, when (event time) and why."""

    kind: str
    at_us: int
    reason: str


class OrderView(msgspec.Struct, frozen=True):
    """Everything known about one order, derived from its events."""

    order_id: str
    event_count: int
    created_us: int | None
    first_promise_us: int | None
    latest_promise_us: int | None
    #: First occurrence of each lifecycle stage (event type value -> time).
    stage_us: dict[str, int]
    #: Completed stage dwells: stage -> time until the next present stage.
    dwell_us: dict[str, int]
    #: Completed stages (a later stage happened), in lifecycle order.
    transitions: tuple[Transition, ...]
    #: Distinct event times, ascending.
    event_times: tuple[int, ...]
    current_stage: str | None
    last_event_us: int
    cancelled_us: int | None
    cancel_reason: str | None
    first_warehouse: str | None
    warehouse: str | None
    carrier: str | None
    #: Base-layer attributes from ORDER_CREATED.
    attributes: dict[str, Any]
    #: Environment layer: the last ``context`` seen per event type.
    context_by_stage: dict[str, Mapping[str, Any]]
    flags: tuple[Flag, ...]
    outcome: Outcome
    #: Smallest watermark threshold not yet crossed that would change the view.
    next_deadline_us: int | None
    #: (time, warehouse) routing decisions in event-time order.
    warehouse_timeline: tuple[tuple[int, str], ...]
    #: (time, carrier) shipments in event-time order.
    carrier_timeline: tuple[tuple[int, str], ...]

    @property
    def delivered_us(self) -> int | None:
        return self.stage_us.get(EventType.DELIVERED.value)

    def value_at(self, timeline: tuple[tuple[int, str], ...], at_us: int) -> str | None:
        """The value in effect at ``at_us``: the latest entry at or before it."""
        index = bisect_right(timeline, (at_us, "\U0010ffff"))
        return timeline[index - 1][1] if index else None


#: Tie-break rank of event types at equal times: canonical lifecycle order.
EVENT_RANK = {event_type: rank for rank, event_type in enumerate(EventType)}
#: Event type -> its wire tag.  ``EventType.X.value`` runs a Python-level
#: descriptor: ~20 of them per event were 4% of the streaming core.
WIRE = {event_type: event_type.value for event_type in EventType}
_DELIVERED = EventType.DELIVERED.value
_CANCELLED = EventType.CANCELLED.value
#: Event classes that carry more than a stage time (dispatched on in
#: derive_view), with the name of their role (the native twin's dispatch).
SPECIAL_ROLES: dict[type, str] = {
    OrderCreated: "created",
    PromiseUpdated: "promise",
    Cancelled: "cancelled",
    Routed: "routed",
    Rerouted: "rerouted",
    Shipped: "shipped",
    Exception_: "exception",
}
_SPECIAL = frozenset(SPECIAL_ROLES)
_BASE_ATTRIBUTES = (
    "customer_id",
    "customer_segment",
    "channel",
    "region",
    "seller_id",
    "order_value",
    "currency",
    "line_count",
    "promise_confidence",
)


#: The base-layer attribute values of an ORDER_CREATED event, in _BASE_ATTRIBUTES order.
_base_attributes = operator.attrgetter(*_BASE_ATTRIBUTES)


def sort_events(events: Sequence[OrderEvent]) -> list[OrderEvent]:
    """Deterministic event-time order: time, then lifecycle rank, then id."""
    return sorted(events, key=lambda e: (to_us(e.event_time), EVENT_RANK[e.event_type], e.event_id))


def _iso(at_us: int) -> str:
    return from_us(at_us).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Stages(msgspec.Struct, frozen=True):
    """The settings' stage order and SLAs by wire tag, computed once per settings."""

    settings: HealthSettings
    order: tuple[str, ...]
    sla_us: dict[str, int]
    #: Event class -> (wire tag, a lifecycle stage here?, moves the current stage?).
    roles: dict[type, tuple[str, bool, bool]]


_STAGES: dict[int, _Stages] = {}


def _stages(settings: HealthSettings) -> _Stages:
    cached = _STAGES.get(id(settings))
    if cached is None or cached.settings is not settings:
        order = tuple(WIRE[s] for s in settings.stage_order)
        sla = {WIRE[k]: v for k, v in settings.stage_sla_us.items()}
        names = frozenset(order)
        roles = {}
        for cls in ALL_EVENT_TYPES.values():
            name = WIRE[cls.event_type]
            roles[cls] = (name, name in names, name in names or name == _CANCELLED)
        cached = _STAGES[id(settings)] = _Stages(settings, order, sla, roles)
    return cached


def sla_breach_reason(stage: str, sla_us: int) -> str:
    """The text of a ``stage_sla_breach`` flag."""
    return f"{stage} dwell exceeded {sla_us / 3_600_000_000:g}h SLA"


def derive_view(
    order_id: str,
    events: Sequence[OrderEvent],
    settings: HealthSettings,
    watermark_us: int | None,
    baseline: BaselineLookup | None = None,
    *,
    times: Sequence[int] | None = None,
) -> OrderView:
    """Derive the order's view from its (deduplicated) events, sorted by :func:`sort_events`.

    ``baseline`` gives the trailing dwell distribution for outlier flags; without
    it no outlier flags are raised.  ``times`` are the events' times in us when
    the caller already has them (the stream keeps them in its sort keys): an
    order is derived again at every touch, and converting its datetimes each
    time was the larger part of the derivation's time arithmetic.
    """
    stage_us: dict[str, int] = {}
    context_by_stage: dict[str, Mapping[str, Any]] = {}
    created: OrderCreated | None = None
    latest_promise: tuple[int, int] | None = None
    cancelled: Cancelled | None = None
    warehouses: list[tuple[int, str]] = []
    carriers: list[tuple[int, str]] = []
    flags: list[Flag] = []
    stages = _stages(settings)
    roles = stages.roles
    current: str | None = None
    created_us: int | None = None
    cancelled_us: int | None = None
    if times is None:
        times = [to_us(event.event_time) for event in events]

    # The events are in sort_events order, so the current stage is the last
    # stage (or cancellation) event's.  Dispatch is on the exact event class:
    # the contract's classes are final, and a chain of isinstance tests per
    # event was a fifth of a derivation.
    for event, at in zip(events, times, strict=True):
        cls = type(event)
        name, is_stage, moves = roles[cls]
        if is_stage and name not in stage_us:
            stage_us[name] = at
        if event.context is not None:
            context_by_stage[name] = event.context  # read-only: shared, not copied
        if moves:
            current = name
        if cls in _SPECIAL:
            if cls is OrderCreated:
                if created is None:
                    created, created_us = cast(OrderCreated, event), at
            elif cls is PromiseUpdated:
                promised = cast(PromiseUpdated, event).promised_delivery_at
                latest_promise = (at, to_us(promised))
            elif cls is Cancelled:
                if cancelled is None:
                    cancelled, cancelled_us = cast(Cancelled, event), at
            elif cls is Routed:
                warehouses.append((at, cast(Routed, event).warehouse_id))
            elif cls is Rerouted:
                rerouted = cast(Rerouted, event)
                warehouses.append((at, rerouted.warehouse_id))
                reason = f"rerouted to {rerouted.warehouse_id}: {rerouted.reason}"
                flags.append(Flag(FlagKind.REROUTE, at, reason))
            elif cls is Shipped:
                carriers.append((at, cast(Shipped, event).carrier_id))
            else:
                code = cast(Exception_, event).exception_code
                flags.append(Flag(FlagKind.EXCEPTION, at, f"exception {code}"))

    first_promise = to_us(created.promised_delivery_at) if created else None
    present = [s for s in stages.order if s in stage_us]
    present_us = [stage_us[s] for s in present]
    # Nearly always the stages happened in lifecycle order: then none
    # contradicts another, and a stage ends at the next present one.  The
    # general search below (quadratic in the stages) was 15% of a derivation.
    in_order = present_us == sorted(present_us)

    # Impossible transitions: a stage that happened before a stage that should
    # precede it.  Flagged at the earliest contradicting time, which only moves
    # when an event inside the allowed lateness arrives (never in a final window).
    for index, stage in enumerate([] if in_order else present):
        at = stage_us[stage]
        contradictions = [(stage_us[e], e) for e in present[:index] if stage_us[e] > at]
        if contradictions:
            when, earlier = min(contradictions)
            flags.append(
                Flag(
                    FlagKind.IMPOSSIBLE_TRANSITION,
                    when,
                    f"{stage} at {_iso(at)} precedes {earlier} at {_iso(when)}",
                )
            )

    # Stage dwell against SLA, for completed and still-pending stages alike.  A
    # stage ends at the first later-stage event (or cancellation) at or after it.
    deadlines: list[int] = []
    dwell_us: dict[str, int] = {}
    transitions: list[Transition] = []
    for index, stage in enumerate(present):
        if stage == _DELIVERED:
            continue
        start = present_us[index]
        if in_order:
            completed_at = present_us[index + 1] if index + 1 < len(present_us) else None
        else:
            progress = [t for t in present_us[index + 1 :] if t >= start]
            completed_at = min(progress) if progress else None
        end = completed_at
        if (
            cancelled_us is not None
            and cancelled_us >= start
            and (end is None or cancelled_us < end)
        ):
            end = cancelled_us
        sla = stages.sla_us.get(stage)
        if completed_at is not None:
            dwell = completed_at - start
            dwell_us[stage] = dwell
            transitions.append(Transition(stage, start, completed_at, sla))
        if sla is None:
            continue
        deadline = start + sla
        if end is not None:
            breached = end > deadline
        elif watermark_us is not None and watermark_us > deadline:
            breached = True
        else:
            breached = False
            deadlines.append(deadline)
        if breached:
            flags.append(Flag(FlagKind.STAGE_SLA_BREACH, deadline, sla_breach_reason(stage, sla)))

    outcome = resolve(
        first_promise_us=first_promise,
        delivered_us=stage_us.get(_DELIVERED),
        cancelled_us=cancelled_us,
        watermark_us=watermark_us,
    )
    delivered_us = stage_us.get(_DELIVERED)
    if (
        first_promise is not None
        and delivered_us is None
        and (watermark_us is None or watermark_us <= first_promise)
        and (cancelled_us is None or cancelled_us >= first_promise)
    ):
        # The outcome turns late when the watermark passes the first promise.
        deadlines.append(first_promise)

    flags.sort(key=lambda f: (f.at_us, f.kind, f.reason))
    attributes: dict[str, Any] = {}
    if created is not None:
        attributes = dict(zip(_BASE_ATTRIBUTES, _base_attributes(created), strict=True))
    view = OrderView(
        order_id=order_id,
        event_count=len(events),
        created_us=created_us,
        first_promise_us=first_promise,
        latest_promise_us=latest_promise[1] if latest_promise else first_promise,
        stage_us=stage_us,
        dwell_us=dwell_us,
        transitions=tuple(transitions),
        event_times=tuple(dict.fromkeys(times)),  # ascending: the events are sorted
        current_stage=current,
        last_event_us=times[-1],
        cancelled_us=cancelled_us,
        cancel_reason=cancelled.reason if cancelled else None,
        first_warehouse=warehouses[0][1] if warehouses else None,
        warehouse=warehouses[-1][1] if warehouses else None,
        carrier=carriers[-1][1] if carriers else None,
        attributes=attributes,
        context_by_stage=context_by_stage,
        flags=tuple(flags),
        outcome=outcome,
        next_deadline_us=min(deadlines) if deadlines else None,
        warehouse_timeline=tuple(warehouses),
        carrier_timeline=tuple(carriers),
    )
    if baseline is None:
        return view
    return add_outlier_flags(view, settings, watermark_us, baseline)


#: (stage, dwell end time) -> the outlier verdict on that completed stage: its
#: flag, or None.  A stage the watermark has passed can no longer change (every
#: event accepted from then on is later than its end), nor can its baseline, so
#: the verdict is final: a caller that re-derives an order keeps it here
#: instead of judging the same dwell again at every touch.
OutlierVerdicts = MutableMapping[tuple[str, int], Flag | None]


def judge_dwell(
    transition: Transition, reference: Baseline | None, outliers: OutlierSettings
) -> Flag | None:
    """The ``outlier_dwell`` flag for a completed stage against its baseline, or None."""
    t = transition
    if (
        reference is None
        or reference.samples < outliers.min_samples
        or reference.mad <= 0
        or not t.dwell_us - reference.median > outliers.scaled_threshold * reference.mad
    ):
        return None
    z = (t.dwell_us - reference.median) / (1.4826 * reference.mad)
    return Flag(
        FlagKind.OUTLIER_DWELL,
        t.end_us,
        f"{t.stage} dwell {t.dwell_us / 3_600_000_000:.1f}h is {z:.1f} robust z above "
        f"the trailing median {reference.median / 3_600_000_000:.1f}h",
    )


def add_outlier_flags(
    view: OrderView,
    settings: HealthSettings,
    watermark_us: int | None,
    baseline: BaselineLookup,
    verdicts: OutlierVerdicts | None = None,
) -> OrderView:
    """Add ``outlier_dwell`` flags for completed stages the watermark has passed.

    Separate from :func:`derive_view` so that a caller can first register every
    changed dwell in the history, then ask for baselines.  ``verdicts``, when
    given, remembers each judged stage's verdict (see :data:`OutlierVerdicts`):
    the stream re-derives an order at every touch, and judging its finished
    stages again each time was a fifth of its per-partition work.
    """
    outliers = settings.outliers
    flags = list(view.flags)
    deadlines = [view.next_deadline_us] if view.next_deadline_us is not None else []
    for t in view.transitions:
        if watermark_us is None or watermark_us <= t.end_us:
            deadlines.append(t.end_us)  # decided once the watermark passes the end
            continue
        if verdicts is None:
            flag = judge_dwell(t, baseline(t.stage, t.end_us), outliers)
        else:
            key = (t.stage, t.end_us)
            if key in verdicts:
                flag = verdicts[key]
            else:
                flag = verdicts[key] = judge_dwell(t, baseline(t.stage, t.end_us), outliers)
        if flag is not None:
            flags.append(flag)
    if len(flags) == len(view.flags) and view.next_deadline_us == (
        min(deadlines) if deadlines else None
    ):
        return view
    flags.sort(key=lambda f: (f.at_us, f.kind, f.reason))
    return msgspec.structs.replace(
        view, flags=tuple(flags), next_deadline_us=min(deadlines) if deadlines else None
    )
