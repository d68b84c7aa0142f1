"""The order lifecycle event contract and its decoder (SPEC §3)."""

from schemas.decode import EventDecoder, Rejection, RejectReason
from schemas.events import SCHEMA_VERSION, Event, EventType, OrderCreated, OrderEvent

__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "EventDecoder",
    "EventType",
    "OrderCreated",
    "OrderEvent",
    "RejectReason",
    "Rejection",
]
