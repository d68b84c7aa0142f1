"""The event contract: generated JSON Schema stays in sync, decoding is precise."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime

import msgspec
import pytest

from schemas.decode import EventDecoder, Rejection, RejectReason
from schemas.events import ALL_EVENT_TYPES, EventType, OrderCreated
from schemas.json_schema import SCHEMA_PATH, build_json_schema, render_json_schema
from tests.factories import event

DECODER = EventDecoder()


def test_published_json_schema_matches_the_contract() -> None:
    assert SCHEMA_PATH.read_text() == render_json_schema(), (
        "schemas/order_event.schema.json is stale: run `make schema`"
    )


def test_json_schema_lists_every_event_type() -> None:
    schema = build_json_schema()
    tags = {
        d["properties"]["event_type"]["enum"][0]
        for d in schema["$defs"].values()
        if "event_type" in d.get("properties", {})
    }
    assert tags == {t.value for t in EventType}


@pytest.mark.parametrize("kind", list(EventType))
def test_every_event_type_round_trips(kind: EventType) -> None:
    original = event(kind, when=datetime(2026, 11, 2, 8, 0, 0, 123000, tzinfo=UTC))
    raw = msgspec.json.encode(original)
    decoded = DECODER.decode(raw, key=b"O1")
    assert decoded == original
    assert type(decoded) is ALL_EVENT_TYPES[kind]
    # Hot state holds millions of events: the cyclic collector must not track them.
    assert not gc.is_tracked(decoded)


def test_millisecond_precision_is_kept() -> None:
    raw = msgspec.json.encode(event("DELIVERED")).replace(b"08:00:00", b"08:00:00.987")
    decoded = DECODER.decode(raw)
    assert not isinstance(decoded, Rejection)
    assert decoded.event_time.microsecond == 987000


def _valid(**overrides: object) -> bytes:
    doc = json.loads(msgspec.json.encode(event("ORDER_CREATED")))
    doc.update(overrides)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "reason", "field", "expected", "got"),
    [
        (
            _valid(event_type="TELEPORTED"),
            RejectReason.UNKNOWN_EVENT_TYPE,
            "event_type",
            None,
            "TELEPORTED",
        ),
        (
            _valid(promised_delivery_at=...),
            RejectReason.MISSING_FIELD,
            "promised_delivery_at",
            "present",
            "missing",
        ),
        (_valid(order_id=42), RejectReason.INVALID_FIELD, "order_id", "str", "42"),
        (_valid(order_id=""), RejectReason.INVALID_FIELD, "order_id", None, '""'),
        (
            _valid(event_time="2026-11-02T08:00:00"),
            RejectReason.INVALID_FIELD,
            "event_time",
            None,
            '"2026-11-02T08:00:00"',
        ),
        (
            _valid(schema_version=2),
            RejectReason.SCHEMA_VERSION_UNSUPPORTED,
            "schema_version",
            "<= 1",
            "2",
        ),
        (
            _valid(event_type="NEW_THING", schema_version=3),
            RejectReason.SCHEMA_VERSION_UNSUPPORTED,
            "schema_version",
            None,
            "3",
        ),
        (_valid(order_value=-1), RejectReason.INVALID_FIELD, "order_value", None, "-1"),
        (
            _valid(customer_segment="B2X"),
            RejectReason.INVALID_FIELD,
            "customer_segment",
            None,
            '"B2X"',
        ),
        (b"\xff\xfe{}", RejectReason.INVALID_UTF8, None, "UTF-8 JSON object", None),
        (b'{"event_type": ', RejectReason.MALFORMED_JSON, None, None, None),
        (b"[1, 2]", RejectReason.NOT_AN_OBJECT, None, "object", "list"),
        (b"", RejectReason.EMPTY_MESSAGE, None, None, None),
    ],
)
def test_rejections_name_reason_field_expected_and_got(
    raw: bytes, reason: RejectReason, field: str | None, expected: str | None, got: str | None
) -> None:
    result = DECODER.decode(raw)
    assert isinstance(result, Rejection), result
    assert result.reason is reason
    assert result.message
    if field is not None:
        assert result.field == field
    if expected is not None:
        assert result.expected is not None and expected in result.expected
    if got is not None:
        assert result.got == got


@pytest.mark.parametrize(
    ("event_time", "inside"),
    [
        ("1999-12-31T23:30:00-01:00", True),  # 2000-01-01T00:30Z
        ("2000-01-01T00:30:00+01:00", False),  # 1999-12-31T23:30Z
        ("2000-01-01T00:00:00Z", True),
        ("2000-12-31T23:59:59+23:59", True),
        ("2099-12-31T23:30:00-01:00", False),  # 2100-01-01T00:30Z
        ("2100-01-01T00:30:00+01:00", True),  # 2099-12-31T23:30Z
        ("2099-12-31T23:59:59.999999Z", True),
        ("2100-01-01T00:00:00Z", False),
        ("0001-01-01T00:00:00Z", False),
    ],
)
def test_event_times_are_bounded_as_instants_whatever_their_offset(
    event_time: str, inside: bool
) -> None:
    """The range check skips the zone-aware comparison only for years well inside it."""
    result = DECODER.decode(_valid(event_time=event_time))
    if inside:
        assert not isinstance(result, Rejection), result
    else:
        assert isinstance(result, Rejection)
        assert result.reason is RejectReason.INVALID_FIELD
        assert result.field == "event_time"
        assert "outside the supported range" in result.message


def test_key_must_equal_order_id() -> None:
    result = DECODER.decode(_valid(), key=b"someone-else")
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.KEY_MISMATCH
    assert (result.expected, result.got) == ("O1", "someone-else")


def test_kafka_messages_must_have_a_key() -> None:
    result = DECODER.decode(_valid(), None, require_key=True)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.MISSING_KEY
    assert not isinstance(DECODER.decode(_valid(), None), Rejection)


def test_oversized_message_is_rejected_before_parsing() -> None:
    result = EventDecoder(max_message_bytes=100).decode(b"{" + b" " * 200 + b"}")
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.MESSAGE_TOO_LARGE


def test_created_event_keeps_optional_attributes() -> None:
    created = DECODER.decode(_valid(region="DE", channel="web", promise_confidence=0.9))
    assert isinstance(created, OrderCreated)
    assert (created.region, created.channel, created.promise_confidence) == ("DE", "web", 0.9)
