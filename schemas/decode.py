"""Decode one Kafka message into a typed event or a precise rejection.

Decoding never raises on data: a message is either an :data:`Event` or a
:class:`Rejection` that names the reason code, the field, what was expected and
what was found.  Rejections become dead-letter rows; nothing is dropped
silently.  The happy path is a single msgspec pass; the slower diagnosis (a
second, schemaless parse to quote the offending value) only runs on failure.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from schemas.events import EARLIEST_TIME, LATEST_TIME, SCHEMA_VERSION, Event
from schemas.signing import KeyRing

__all__ = ["MAX_MESSAGE_BYTES", "EventDecoder", "RejectReason", "Rejection"]

#: Messages larger than this are rejected before parsing (a 5 MB blob is not an
#: order event, and parsing it would stall the partition).
MAX_MESSAGE_BYTES = 1_000_000


class RejectReason(StrEnum):
    """Machine-readable dead-letter reason codes."""

    EMPTY_MESSAGE = "empty_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_UTF8 = "invalid_utf8"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    SCHEMA_VERSION_UNSUPPORTED = "schema_version_unsupported"
    KEY_MISMATCH = "key_mismatch"
    MISSING_KEY = "missing_key"
    NESTING_TOO_DEEP = "nesting_too_deep"
    SIGNATURE_INVALID = "signature_invalid"


class Rejection(msgspec.Struct, frozen=True):
    """Why a message is not a valid event."""

    reason: RejectReason
    message: str
    field: str | None = None
    expected: str | None = None
    got: str | None = None


_AT_PATH = re.compile(r" - at `(?P<path>[^`]+)`$")
_MISSING = re.compile(
    r"Object missing required field `(?P<field>[^`]+)`(?: - at `(?P<path>[^`]+)`)?"
)
_INVALID_TAG = re.compile(r"Invalid value '(?P<got>.*)' - at `\$\.event_type`$")
_EXPECTED = re.compile(r"^Expected (?P<expected>.+?)(?:, got `(?P<got>[^`]+)`)?(?: - at `[^`]+`)?$")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _lookup(doc: Any, path: str) -> Any:
    """Value at a msgspec error path such as ``$.context.queue[2]``, or None."""
    node = doc
    for name, index in _PATH_PART.findall(path.removeprefix("$")):
        if name and isinstance(node, dict):
            node = node.get(name)
        elif index and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return None
    return node


def _too_deep() -> Rejection:
    return Rejection(
        RejectReason.NESTING_TOO_DEEP,
        "message nests JSON arrays/objects too deeply to parse",
        expected="an order event (a flat object with small maps)",
    )


def _range_checked_fields(cls: type[Event]) -> tuple[str, ...]:
    """The fields of an event type that can hold a time or a float (in field order).

    Only those can be out of range; looking at every field of every event
    was 4% of the flow.
    """
    hints = typing.get_type_hints(cls)

    def may_hold(hint: Any) -> bool:
        members = typing.get_args(hint) or (hint,)
        return any(m in (datetime, float, Any) for m in members)

    return tuple(name for name in cls.__struct_fields__ if may_hold(hints[name]))


#: Per event type, its range-checked fields: read per event, so worked out once.
_RANGE_CHECKED: dict[type[Event], tuple[str, ...]] = {
    cls: _range_checked_fields(cls) for cls in typing.get_args(Event)
}


def _out_of_range(event: Event) -> Rejection | None:
    """The first non-finite number or implausible timestamp of an event, if any."""
    for name in _RANGE_CHECKED[type(event)]:
        value = getattr(event, name)
        if isinstance(value, datetime):
            # A time of a year well inside the range is inside it whatever its
            # offset (under a day): no zone-aware comparison for nearly all.
            if _SAFE_YEARS[0] < value.year < _SAFE_YEARS[1]:
                continue
            if not EARLIEST_TIME <= value < LATEST_TIME:
                return Rejection(
                    RejectReason.INVALID_FIELD,
                    f"field {name!r}: {value.isoformat()} is outside the supported range "
                    f"{EARLIEST_TIME:%Y-%m-%d}..{LATEST_TIME:%Y-%m-%d}",
                    field=name,
                    expected=f"{EARLIEST_TIME:%Y-%m-%d} <= time < {LATEST_TIME:%Y-%m-%d}",
                    got=value.isoformat(),
                )
        elif isinstance(value, float) and not math.isfinite(value):
            return Rejection(
                RejectReason.INVALID_FIELD,
                f"field {name!r} is not a finite number",
                field=name,
                expected="a finite number",
                got=repr(value),
            )
    return None


#: Years strictly between these are inside [EARLIEST_TIME, LATEST_TIME) at any UTC offset.
_SAFE_YEARS = (EARLIEST_TIME.year, LATEST_TIME.year - 1)


def _quote(value: Any, limit: int = 120) -> str:
    text = msgspec.json.encode(value).decode() if value is not None else "null"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class EventDecoder:
    """Reusable decoder: build once per worker (msgspec decoders cache type info)."""

    def __init__(
        self, max_message_bytes: int = MAX_MESSAGE_BYTES, keyring: KeyRing | None = None
    ) -> None:
        """``keyring``: the source systems that must sign their events, and their keys."""
        #: The contract's typed decode (raises msgspec's errors): the first
        #: thing :meth:`decode` does, and what its native twin calls.
        self.parse: Callable[[bytes], Event] = msgspec.json.Decoder(Event).decode
        self._loose = msgspec.json.Decoder()
        self.max_message_bytes = max_message_bytes
        self.keyring = keyring or KeyRing()

    def decode(
        self, raw: bytes | None, key: bytes | None = None, *, require_key: bool = False
    ) -> Event | Rejection:
        """Decode ``raw``; when ``key`` is given it must equal the ``order_id``.

        With ``require_key`` (messages from Kafka) a missing key is a rejection:
        without it the producer spreads an order over partitions, and per-order
        state, dedupe and ordering all rely on one partition per order.
        """
        if not raw:
            return Rejection(RejectReason.EMPTY_MESSAGE, "message has no value")
        if len(raw) > self.max_message_bytes:
            return Rejection(
                RejectReason.MESSAGE_TOO_LARGE,
                f"message of {len(raw)} bytes exceeds the {self.max_message_bytes}-byte limit",
                expected=f"<= {self.max_message_bytes} bytes",
                got=f"{len(raw)} bytes",
            )
        try:
            event: Event = self.parse(raw)
        except msgspec.ValidationError as err:
            return self._diagnose_invalid(raw, str(err))
        except msgspec.DecodeError as err:
            return self._diagnose_malformed(raw, str(err))
        except RecursionError:
            return _too_deep()
        if event.schema_version > SCHEMA_VERSION:
            return self._unsupported_version(event.schema_version)
        if (out_of_range := _out_of_range(event)) is not None:
            return out_of_range
        if key is None and require_key:
            return Rejection(
                RejectReason.MISSING_KEY,
                "Kafka message has no key; events must be keyed by order_id",
                field="order_id",
                expected=event.order_id,
                got="null",
            )
        if key is not None and key != event.order_id.encode():
            got = key.decode("utf-8", "replace")
            return Rejection(
                RejectReason.KEY_MISMATCH,
                f"Kafka key {got!r} differs from order_id {event.order_id!r}; "
                "events must be keyed by order_id so an order stays in one partition",
                field="order_id",
                expected=event.order_id,
                got=got,
            )
        if self.keyring.requires(event.source_system):
            problem = self.signature_problem(raw)
            if problem is not None:
                return Rejection(
                    RejectReason.SIGNATURE_INVALID,
                    problem,
                    field="signature",
                    expected=f"a valid signature of {event.source_system}",
                    got=_quote(event.signature),
                )
        return event

    def signature_problem(self, raw: bytes) -> str | None:
        """Why the signature of a message from a signing source is not acceptable, or None."""
        return self.keyring.verify(self._loose.decode(raw))

    @staticmethod
    def _unsupported_version(version: Any) -> Rejection:
        return Rejection(
            RejectReason.SCHEMA_VERSION_UNSUPPORTED,
            f"schema_version {version} is newer than the supported {SCHEMA_VERSION}",
            field="schema_version",
            expected=f"<= {SCHEMA_VERSION}",
            got=_quote(version),
        )

    def _diagnose_malformed(self, raw: bytes, error: str) -> Rejection:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return Rejection(
                RejectReason.INVALID_UTF8,
                f"message is not UTF-8: {err.reason} at byte {err.start}",
                expected="UTF-8 JSON object",
                got=repr(raw[err.start : err.start + 8]),
            )
        return Rejection(RejectReason.MALFORMED_JSON, f"message is not valid JSON: {error}")

    def _diagnose_invalid(self, raw: bytes, error: str) -> Rejection:
        try:
            doc = self._loose.decode(raw)
        except RecursionError:
            return _too_deep()
        except msgspec.DecodeError:
            # The typed pass parsed it, so the value itself is unparseable
            # without a type, e.g. a number beyond float range (1e999).
            at = _AT_PATH.search(error)
            field = at["path"].removeprefix("$.") if at else None
            return Rejection(
                RejectReason.INVALID_FIELD,
                f"field {field!r}: {error}",
                field=field,
                expected="a finite number" if "Number out of range" in error else None,
            )
        if not isinstance(doc, dict):
            return Rejection(
                RejectReason.NOT_AN_OBJECT,
                f"message must be a JSON object: {error}",
                expected="object",
                got=type(doc).__name__ if doc is not None else "null",
            )
        version = doc.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            # A newer producer may use types or fields we do not know yet; the
            # version, not the symptom, is the reason.
            return self._unsupported_version(version)
        if match := _INVALID_TAG.match(error):
            return Rejection(
                RejectReason.UNKNOWN_EVENT_TYPE,
                f"unknown event_type {match['got']!r}",
                field="event_type",
                expected="one of the lifecycle event types",
                got=match["got"],
            )
        if match := _MISSING.match(error):
            field = match["field"]
            if match["path"]:
                field = f"{match['path'].removeprefix('$.')}.{field}"
            return Rejection(
                RejectReason.MISSING_FIELD,
                f"required field {field!r} is missing",
                field=field,
                expected="present",
                got="missing",
            )
        at = _AT_PATH.search(error)
        path = at["path"] if at else "$"
        expected_match = _EXPECTED.match(error)
        expected = expected_match["expected"].replace("`", "") if expected_match else None
        return Rejection(
            RejectReason.INVALID_FIELD,
            f"field {path.removeprefix('$.')!r}: {error}",
            field=path.removeprefix("$.") if path != "$" else None,
            expected=expected,
            got=_quote(_lookup(doc, path)),
        )
