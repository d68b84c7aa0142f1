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


def to_us(moment: datetime) -> int:
    """Zone-aware datetime -> microseconds since the epoch (no rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def window_start(at_us: int, size_us: int) -> int:
    """Start of the tumbling window of ``size_us`` containing ``at_us`` (UTC-aligned)."""
    return at_us - at_us % size_us
