"""The order lifecycle event contract (SPEC §3), defined once.

Every producer, the decoder, the bronze table schema and the published JSON
Schema (``order_event.schema.json``) derive from the Structs below.  msgspec
validates types, required fields and the ``event_type`` tag in the same pass
that parses the JSON, which is why the contract is expressed as Structs and not
as a separate validator.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

import msgspec

__all__ = [
    "ALL_EVENT_TYPES",
    "EARLIEST_TIME",
    "LATEST_TIME",
    "SCHEMA_VERSION",
    "Cancelled",
    "Delivered",
    "EventType",
    "Exception_",
    "FinanceApproved",
    "OrderCreated",
    "OrderEvent",
    "Packed",
    "Picked",
    "PromiseUpdated",
    "Rerouted",
    "Routed",
    "Shipped",
    "WarehouseAccepted",
]

#: The newest contract version this code understands.  A message with a newer
#: version is dead-lettered (``schema_version_unsupported``), never guessed at.
SCHEMA_VERSION = 1

#: Every timestamp of an event must lie in [EARLIEST_TIME, LATEST_TIME): year 1
#: or 9999 is a producer bug, and a promise in year 9999 would never be late.
#: Checked by the decoder (JSON Schema cannot bound date-times).
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
#: Zone-aware timestamps only: a naive time cannot be placed on the timeline.
ZonedTime = Annotated[datetime, msgspec.Meta(tz=True)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
ContextValue = str | int | float | bool | None


class EventType(StrEnum):
    """Lifecycle event types; the value is the wire tag in ``event_type``."""

    ORDER_CREATED = "ORDER_CREATED"
    FINANCE_APPROVED = "FINANCE_APPROVED"
    ROUTED = "ROUTED"
    REROUTED = "REROUTED"
    WAREHOUSE_ACCEPTED = "WAREHOUSE_ACCEPTED"
    PICKED = "PICKED"
    PACKED = "PACKED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    EXCEPTION = "EXCEPTION"
    PROMISE_UPDATED = "PROMISE_UPDATED"


class OrderEvent(msgspec.Struct, kw_only=True, frozen=True, tag_field="event_type", gc=False):
    """Fields common to every event.

    ``gc=False``: the stream keeps every open order's events for hours or
    days, and the cyclic collector scanned them all at each collection.  An
    event cannot be part of a reference cycle (its maps are decoded JSON), so
    reference counting frees it alone.

    ``event_id`` is the dedupe key because Kafka delivers at least once;
    ``order_id`` is also the Kafka message key, so that every event of one order
    lands in the same partition and is processed in offset order.
    """

    event_type: ClassVar[EventType]

    event_id: NonEmptyStr
    order_id: NonEmptyStr
    event_time: ZonedTime
    source_system: NonEmptyStr
    schema_version: Annotated[int, msgspec.Meta(ge=1)]
    attributes: dict[str, Any] | None = None
    #: Environment metrics at event time (latency, queue depth...): the
    #: environment layer of the digital twin.
    context: dict[str, ContextValue] | None = None
    #: HMAC over the canonical event, per source system.
    signature: str | None = None


class OrderCreated(OrderEvent, frozen=True, tag=EventType.ORDER_CREATED.value):
    """An order was placed.  Fulfilment is judged against this first promise."""

    event_type: ClassVar[EventType] = EventType.ORDER_CREATED
    promised_delivery_at: ZonedTime
    customer_id: str | None = None
    customer_segment: Literal["B2B", "B2C"] | None = None
    channel: str | None = None
    region: str | None = None
    seller_id: str | None = None
    order_value: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)] | None = None
    line_count: Annotated[int, msgspec.Meta(ge=1)] | None = None
    promise_confidence: Fraction | None = None


class FinanceApproved(OrderEvent, frozen=True, tag=EventType.FINANCE_APPROVED.value):
    """Finance or payment review passed."""

    event_type: ClassVar[EventType] = EventType.FINANCE_APPROVED


class Routed(OrderEvent, frozen=True, tag=EventType.ROUTED.value):
    """The first routing decision."""

    event_type: ClassVar[EventType] = EventType.ROUTED
    warehouse_id: NonEmptyStr


class Rerouted(OrderEvent, frozen=True, tag=EventType.REROUTED.value):
    """The order was sent to another warehouse."""

    event_type: ClassVar[EventType] = EventType.REROUTED
    warehouse_id: NonEmptyStr
    reason: NonEmptyStr


class WarehouseAccepted(OrderEvent, frozen=True, tag=EventType.WAREHOUSE_ACCEPTED.value):
    """The warehouse system has the order; this ends the "gray zone"."""

    event_type: ClassVar[EventType] = EventType.WAREHOUSE_ACCEPTED


class Picked(OrderEvent, frozen=True, tag=EventType.PICKED.value):
    event_type: ClassVar[EventType] = EventType.PICKED


class Packed(OrderEvent, frozen=True, tag=EventType.PACKED.value):
    event_type: ClassVar[EventType] = EventType.PACKED


class Shipped(OrderEvent, frozen=True, tag=EventType.SHIPPED.value):
    event_type: ClassVar[EventType] = EventType.SHIPPED
    carrier_id: NonEmptyStr


class Delivered(OrderEvent, frozen=True, tag=EventType.DELIVERED.value):
    event_type: ClassVar[EventType] = EventType.DELIVERED


class Cancelled(OrderEvent, frozen=True, tag=EventType.CANCELLED.value):
    event_type: ClassVar[EventType] = EventType.CANCELLED
    reason: NonEmptyStr


class Exception_(OrderEvent, frozen=True, tag=EventType.EXCEPTION.value):
    """An operational exception (STOCKOUT, FACILITY_DOWN, CARRIER_DELAY...)."""

    event_type: ClassVar[EventType] = EventType.EXCEPTION
    exception_code: NonEmptyStr


class PromiseUpdated(OrderEvent, frozen=True, tag=EventType.PROMISE_UPDATED.value):
    """A new promise.  Tracked as the latest promise; outcomes use the first."""

    event_type: ClassVar[EventType] = EventType.PROMISE_UPDATED
    promised_delivery_at: ZonedTime


Event = (
    OrderCreated
    | FinanceApproved
    | Routed
    | Rerouted
    | WarehouseAccepted
    | Picked
    | Packed
    | Shipped
    | Delivered
    | Cancelled
    | Exception_
    | PromiseUpdated
)

#: Struct class per wire tag, in the canonical lifecycle order.
ALL_EVENT_TYPES: dict[EventType, type[OrderEvent]] = {
    cls.event_type: cls
    for cls in (
        OrderCreated,
        FinanceApproved,
        Routed,
        Rerouted,
        WarehouseAccepted,
        Picked,
        Packed,
        Shipped,
        Delivered,
        Cancelled,
        Exception_,
        PromiseUpdated,
    )
}
