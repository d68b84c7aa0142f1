"""Secrets on disk: written owner-only from the first byte, refused when others can read them.

Every secret the project keeps in a file -- the credit-report signing key,
the event HMAC keys, Superset's secret key -- goes through here, so "no
secret readable by other users" is enforced in one place.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["PrivateFileError", "read_private", "write_private"]


class PrivateFileError(ValueError):
    """A secret file that is missing or readable by others, with the fix."""


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never an existing file: no silent key replacement)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def read_private(path: Path, what: str) -> bytes:
    """The bytes of a secret file that only its owner can read or write."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise PrivateFileError(f"{what} {path}: {err.strerror}") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PrivateFileError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    return path.read_bytes()
