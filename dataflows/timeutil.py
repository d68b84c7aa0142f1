"""Exact event-time arithmetic in integer microseconds since the Unix epoch.

Integers keep every sub-millisecond digit of an event time and make sums of
durations exact, which is what lets the streaming and batch results be
compared with ``==`` instead of a tolerance.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["US_PER_HOUR", "from_us", "to_us", "window_start"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_HOUR = 3_600_000_000
_ONE_US = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Zone-aware datetime -> microseconds since the epoch (no rounding).

    One floor division of timedeltas, in C: exact, and called for nearly
    every event more than once.
    """
    return (moment - _EPOCH) // _ONE_US


def from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def window_start(at_us: int, size_us: int) -> int:
    """Start of the tumbling window of ``size_us`` containing ``at_us`` (UTC-aligned)."""
    return at_us - at_us % size_us
