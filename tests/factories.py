"""Small builders for events in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import ALL_EVENT_TYPES, SCHEMA_VERSION, EventType, OrderEvent

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def at(hours: float = 0.0, minutes: float = 0.0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes)


def event(
    kind: EventType | str,
    order_id: str = "O1",
    when: datetime | None = None,
    event_id: str | None = None,
    **fields: Any,
) -> OrderEvent:
    kind = EventType(kind)
    when = when or T0
    defaults: dict[str, Any] = {
        EventType.ORDER_CREATED: {"promised_delivery_at": when + timedelta(hours=24)},
        EventType.ROUTED: {"warehouse_id": "W1"},
        EventType.REROUTED: {"warehouse_id": "W2", "reason": "FACILITY_DOWN"},
        EventType.SHIPPED: {"carrier_id": "DHL"},
        EventType.CANCELLED: {"reason": "customer_request"},
        EventType.EXCEPTION: {"exception_code": "STOCKOUT"},
        EventType.PROMISE_UPDATED: {"promised_delivery_at": when + timedelta(hours=48)},
    }.get(kind, {})
    return ALL_EVENT_TYPES[kind](
        event_id=event_id or f"{order_id}-{kind.value}-{when.isoformat()}",
        order_id=order_id,
        event_time=when,
        source_system="TEST",
        schema_version=SCHEMA_VERSION,
        **{**defaults, **fields},
    )
