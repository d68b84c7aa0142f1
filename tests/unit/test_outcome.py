"""The promise outcome rule of SPEC §4."""

from __future__ import annotations

from dataflows.outcome import Outcome, OutcomeStatus, resolve

PROMISE = 1_000


def outcome(
    delivered: int | None = None, cancelled: int | None = None, wm: int | None = None
) -> Outcome:
    return resolve(
        first_promise_us=PROMISE, delivered_us=delivered, cancelled_us=cancelled, watermark_us=wm
    )


def test_delivered_at_or_before_promise_is_on_time_at_delivery() -> None:
    assert outcome(delivered=PROMISE) == Outcome(OutcomeStatus.ON_TIME, PROMISE)
    assert outcome(delivered=400) == Outcome(OutcomeStatus.ON_TIME, 400)


def test_delivered_after_promise_is_late_at_promise() -> None:
    assert outcome(delivered=PROMISE + 1) == Outcome(OutcomeStatus.LATE, PROMISE)


def test_late_is_known_when_watermark_passes_promise_even_undelivered() -> None:
    assert outcome(wm=PROMISE) == Outcome(OutcomeStatus.OPEN)
    assert outcome(wm=PROMISE + 1) == Outcome(OutcomeStatus.LATE, PROMISE)


def test_cancelled_before_resolution_counts_only_as_cancelled() -> None:
    assert outcome(delivered=900, cancelled=800) == Outcome(OutcomeStatus.CANCELLED, 800)
    assert outcome(cancelled=500, wm=PROMISE + 5) == Outcome(OutcomeStatus.CANCELLED, 500)
    assert outcome(cancelled=500) == Outcome(OutcomeStatus.CANCELLED, 500)


def test_cancelled_after_resolution_keeps_the_resolution() -> None:
    assert outcome(delivered=900, cancelled=950) == Outcome(OutcomeStatus.ON_TIME, 900)
    assert outcome(cancelled=PROMISE + 10, wm=PROMISE + 20) == Outcome(OutcomeStatus.LATE, PROMISE)


def test_no_promise_means_open() -> None:
    result = resolve(first_promise_us=None, delivered_us=5, cancelled_us=None, watermark_us=10)
    assert result.status is OutcomeStatus.OPEN
