"""Each native twin's guard, tripped on purpose (see ``dataflows/native_core.py``).

A twin module keeps the fingerprint its twin was checked against in a
``NATIVE_*_OF`` constant and caches whether it still matches; a test that
wants the changed-reference path swaps the constant and clears the cache,
and must put both back whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest


@contextmanager
def unchecked_twin(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, constant: str, current: Any
) -> Iterator[None]:
    """Inside the block, ``module``'s twin counts as not checked against its reference.

    ``current`` is the module's cached "still checked" function.
    """
    monkeypatch.setattr(module, constant, "another reference")
    current.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        current.cache_clear()
