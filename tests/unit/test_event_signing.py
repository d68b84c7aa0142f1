"""Signed events: canonical form, rotation, and precise ``signature_invalid`` rejections."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderhealth.event_keys import EventKeyError, load_keyring, write_key_file
from orderhealth.private_files import PrivateFileError
from schemas.decode import EventDecoder, Rejection, RejectReason
from schemas.signing import KeyRing, SourceKeys, canonical_event
from tests.factories import event

OLD, NEW = b"o" * 32, b"n" * 32
RING = KeyRing({"WMS": SourceKeys(keys={"2026-10": OLD, "2026-11": NEW}, sign_with="2026-11")})
DECODER = EventDecoder(keyring=RING)


def _doc(source: str = "WMS", **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(msgspec.json.encode(event("ORDER_CREATED")))
    doc.update(source_system=source, **overrides)
    return doc


def _decode(doc: dict[str, Any]) -> Any:
    return DECODER.decode(json.dumps(doc).encode(), doc["order_id"].encode(), require_key=True)


def _signed_with(key_id: str, secret: bytes, doc: dict[str, Any]) -> dict[str, Any]:
    ring = KeyRing({"WMS": SourceKeys(keys={key_id: secret}, sign_with=key_id)})
    return ring.sign(doc)


def test_canonical_form_ignores_member_order_whitespace_and_the_signature() -> None:
    doc = _doc()
    shuffled = dict(reversed(list(doc.items())))
    assert canonical_event(doc) == canonical_event({**shuffled, "signature": "x"})
    assert b" " not in canonical_event({"a": 1, "b": [1, 2]})


def test_a_signed_event_is_accepted_and_both_rotation_keys_verify() -> None:
    assert not isinstance(_decode(RING.sign(_doc())), Rejection)
    assert not isinstance(_decode(_signed_with("2026-10", OLD, _doc())), Rejection)
    assert RING.sign(_doc())["signature"].startswith("hmac-sha256:2026-11:")


@pytest.mark.parametrize(
    ("case", "doc", "message"),
    [
        ("unsigned", _doc(), "must sign its events; the event has no signature"),
        ("altered", {**RING.sign(_doc()), "order_value": 1e6}, "does not match the event"),
        ("retired key", _signed_with("2026-09", b"r" * 32, _doc()), "not an active key"),
        ("wrong secret", _signed_with("2026-11", b"x" * 32, _doc()), "does not match"),
        ("garbage", _doc(signature="abc"), "is not 'hmac-sha256:<key id>:<digest>'"),
        ("other scheme", _doc(signature="md5:2026-11:abc"), "scheme 'md5'"),
    ],
)
def test_bad_signatures_are_rejected_with_a_precise_reason(
    case: str, doc: dict[str, Any], message: str
) -> None:
    result = _decode(doc)
    assert isinstance(result, Rejection), case
    assert result.reason == RejectReason.SIGNATURE_INVALID
    assert result.field == "signature"
    assert message in result.message, result.message


def test_sources_without_keys_are_not_checked() -> None:
    assert not isinstance(_decode(_doc(source="OMS")), Rejection)
    assert not isinstance(_decode(_doc(source="OMS", signature="nonsense")), Rejection)


def test_huge_integers_cannot_be_canonicalised_and_are_rejected_not_raised() -> None:
    doc = _doc(attributes={"n": 2**70}, signature="hmac-sha256:2026-11:AAAA")
    result = _decode(doc)
    assert isinstance(result, Rejection) and "canonical form" in result.message


@given(st.dictionaries(st.text(max_size=8), st.integers(-(2**40), 2**40) | st.text(max_size=8)))
def test_any_change_to_a_signed_event_breaks_the_signature(attributes: dict[str, Any]) -> None:
    signed = RING.sign(_doc(attributes=attributes))
    assert RING.verify(signed) is None
    assert RING.verify({**signed, "attributes": {**attributes, "injected": 1}}) is not None


def test_key_files_and_variables(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    ring = write_key_file(path, ["WMS", "TMS"], ["2026-10", "2026-11"])
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert set(ring.sources) == {"WMS", "TMS"}
    assert ring.sources["WMS"].sign_with == "2026-11"
    assert load_keyring(path, environ={}) == ring
    secret = base64.b64encode(b"s" * 32).decode()
    env = {"ORDERHEALTH_EVENT_KEY_ERP": f"new={secret},old={secret}"}
    from_env = load_keyring(None, environ=env)
    assert from_env.sources["ERP"].sign_with == "new"
    with pytest.raises(EventKeyError, match="both in"):
        load_keyring(path, environ={"ORDERHEALTH_EVENT_KEY_WMS": f"k={secret}"})
    with pytest.raises(EventKeyError, match="not base64"):
        load_keyring(None, environ={"ORDERHEALTH_EVENT_KEY_ERP": "k=not*base64"})
    with pytest.raises(EventKeyError, match="at most 2"):
        load_keyring(
            None, environ={"ORDERHEALTH_EVENT_KEY_ERP": f"a={secret},b={secret},c={secret}"}
        )
    path.chmod(0o644)
    with pytest.raises(PrivateFileError, match="chmod 600"):
        load_keyring(path, environ={})
    with pytest.raises(FileExistsError):
        write_key_file(path, ["WMS"])
