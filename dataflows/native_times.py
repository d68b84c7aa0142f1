"""The native twin of :func:`dataflows.timeutil.to_us`: event times as integer microseconds.

The partition step converts every event's time, and the order view and the
bronze rows each promise time; in Python a conversion is an aware datetime
subtraction, ~2,600 instructions.  ``orderhealth_native.to_us``
(``native/src/times.rs``) reads the date, time and zone offset instead.
:func:`~dataflows.timeutil.to_us` stays the definition, and
:data:`NATIVE_TIMES_OF` guards the twin against a changed one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime
from functools import cache

from dataflows import timeutil
from dataflows.native_core import core_name, fingerprint, installed, still_checked
from dataflows.timeutil import to_us

__all__ = ["NATIVE_TIMES_OF", "native_times_current", "times_fingerprint", "to_us_of"]

#: The fingerprint (:func:`times_fingerprint`) of ``dataflows/timeutil.py``
#: that ``native/src/times.rs`` was checked against; as for the facts
#: (:data:`~dataflows.native_facts.NATIVE_FACTS_OF`), a change there puts the
#: conversion back in Python until ``tests/unit/test_native_times.py`` checks
#: the twin and names the new value.
NATIVE_TIMES_OF = "c40f54b6caa92220"


def times_fingerprint() -> str:
    """A hash of ``dataflows/timeutil.py``, comments and layout aside."""
    return fingerprint(inspect.getsource(timeutil))


@cache
def native_times_current() -> bool:
    """Whether ``native/src/times.rs`` was checked against ``dataflows/timeutil.py`` as it is."""
    return still_checked(
        times_fingerprint,
        NATIVE_TIMES_OF,
        "dataflows/timeutil.py changed since native/src/times.rs was checked against it: "
        "event times are converted in Python (slower) until tests/unit/test_native_times.py "
        "passes and NATIVE_TIMES_OF is updated",
    )


def to_us_of(core: str | None = None) -> Callable[[datetime], int]:
    """:func:`~dataflows.timeutil.to_us` of the chosen core.

    The native one runs with the native core while ``dataflows/timeutil.py``
    is as its twin was checked against (:data:`NATIVE_TIMES_OF`).
    """
    core = core or core_name()
    if core == "python" or not native_times_current():
        return to_us
    native: Callable[[datetime], int] = installed().to_us
    return native
