"""The order view (behaviour layer) and its anomaly flags."""

from __future__ import annotations

import itertools
from datetime import timedelta

from dataflows.contributions import order_contribution
from dataflows.lifecycle import FlagKind, derive_view, sort_events
from dataflows.metrics import MEASURES
from dataflows.outcome import OutcomeStatus
from dataflows.settings import HealthSettings
from dataflows.timeutil import to_us
from tests.factories import at, event

SETTINGS = HealthSettings.load()


def view(events, watermark=None):  # type: ignore[no-untyped-def]
    return derive_view("O1", sort_events(events), SETTINGS, watermark)


def happy_path():  # type: ignore[no-untyped-def]
    return [
        event("ORDER_CREATED", when=at(0)),
        event("FINANCE_APPROVED", when=at(0, 10)),
        event("ROUTED", when=at(0, 20), warehouse_id="W1"),
        event("WAREHOUSE_ACCEPTED", when=at(0, 50)),
        event("PICKED", when=at(2)),
        event("PACKED", when=at(3)),
        event("SHIPPED", when=at(4), carrier_id="UPS"),
        event("DELIVERED", when=at(20)),
    ]


def test_happy_path_is_on_time_without_flags() -> None:
    v = view(happy_path())
    assert v.outcome.status is OutcomeStatus.ON_TIME
    assert v.outcome.resolved_at_us == to_us(at(20))
    assert v.flags == ()
    assert v.current_stage == "DELIVERED"
    assert v.dwell_us["ROUTED"] == 30 * 60 * 1_000_000
    assert (v.warehouse, v.carrier) == ("W1", "UPS")
    assert v.next_deadline_us is None


def test_view_does_not_depend_on_arrival_order() -> None:
    events = happy_path()
    reference = view(events)
    for permutation in itertools.islice(itertools.permutations(events), 0, 5000, 97):
        assert view(list(permutation)) == reference


def test_exception_and_reroute_are_flagged_with_reasons() -> None:
    events = [
        *happy_path(),
        event("EXCEPTION", when=at(1), exception_code="FACILITY_DOWN"),
        event("REROUTED", when=at(1, 30), warehouse_id="W2", reason="FACILITY_DOWN"),
    ]
    v = view(events)
    kinds = [f.kind for f in v.flags]
    assert FlagKind.EXCEPTION in kinds and FlagKind.REROUTE in kinds
    assert any("FACILITY_DOWN" in f.reason for f in v.flags)
    assert v.first_warehouse == "W1" and v.warehouse == "W2"
    # The warehouse in effect depends on the moment.
    assert v.value_at(v.warehouse_timeline, to_us(at(1))) == "W1"
    assert v.value_at(v.warehouse_timeline, to_us(at(2))) == "W2"


def test_delivered_before_shipped_is_an_impossible_transition() -> None:
    events = [
        event("ORDER_CREATED", when=at(0)),
        event("DELIVERED", when=at(5)),
        event("SHIPPED", when=at(6)),
    ]
    flags = [f for f in view(events).flags if f.kind == FlagKind.IMPOSSIBLE_TRANSITION]
    assert len(flags) == 1
    assert flags[0].at_us == to_us(at(6))
    assert "DELIVERED" in flags[0].reason and "SHIPPED" in flags[0].reason


def test_completed_stage_over_sla_is_flagged_at_the_deadline() -> None:
    events = [
        event("ORDER_CREATED", when=at(0)),
        event("ROUTED", when=at(1)),
        event("WAREHOUSE_ACCEPTED", when=at(7)),
    ]
    flags = [f for f in view(events).flags if f.kind == FlagKind.STAGE_SLA_BREACH]
    assert [f.at_us for f in flags] == [to_us(at(1 + 4))]  # ROUTED SLA is 4h


def test_stuck_order_is_flagged_once_the_watermark_passes_the_sla() -> None:
    events = [event("ORDER_CREATED", when=at(0)), event("ROUTED", when=at(1))]
    deadline = to_us(at(5))
    before = view(events, watermark=deadline)
    assert not before.flags and before.next_deadline_us == deadline
    after = view(events, watermark=deadline + 1)
    assert [f.kind for f in after.flags] == [FlagKind.STAGE_SLA_BREACH]
    # Next threshold: the first promise (24h after creation).
    assert after.next_deadline_us == to_us(at(24))


def test_undelivered_order_turns_late_when_watermark_passes_first_promise() -> None:
    events = [
        event("ORDER_CREATED", when=at(0), promised_delivery_at=at(24)),
        event("PROMISE_UPDATED", when=at(10), promised_delivery_at=at(48)),
        event("SHIPPED", when=at(0, 30)),
    ]
    assert view(events, watermark=to_us(at(24))).outcome.status is OutcomeStatus.OPEN
    late = view(events, watermark=to_us(at(24)) + 1)
    assert late.outcome.status is OutcomeStatus.LATE
    assert late.outcome.resolved_at_us == to_us(at(24))
    assert late.latest_promise_us == to_us(at(48))


def test_contribution_counts_active_and_anomalous_once_per_window_row() -> None:
    events = [
        event("ORDER_CREATED", when=at(0)),
        event("EXCEPTION", when=at(0, 1)),
        event("EXCEPTION", when=at(0, 2), event_id="second"),
        event("DELIVERED", when=at(0, 30)),
    ]
    v = view(events)
    contribution = order_contribution(v, SETTINGS)
    hour = contribution[("1h", to_us(at(0)), "all", "all")]
    measures = dict(zip(MEASURES, hour.vector, strict=True))
    assert measures["orders_active"] == 1
    assert measures["orders_anomalous"] == 1
    assert measures["orders_created"] == 1
    assert measures["orders_resolved"] == 1 and measures["orders_on_time"] == 1
    assert measures["deviation_us_sum"] == to_us(at(0, 30)) - to_us(at(24))
    assert ("1h", to_us(at(0)), "warehouse_id", "W1") not in contribution  # never routed
    assert timedelta(microseconds=-measures["deviation_us_sum"]) == timedelta(hours=23, minutes=30)
