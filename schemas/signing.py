"""Signed events: HMAC-SHA256 over the canonical event, per source system.

A source system that is required to sign (say the WMS) proves each event came
from it and was not altered on the way: the producer computes an HMAC-SHA256,
with a secret shared with this pipeline, over the event's **canonical form**
-- the JSON object without its ``signature`` member, serialised by RFC 8785
(JSON Canonicalization Scheme: sorted keys, no whitespace, one number format),
so producers in any language get the same bytes -- and sends it as::

    "signature": "hmac-sha256:<key id>:<base64url digest, no padding>"

The key id names which of the source's keys signed, so keys can be rotated
without a flag day: a source has at most two active keys; producers switch to
the new one at their pace while both verify, then the old one is retired.

Opt-in per source: events from sources without keys are accepted with or
without a signature (it is not checked); events from a source with keys must
carry a valid signature or are dead-lettered as ``signature_invalid``.

This module is pure (no files, no environment); :mod:`orderhealth.event_keys`
loads keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import msgspec
import rfc8785

__all__ = ["MAX_ACTIVE_KEYS", "SCHEME", "KeyRing", "SourceKeys", "canonical_event"]

SCHEME = "hmac-sha256"
#: Rotation: the old and the new key.
MAX_ACTIVE_KEYS = 2


def canonical_event(doc: dict[str, Any]) -> bytes:
    """The bytes that are signed: the event without ``signature``, RFC 8785 canonical JSON."""
    return rfc8785.dumps({k: v for k, v in doc.items() if k != "signature"})


def _digest(secret: bytes, doc: dict[str, Any]) -> str:
    mac = hmac.new(secret, canonical_event(doc), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class SourceKeys(msgspec.Struct, frozen=True):
    """One source system's active keys (key id -> secret) and the one producers sign with."""

    keys: dict[str, bytes]
    sign_with: str

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a signing source needs at least one key")
        if len(self.keys) > MAX_ACTIVE_KEYS:
            raise ValueError(
                f"{len(self.keys)} active keys; at most {MAX_ACTIVE_KEYS} "
                "(the old and the new one while rotating): retire the oldest"
            )
        if self.sign_with not in self.keys:
            raise ValueError(f"sign_with names {self.sign_with!r}, which is not one of the keys")
        for key_id, secret in self.keys.items():
            if len(secret) < 16:
                raise ValueError(f"key {key_id!r} is {len(secret)} bytes; use at least 16")


class KeyRing(msgspec.Struct, frozen=True):
    """Every signing source's keys."""

    sources: dict[str, SourceKeys] = {}

    def requires(self, source_system: str) -> bool:
        return source_system in self.sources

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with a ``signature`` by its source's ``sign_with`` key (unchanged if none)."""
        source = self.sources.get(doc.get("source_system", ""))
        if source is None:
            return doc
        digest = _digest(source.keys[source.sign_with], doc)
        return {**doc, "signature": f"{SCHEME}:{source.sign_with}:{digest}"}

    def verify(self, doc: dict[str, Any]) -> str | None:
        """None when ``doc`` is acceptable, else why its signature is not."""
        name = doc.get("source_system")
        source = self.sources.get(name) if isinstance(name, str) else None
        if source is None:
            return None
        signature = doc.get("signature")
        if signature is None:
            return f"source system {name!r} must sign its events; the event has no signature"
        if not isinstance(signature, str) or signature.count(":") != 2:
            return f"signature is not '{SCHEME}:<key id>:<digest>'"
        scheme, key_id, digest = signature.split(":")
        if scheme != SCHEME:
            return f"signature scheme {scheme!r} is not {SCHEME!r}"
        secret = source.keys.get(key_id)
        if secret is None:
            return (
                f"key {key_id!r} is not an active key of {name!r} "
                f"(active: {', '.join(sorted(source.keys))})"
            )
        try:
            expected = _digest(secret, doc)
        except rfc8785.CanonicalizationError as err:
            return f"event cannot be put in canonical form (RFC 8785): {err}"
        if not hmac.compare_digest(digest, expected):
            return f"signature does not match the event (key {key_id!r}): altered or wrong key"
        return None
