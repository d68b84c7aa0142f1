"""Hypothesis strategies: random order lifecycles and out-of-order Kafka partitions."""

from __future__ import annotations

import random

from hypothesis import strategies as st

from dataflows.partition_processor import SourcedEvent
from dataflows.settings import HealthSettings
from dataflows.timeutil import to_us
from schemas.events import OrderEvent
from tests.factories import at, event

STAGES = [
    "FINANCE_APPROVED",
    "ROUTED",
    "WAREHOUSE_ACCEPTED",
    "PICKED",
    "PACKED",
    "SHIPPED",
    "DELIVERED",
]


@st.composite
def lifecycle(draw: st.DrawFn, order_id: str) -> list[OrderEvent]:
    """One order: skipped stages, cancellations, reroutes, promise updates, oddities."""
    start = draw(st.floats(0, 48))
    promise_h = draw(st.sampled_from([6.0, 12.0, 30.0]))
    events = [
        event(
            "ORDER_CREATED",
            order_id,
            at(start),
            promised_delivery_at=at(start + promise_h),
            region=draw(st.sampled_from(["DE", "FR"])),
            channel="web",
            customer_segment=draw(st.sampled_from(["B2B", "B2C"])),
        )
    ]
    now = start
    for stage in STAGES:
        if not draw(st.booleans()) and stage != "DELIVERED":
            continue
        # Mostly short dwells with a heavy tail, so outliers exist.
        now += draw(st.one_of(st.floats(0.01, 2.0), st.floats(0.01, 2.0), st.floats(2.0, 30.0)))
        extra = {}
        if stage == "ROUTED":
            extra["warehouse_id"] = draw(st.sampled_from(["W1", "W2"]))
        if stage == "SHIPPED":
            extra["carrier_id"] = draw(st.sampled_from(["DHL", "UPS"]))
        if stage == "DELIVERED" and not draw(st.booleans()):
            break  # still open
        events.append(event(stage, order_id, at(now), **extra))
    for kind in ("EXCEPTION", "REROUTED", "CANCELLED", "PROMISE_UPDATED"):
        if draw(st.integers(0, 4)) == 0:
            events.append(event(kind, order_id, at(start + draw(st.floats(0.0, 40.0)))))
    if draw(st.integers(0, 6)) == 0:  # an impossible transition
        events.append(event("PICKED", order_id, at(start - 0.5), event_id=f"{order_id}-weird"))
    return events


def arrivals(
    orders: list[list[OrderEvent]],
    settings: HealthSettings,
    rng: random.Random,
    partitions: int = 2,
) -> list[list[SourcedEvent]]:
    """Kafka partitions (order i in partition i % n), reordered inside the
    allowed lateness, with some events delivered twice."""
    lateness_us = settings.allowed_lateness_us * 0.95
    logs: list[list[tuple[float, OrderEvent]]] = [[] for _ in range(partitions)]
    for i, events in enumerate(orders):
        for e in events:
            logs[i % partitions].append((to_us(e.event_time) + rng.uniform(0, lateness_us), e))
            if rng.random() < 0.15:
                logs[i % partitions].append((to_us(e.event_time) + rng.uniform(0, lateness_us), e))
    out = []
    for p, log in enumerate(logs):
        log.sort(key=lambda pair: pair[0])
        out.append([SourcedEvent(e, "t", p, offset) for offset, (_, e) in enumerate(log)])
    return out


@st.composite
def streams(
    draw: st.DrawFn, settings: HealthSettings, max_orders: int = 10
) -> tuple[list[list[SourcedEvent]], int]:
    n_orders = draw(st.integers(1, max_orders))
    orders = [draw(lifecycle(f"O{i}")) for i in range(n_orders)]
    rng = random.Random(draw(st.integers(0, 2**32)))
    return arrivals(orders, settings, rng), rng.randrange(1 << 30)
