"""Where event-signing keys come from: a private TOML file or the environment.

Key file (mode 0600; ``--event-keys FILE`` or ``ORDERHEALTH_EVENT_KEYS=FILE``)::

    # A source listed here must sign every event; others are not checked.
    [WMS]
    sign_with = "2026-11"            # the key producers sign with now
    [WMS.keys]                       # at most two: the old and the new one
    "2026-10" = "<base64 secret>"
    "2026-11" = "<base64 secret>"

Environment, one variable per source (for secret stores that inject
variables; the first key is the one producers sign with)::

    ORDERHEALTH_EVENT_KEY_WMS="2026-11=<base64 secret>,2026-10=<base64 secret>"

A source defined in both places is an error rather than a silent merge.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from orderhealth.private_files import read_private, write_private
from schemas.signing import KeyRing, SourceKeys

__all__ = ["ENV_FILE", "ENV_PREFIX", "EventKeyError", "load_keyring", "write_key_file"]

ENV_FILE = "ORDERHEALTH_EVENT_KEYS"
ENV_PREFIX = "ORDERHEALTH_EVENT_KEY_"


class EventKeyError(ValueError):
    """Keys that cannot be used, and why."""


def _secret(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise EventKeyError(f"{where}: the secret is not base64 ({err})") from err


def _source(name: str, keys: Mapping[str, bytes], sign_with: str, where: str) -> SourceKeys:
    try:
        return SourceKeys(keys=dict(keys), sign_with=sign_with)
    except ValueError as err:
        raise EventKeyError(f"{where}: source {name!r}: {err}") from err


def _from_file(path: Path) -> dict[str, SourceKeys]:
    try:
        doc = tomllib.loads(read_private(path, "event key file").decode())
    except tomllib.TOMLDecodeError as err:
        raise EventKeyError(f"event key file {path}: {err}") from err
    out = {}
    for name, table in doc.items():
        where = f"{path} [{name}]"
        if not isinstance(table, dict) or not isinstance(table.get("keys"), dict):
            raise EventKeyError(f"{where}: expected a [{name}.keys] table of key id = secret")
        keys = {str(k): _secret(str(v), f"{where} key {k!r}") for k, v in table["keys"].items()}
        sign_with = str(table.get("sign_with") or next(iter(keys), ""))
        out[name] = _source(name, keys, sign_with, where)
    return out


def _from_environment(environ: Mapping[str, str]) -> dict[str, SourceKeys]:
    out = {}
    for variable, value in environ.items():
        if not variable.startswith(ENV_PREFIX) or not value.strip():
            continue
        name = variable.removeprefix(ENV_PREFIX)
        keys: dict[str, bytes] = {}
        for item in value.split(","):
            key_id, sep, secret = item.partition("=")
            if not sep or not key_id.strip():
                raise EventKeyError(f"{variable}: expected KEY_ID=BASE64_SECRET[,KEY_ID=...]")
            keys[key_id.strip()] = _secret(secret, f"{variable} key {key_id.strip()!r}")
        out[name] = _source(name, keys, next(iter(keys)), variable)
    return out


def load_keyring(path: Path | None = None, environ: Mapping[str, str] | None = None) -> KeyRing:
    """Every signing source's keys, from ``path`` (or ``$ORDERHEALTH_EVENT_KEYS``) and variables."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(ENV_FILE):
        path = Path(environ[ENV_FILE])
    sources = _from_file(path) if path is not None else {}
    for name, keys in _from_environment(environ).items():
        if name in sources:
            raise EventKeyError(
                f"source {name!r} has keys both in {path} and in {ENV_PREFIX}{name}"
            )
        sources[name] = keys
    return KeyRing(sources)


def write_key_file(path: Path, sources: Iterable[str], key_ids: Iterable[str] = ("k1",)) -> KeyRing:
    """A new key file (mode 0600) with random 32-byte secrets for ``sources``."""
    ids = list(key_ids)
    lines = [
        "# Order Health event-signing keys. Keep private (mode 0600); give each source",
        "# system only its own section.",
        "",
    ]
    for name in sources:
        keys = {key_id: secrets.token_bytes(32) for key_id in ids}
        lines += [f'["{name}"]', f'sign_with = "{ids[-1]}"', f'["{name}".keys]']
        lines += [f'"{k}" = "{base64.b64encode(v).decode()}"' for k, v in keys.items()]
        lines.append("")
    write_private(path, "\n".join(lines).encode())
    return load_keyring(path, environ={})
