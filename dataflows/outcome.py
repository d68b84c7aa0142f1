"""The promise outcome rule (SPEC §4), as one pure function.

An order's promise resolves at ``min(delivered_at, first_promise)``:
delivered at or before the first promise is *on time* (resolved at delivery);
otherwise it is *late*, resolved at the promise -- and known to be late as soon
as the watermark passes the promise, delivered or not.  An order cancelled
before it resolves counts only as cancelled.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ["Outcome", "OutcomeStatus", "resolve"]


class OutcomeStatus(StrEnum):
    OPEN = "open"
    ON_TIME = "on_time"
    LATE = "late"
    CANCELLED = "cancelled"


class Outcome(msgspec.Struct, frozen=True):
    status: OutcomeStatus
    #: When the promise resolved (or the cancellation happened); None if open.
    resolved_at_us: int | None = None


def resolve(
    *,
    first_promise_us: int | None,
    delivered_us: int | None,
    cancelled_us: int | None,
    watermark_us: int | None,
) -> Outcome:
    """Outcome of one order given what is known up to ``watermark_us``.

    Depends on the watermark only through ``watermark_us > first_promise_us``;
    callers must re-resolve when the watermark crosses the promise.
    """
    resolution: Outcome | None = None
    if first_promise_us is not None:
        if delivered_us is not None and delivered_us <= first_promise_us:
            resolution = Outcome(OutcomeStatus.ON_TIME, delivered_us)
        elif delivered_us is not None or (
            watermark_us is not None and watermark_us > first_promise_us
        ):
            resolution = Outcome(OutcomeStatus.LATE, first_promise_us)
    if cancelled_us is not None and (
        resolution is None
        or resolution.resolved_at_us is None
        or cancelled_us < resolution.resolved_at_us
    ):
        return Outcome(OutcomeStatus.CANCELLED, cancelled_us)
    return resolution or Outcome(OutcomeStatus.OPEN)
