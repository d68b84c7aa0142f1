"""Integrity of a credit report: SHA-256 digests, an Ed25519-signed manifest, pseudonyms.

The manifest is written in one canonical layout (sorted keys, two-space
indent, UTF-8, a final newline) and the signature covers that layout minus the
``signature`` block.  ``credit-verify`` re-serialises what it read and
requires the exact same bytes, so *any* edit of the manifest -- even a space
-- fails, not only edits that change a value.

Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public).  A private
key file must not be readable by group or others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from orderhealth.private_files import PrivateFileError, read_private, write_private

__all__ = [
    "SigningKeyError",
    "canonical_manifest",
    "file_digest",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "pseudonymiser",
    "public_pem",
    "sign_manifest",
    "verify_manifest",
]

SIGNATURE = "signature"
ALGORITHM = "Ed25519"


class SigningKeyError(ValueError):
    """A key that cannot be used, with what to do about it."""


def canonical_manifest(manifest: dict[str, Any]) -> bytes:
    """The one byte layout a manifest is written and verified in."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _signed_bytes(manifest: dict[str, Any]) -> bytes:
    return canonical_manifest({k: v for k, v in manifest.items() if k != SIGNATURE})


def file_digest(path: Path) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint: SHA-256 of the raw public key, first 16 hex digits."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(path: Path) -> Ed25519PublicKey:
    """Write a new private key (mode 0600) and its public key beside it (``.pub.pem``)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    public = key.public_key()
    public_path(path).write_text(public_pem(public))
    return public


def public_path(private: Path) -> Path:
    name = private.name.removesuffix(".pem")
    return private.with_name(f"{name}.pub.pem")


def load_private_key(*, path: Path | None = None, pem: str | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (0600 or stricter) or PEM text."""
    if path is not None:
        try:
            data = read_private(path, "signing key")
        except PrivateFileError as err:
            raise SigningKeyError(str(err)) from err
        where = str(path)
    elif pem is not None:
        data = pem.encode()
        where = "ORDERHEALTH_SIGNING_KEY"
    else:
        raise SigningKeyError("no signing key given")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise SigningKeyError(f"{where} is not an unencrypted PEM private key: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{where} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as err:
        raise SigningKeyError(f"public key {path}: {err.strerror}") from err
    except ValueError as err:
        raise SigningKeyError(f"public key {path} is not a PEM public key: {err}") from err
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"public key {path} is not an Ed25519 key")
    return key


def sign_manifest(manifest: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The manifest with its ``signature`` block."""
    public = key.public_key()
    signature = key.sign(_signed_bytes(manifest))
    return dict(
        manifest,
        signature={
            "algorithm": ALGORITHM,
            "key_id": key_id(public),
            "public_key": public_pem(public),
            "signed": "the manifest without this block, serialised as written: "
            "keys sorted, indent 2, UTF-8, final newline",
            "value": base64.b64encode(signature).decode(),
        },
    )


def verify_manifest(
    manifest: dict[str, Any], expected: Ed25519PublicKey | None = None
) -> Ed25519PublicKey:
    """Check the signature; returns the signing key.  Raises ValueError on any mismatch.

    With ``expected`` (the company's published key, pinned by the bank), a
    manifest signed by any other key is refused even if its signature is valid.
    """
    block = manifest.get(SIGNATURE)
    if not isinstance(block, dict) or block.get("algorithm") != ALGORITHM:
        raise ValueError("the manifest has no Ed25519 signature block")
    try:
        embedded = serialization.load_pem_public_key(str(block["public_key"]).encode())
        signature = base64.b64decode(str(block["value"]), validate=True)
    except (KeyError, ValueError) as err:
        raise ValueError(f"the signature block is malformed: {err}") from err
    if not isinstance(embedded, Ed25519PublicKey):
        raise ValueError("the manifest's public key is not an Ed25519 key")
    key = embedded
    if expected is not None:
        if key_id(expected) != key_id(embedded):
            raise ValueError(
                f"signed by key {key_id(embedded)}, but the expected key is {key_id(expected)}"
            )
        key = expected
    try:
        key.verify(signature, _signed_bytes(manifest))
    except InvalidSignature as err:
        raise ValueError(
            f"the signature does not match the manifest (key {key_id(key)}): "
            "the manifest was edited or signed with another key"
        ) from err
    return key


def pseudonymiser(secret: bytes) -> tuple[Any, str]:
    """A keyed hash for order ids (HMAC-SHA256, hex) and the key's fingerprint.

    Without the secret nobody can link a pseudonym to an order id; with it the
    company can, to answer a bank's question about one order.
    """
    if len(secret) < 16:
        raise SigningKeyError("the pseudonymisation key must be at least 16 bytes")

    def pseudonym(order_id: str) -> str:
        return hmac.new(secret, order_id.encode(), hashlib.sha256).hexdigest()

    return pseudonym, hashlib.sha256(b"orderhealth-pseudonym-key:" + secret).hexdigest()[:16]
