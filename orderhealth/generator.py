"""Synthetic order lifecycles with named operational scenarios.

Deterministic for a given seed: the same arguments always give the same
messages in the same order.  Lifecycles have realistic stage timing, optional
stages (real sources skip some), cancellations, exceptions, reroutes and
promise updates.  Messages are emitted in *arrival* order: most events arrive
seconds after they happen, some minutes late (out of order, inside the
default allowed lateness) and some twice (at-least-once delivery).

Scenarios:

* ``baseline`` -- normal operations.
* ``warehouse_outage`` -- one warehouse stops accepting for hours while orders
  keep being routed to it; its backlog is accepted late or rerouted.
* ``finance_bottleneck`` -- finance review slows to hours for a period.
* ``carrier_delay`` -- one carrier's transit times stretch by days.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from schemas.events import (
    SCHEMA_VERSION,
    Cancelled,
    Delivered,
    Exception_,
    FinanceApproved,
    OrderCreated,
    OrderEvent,
    Packed,
    Picked,
    PromiseUpdated,
    Rerouted,
    Routed,
    Shipped,
    WarehouseAccepted,
)
from schemas.signing import KeyRing

__all__ = ["SCENARIOS", "GeneratorConfig", "Scenario", "generate_messages"]

WAREHOUSES = ("WH-BER", "WH-LYS", "WH-MAD", "WH-RTM", "WH-WAW")
REGIONS = ("DE", "FR", "ES", "NL", "PL")
REGION_WAREHOUSE = dict(zip(REGIONS, WAREHOUSES, strict=True))
CHANNELS = ("web", "app", "marketplace", "edi")
CARRIERS = ("DHL", "UPS", "DPD", "GLS")
SELLERS = tuple(f"S{n:03d}" for n in range(1, 13))
DEFAULT_START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


class Scenario(msgspec.Struct, frozen=True):
    """An operational incident layered on the baseline."""

    name: str
    description: str
    #: Incident window, in hours after the stream start.
    starts_after_h: float = 0.0
    lasts_h: float = 0.0
    warehouse: str | None = None
    finance_delay_h: float = 0.0
    carrier: str | None = None
    carrier_extra_h: float = 0.0


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("baseline", "normal operations"),
        Scenario(
            "warehouse_outage",
            "WH-BER stops accepting orders for 16 hours while routing keeps sending them there",
            starts_after_h=8.0,
            lasts_h=16.0,
            warehouse="WH-BER",
        ),
        Scenario(
            "finance_bottleneck",
            "finance review takes hours instead of minutes for 10 hours",
            starts_after_h=4.0,
            lasts_h=10.0,
            finance_delay_h=9.0,
        ),
        Scenario(
            "carrier_delay",
            "carrier DHL adds two days of transit for a day of shipments",
            starts_after_h=6.0,
            lasts_h=24.0,
            carrier="DHL",
            carrier_extra_h=48.0,
        ),
    )
}


class GeneratorConfig(msgspec.Struct, frozen=True):
    """What to generate."""

    events: int = 100_000
    seed: int = 7
    scenario: str = "baseline"
    start: datetime = DEFAULT_START
    #: New orders per simulated minute.
    orders_per_minute: float = 2.0
    duplicate_fraction: float = 0.01
    out_of_order_fraction: float = 0.05
    #: Events arriving after the allowed lateness (land in bronze as late).
    very_late_fraction: float = 0.0
    #: Malformed or invalid messages mixed in (they go to the dead letter).
    bad_fraction: float = 0.0
    #: Sign the events of these source systems (see :mod:`schemas.signing`).
    keyring: KeyRing | None = None


class _Clock:
    """Simulated time helpers with millisecond precision."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def exp_h(self, mean_h: float) -> timedelta:
        return timedelta(hours=self.rng.expovariate(1.0 / mean_h))

    def lognormal_h(self, median_h: float, sigma: float) -> timedelta:
        return timedelta(hours=median_h * math.exp(self.rng.gauss(0.0, sigma)))


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class _OrderBuilder:
    """Builds one order's lifecycle under a scenario."""

    def __init__(self, rng: random.Random, scenario: Scenario, start: datetime) -> None:
        self.rng = rng
        self.clock = _Clock(rng)
        self.scenario = scenario
        self.incident_start = start + timedelta(hours=scenario.starts_after_h)
        self.incident_end = self.incident_start + timedelta(hours=scenario.lasts_h)

    def _in_incident(self, moment: datetime) -> bool:
        return self.incident_start <= moment < self.incident_end

    def build(self, index: int, created: datetime) -> list[OrderEvent]:
        rng, clock, sc = self.rng, self.clock, self.scenario
        order_id = f"ORD-{index:08d}"
        seq = iter(range(100))
        region = rng.choice(REGIONS)
        segment = "B2B" if rng.random() < 0.3 else "B2C"
        promise_h = rng.choice((30.0, 36.0, 48.0)) if segment == "B2C" else rng.choice((48.0, 72.0))
        promised = _ms(created + timedelta(hours=promise_h))
        events: list[OrderEvent] = []

        def common(moment: datetime, source: str) -> dict[str, Any]:
            return {
                "event_id": f"{order_id}-{next(seq):02d}",
                "order_id": order_id,
                "event_time": _ms(moment),
                "source_system": source,
                "schema_version": SCHEMA_VERSION,
                "context": {
                    "system_latency_ms": round(rng.lognormvariate(4.0, 0.5), 1),
                    "queue_depth": rng.randint(0, 40),
                },
            }

        events.append(
            OrderCreated(
                **common(created, "OMS"),
                promised_delivery_at=promised,
                customer_id=f"C{rng.randint(1, 4000):05d}",
                customer_segment=segment,  # type: ignore[arg-type]
                channel=rng.choice(CHANNELS),
                region=region,
                seller_id=rng.choice(SELLERS),
                order_value=round(rng.lognormvariate(4.5, 0.8), 2),
                currency="EUR",
                line_count=rng.randint(1, 12),
                promise_confidence=round(rng.uniform(0.6, 0.99), 2),
            )
        )
        cancel_at_stage = rng.randint(1, 6) if rng.random() < 0.03 else None
        now = created

        def cancelled(stage: int) -> bool:
            if cancel_at_stage == stage:
                events.append(
                    Cancelled(
                        **common(now + clock.exp_h(0.5), "OMS"),
                        reason=rng.choice(("customer_request", "payment_failed", "fraud_check")),
                    )
                )
                return True
            return False

        # Finance review: the first gray-zone delay.
        review_h = 0.25 if segment == "B2C" else 0.8
        if sc.finance_delay_h and self._in_incident(now):
            review_h += sc.finance_delay_h * rng.uniform(0.5, 1.0)
        now += clock.exp_h(review_h)
        if rng.random() < 0.9:
            events.append(FinanceApproved(**common(now, "ERP")))
        if cancelled(1):
            return events

        # Routing: mostly to the region's warehouse.
        now += clock.exp_h(0.15)
        warehouse = REGION_WAREHOUSE[region] if rng.random() < 0.8 else rng.choice(WAREHOUSES)
        events.append(Routed(**common(now, "OMS"), warehouse_id=warehouse))
        if cancelled(2):
            return events

        # Warehouse acceptance: the end of the gray zone.
        accept_delay = clock.exp_h(0.4)
        if sc.warehouse == warehouse and self._in_incident(now + accept_delay):
            # The warehouse is down: the order waits for recovery, or ops reroute it.
            events.append(
                Exception_(
                    **common(now + timedelta(minutes=20), "WMS"), exception_code="FACILITY_DOWN"
                )
            )
            if rng.random() < 0.35:
                now += timedelta(hours=rng.uniform(2.0, 5.0))
                warehouse = rng.choice([w for w in WAREHOUSES if w != warehouse])
                events.append(
                    Rerouted(**common(now, "OMS"), warehouse_id=warehouse, reason="FACILITY_DOWN")
                )
            else:
                now = self.incident_end
            accept_delay = clock.exp_h(4.0)  # the backlog drains slowly
        now += accept_delay
        if rng.random() < 0.92:
            events.append(WarehouseAccepted(**common(now, "WMS")))
        if cancelled(3):
            return events

        # Pick and pack.
        now += clock.exp_h(1.5)
        if rng.random() < 0.03:
            events.append(Exception_(**common(now, "WMS"), exception_code="STOCKOUT"))
            now += clock.exp_h(10.0)
        if rng.random() < 0.9:
            events.append(Picked(**common(now, "WMS")))
        if cancelled(4):
            return events
        now += clock.exp_h(0.8)
        if rng.random() < 0.85:
            events.append(Packed(**common(now, "WMS")))
        if cancelled(5):
            return events

        # Shipping and transit.
        now += clock.exp_h(2.0)
        carrier = rng.choice(CARRIERS)
        events.append(Shipped(**common(now, "TMS"), carrier_id=carrier))
        transit = clock.lognormal_h(18.0 if segment == "B2C" else 26.0, 0.4)
        if sc.carrier == carrier and self._in_incident(now):
            transit += timedelta(hours=sc.carrier_extra_h * rng.uniform(0.6, 1.2))
            events.append(
                Exception_(
                    **common(now + timedelta(hours=6), "TMS"), exception_code="CARRIER_DELAY"
                )
            )
        if rng.random() < 0.05:
            later = _ms(promised + timedelta(hours=rng.choice((12.0, 24.0))))
            events.append(
                PromiseUpdated(
                    **common(now + timedelta(hours=1), "OMS"), promised_delivery_at=later
                )
            )
        if rng.random() < 0.01:
            events.append(
                Exception_(**common(now + transit / 2, "TMS"), exception_code="ADDRESS_ISSUE")
            )
            transit += timedelta(hours=24)
        now += transit
        events.append(Delivered(**common(now, "TMS")))
        return events


_BAD = b'"event_id": "e", "order_id": "ORD-BAD", "source_system": "TMS"'
#: (key, value) pairs a careless or broken producer sends; each must be
#: dead-lettered with its own reason.
_BAD_MESSAGES: tuple[tuple[bytes | None, bytes], ...] = (
    (b"ORD-BAD", b'{"event_type": "ORDER_CREATED", "order_id": '),
    (b"ORD-BAD", b'{"event_type": "TELEPORTED", ' + _BAD + b', "schema_version": 1}'),
    (b"ORD-BAD", b"\xff\xfe not utf-8"),
    (b"ORD-BAD", b'{"event_type": "DELIVERED", "order_id": "ORD-BAD", "schema_version": 1}'),
    (
        b"ORD-BAD",
        b'{"event_type": "DELIVERED", ' + _BAD + b', "event_time": "2026-11-02T10:00:00", '
        b'"schema_version": 1}',
    ),
    (
        b"ORD-BAD",
        b'{"event_type": "DELIVERED", ' + _BAD + b', "event_time": "2026-11-02T10:00:00Z", '
        b'"schema_version": 99}',
    ),
    (
        None,
        b'{"event_type": "DELIVERED", ' + _BAD + b', "event_time": "2026-11-02T10:00:00Z", '
        b'"schema_version": 1}',
    ),
    (  # valid JSON, but the promise precedes the order: a record rule drops it
        b"ORD-BAD",
        b'{"event_type": "ORDER_CREATED", ' + _BAD + b', "event_time": "2026-11-02T10:00:00Z", '
        b'"promised_delivery_at": "2026-11-01T10:00:00Z", "schema_version": 1}',
    ),
)


def generate_messages(config: GeneratorConfig) -> Iterator[tuple[bytes | None, bytes]]:
    """(Kafka key, JSON value) pairs in arrival order; exactly ``config.events`` of them."""
    if config.scenario not in SCENARIOS:
        raise ValueError(
            f"unknown scenario {config.scenario!r}; choose from {', '.join(SCENARIOS)}"
        )
    if config.events < 1:
        raise ValueError("events must be at least 1")
    rng = random.Random(config.seed)
    builder = _OrderBuilder(rng, SCENARIOS[config.scenario], config.start)
    encoder = msgspec.json.Encoder()
    # (arrival time, tie-breaker, key, value); built generously, then cut at N.
    arrivals: list[tuple[datetime, int, bytes | None, bytes]] = []
    order_index = 0
    created = config.start
    tie = 0
    target = config.events
    while True:
        while len(arrivals) < target * 1.6:
            created += timedelta(minutes=rng.expovariate(config.orders_per_minute))
            for event in builder.build(order_index, _ms(created)):
                value = encoder.encode(event)
                if config.keyring is not None and config.keyring.requires(event.source_system):
                    value = encoder.encode(config.keyring.sign(msgspec.json.decode(value)))
                key = event.order_id.encode()
                arrivals.append((_arrival(rng, config, event.event_time), tie, key, value))
                tie += 1
                if rng.random() < config.duplicate_fraction:
                    again = event.event_time + timedelta(seconds=rng.uniform(5, 120))
                    arrivals.append((again, tie, key, value))
                    tie += 1
            if rng.random() < config.bad_fraction * 8:
                bad_key, bad = _BAD_MESSAGES[rng.randrange(len(_BAD_MESSAGES))]
                arrivals.append((created, tie, bad_key, bad))
                tie += 1
            order_index += 1
        arrivals.sort()
        # The N-th arrival so far.  Orders created after it arrive after it,
        # so they cannot change the first N: then the first N are final.
        # (Comparing with the target-th arrival instead never ended when
        # orders live long against the stream's span -- a live-density
        # stream -- as that arrival moved on with every round.)
        cutoff = arrivals[config.events - 1][0] if len(arrivals) >= config.events else None
        if cutoff is not None and created > cutoff:
            break
        target = int(target * 1.3)
    for _arrived, _tie, message_key, message in arrivals[: config.events]:
        yield message_key, message


def _arrival(rng: random.Random, config: GeneratorConfig, happened: datetime) -> datetime:
    roll = rng.random()
    if roll < config.very_late_fraction:
        return happened + timedelta(hours=rng.uniform(2.0, 6.0))
    if roll < config.very_late_fraction + config.out_of_order_fraction:
        return happened + timedelta(minutes=rng.uniform(1.0, 10.0))
    return happened + timedelta(seconds=rng.uniform(0.05, 3.0))
