"""Hostile input: the decoder never raises, and every rejection has a precise reason.

``HOSTILE`` is the corpus (also streamed through Kafka by the integration
test); the hypothesis tests throw random bytes and random JSON at the decoder.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decode import EventDecoder, Rejection, RejectReason
from tests.factories import event

DECODER = EventDecoder()


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(msgspec.json.encode(event("ORDER_CREATED")))
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def _raw(**overrides: Any) -> bytes:
    return json.dumps(_doc(**overrides)).encode()


def _with(raw: bytes, insert: bytes) -> bytes:
    """``insert`` spliced in as extra members right after the opening brace."""
    return b"{" + insert + b", " + raw[1:]


_VALID = _raw()

#: (case, message value, expected reason or None = accepted)
HOSTILE: list[tuple[str, bytes, RejectReason | None]] = [
    ("non-UTF-8 bytes", b"\xff\xfe\x00{garbage", RejectReason.INVALID_UTF8),
    ("truncated JSON", _VALID[: len(_VALID) // 2], RejectReason.MALFORMED_JSON),
    (
        "deeply nested arrays",
        b'{"attributes": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        RejectReason.NESTING_TOO_DEEP,
    ),
    (
        "deeply nested objects in a valid event",
        _with(_VALID, b'"attributes": ' + b'{"a": ' * 3_000 + b"1" + b"}" * 3_000),
        RejectReason.NESTING_TOO_DEEP,
    ),
    ("5 MB message", b'{"pad": "' + b"x" * 5_000_000 + b'"}', RejectReason.MESSAGE_TOO_LARGE),
    ("empty message", b"", RejectReason.EMPTY_MESSAGE),
    ("JSON array", b"[1, 2, 3]", RejectReason.NOT_AN_OBJECT),
    ("wrong type: order_id a number", _raw(order_id=42), RejectReason.INVALID_FIELD),
    ("wrong type: schema_version true", _raw(schema_version=True), RejectReason.INVALID_FIELD),
    ("missing required field", _raw(event_time=...), RejectReason.MISSING_FIELD),
    ("unknown event type", _raw(event_type="TELEPORTED"), RejectReason.UNKNOWN_EVENT_TYPE),
    ("newer schema_version", _raw(schema_version=9), RejectReason.SCHEMA_VERSION_UNSUPPORTED),
    ("NaN literal", _with(_VALID, b'"order_value": NaN'), RejectReason.MALFORMED_JSON),
    ("Infinity literal", _with(_VALID, b'"order_value": Infinity'), RejectReason.MALFORMED_JSON),
    (
        "number beyond float range",
        _with(_VALID, b'"order_value": 1e999'),
        RejectReason.INVALID_FIELD,
    ),
    (
        "infinite context value",
        _with(_VALID, b'"context": {"queue": -1e999}'),
        RejectReason.INVALID_FIELD,
    ),
    ("year 1", _raw(event_time="0001-01-01T00:00:00Z"), RejectReason.INVALID_FIELD),
    (
        "year 9999 promise",
        _raw(promised_delivery_at="9999-12-31T23:59:59Z"),
        RejectReason.INVALID_FIELD,
    ),
    (
        "timestamp without a zone",
        _raw(event_time="2026-11-02T08:00:00"),
        RejectReason.INVALID_FIELD,
    ),
    ("empty order_id", _raw(order_id=""), RejectReason.INVALID_FIELD),
    ("negative order value", _raw(order_value=-5.0), RejectReason.INVALID_FIELD),
    ("a valid event", _VALID, None),
]


@pytest.mark.parametrize(("case", "raw", "reason"), HOSTILE, ids=[c for c, _, _ in HOSTILE])
def test_every_hostile_input_gets_its_precise_reason(
    case: str, raw: bytes, reason: RejectReason | None
) -> None:
    order_id = _doc()["order_id"]
    result = DECODER.decode(raw, key=order_id.encode(), require_key=True)
    if reason is None:
        assert not isinstance(result, Rejection), result
        return
    assert isinstance(result, Rejection), case
    assert result.reason is reason, (case, result)
    assert result.message


def test_null_key_and_key_mismatch_are_rejected() -> None:
    assert DECODER.decode(_VALID, None, require_key=True).reason is RejectReason.MISSING_KEY  # type: ignore[union-attr]
    other = DECODER.decode(_VALID, b"someone-else")
    assert isinstance(other, Rejection) and other.reason is RejectReason.KEY_MISMATCH


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2_000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    result = DECODER.decode(raw, key=b"k", require_key=True)
    assert isinstance(result, Rejection) and result.reason in RejectReason


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(_doc()), "context", "attributes", "extra"]), _json, max_size=12
    )
)
def test_random_json_over_the_contract_fields_never_raises(overrides: dict[str, Any]) -> None:
    raw = json.dumps(_doc(**overrides), allow_nan=True).encode()
    result = DECODER.decode(raw, key=str(_doc(**overrides).get("order_id")).encode())
    assert isinstance(result, Rejection) or result.order_id
