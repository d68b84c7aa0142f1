"""One order's contribution to every window row, derived from its view.

An order contributes *facts* -- (event time, measure increments) -- such as
"resolved on time at 10:42" or "active at 09:13".  Each fact lands in the
window of every configured size that contains its time, once per enabled
dimension whose value is known at that time.  Window totals are sums of
these per-order contributions, so when an order's view changes the stream
emits ``new - old`` and never needs to replay history.
"""

from __future__ import annotations

from dataflows.dimensions import DIMENSION_READERS
from dataflows.lifecycle import OrderView
from dataflows.metrics import DISTINCT_MEASURES, MEASURES
from dataflows.outcome import OutcomeStatus
from dataflows.settings import HealthSettings

__all__ = ["Contribution", "WindowKey", "diff_contributions", "order_contribution"]

#: (window size label, window start us, dimension, dimension value)
WindowKey = tuple[str, int, str, str]
#: Window key -> measure vector (aligned with MEASURES).
Contribution = dict[WindowKey, list[int]]

_INDEX = {name: i for i, name in enumerate(MEASURES)}
_DISTINCT = tuple(_INDEX[m] for m in sorted(DISTINCT_MEASURES))
_WIDTH = len(MEASURES)


def _facts(view: OrderView, event_times: list[int]) -> list[tuple[int, dict[int, int]]]:
    facts: list[tuple[int, dict[int, int]]] = []
    if view.created_us is not None:
        facts.append((view.created_us, {_INDEX["orders_created"]: 1}))
    outcome = view.outcome
    if outcome.status in (OutcomeStatus.ON_TIME, OutcomeStatus.LATE):
        assert outcome.resolved_at_us is not None
        facts.append(
            (
                outcome.resolved_at_us,
                {
                    _INDEX["orders_resolved"]: 1,
                    _INDEX["orders_on_time"]: int(outcome.status is OutcomeStatus.ON_TIME),
                },
            )
        )
    delivered = view.delivered_us
    if delivered is not None and outcome.status is not OutcomeStatus.CANCELLED:
        increments = {_INDEX["orders_delivered"]: 1}
        if view.first_promise_us is not None:
            increments[_INDEX["deviation_count"]] = 1
            increments[_INDEX["deviation_us_sum"]] = delivered - view.first_promise_us
        facts.append((delivered, increments))
    for at in event_times:
        facts.append((at, {_INDEX["orders_active"]: 1}))
    for flag in view.flags:
        facts.append((flag.at_us, {_INDEX["orders_active"]: 1, _INDEX["orders_anomalous"]: 1}))
    return facts


def order_contribution(
    view: OrderView, event_times: list[int], settings: HealthSettings
) -> Contribution:
    """The order's measure vector for every window row it touches."""
    readers = [(dim, DIMENSION_READERS[dim]) for dim in settings.dimensions]
    out: Contribution = {}
    for at, increments in _facts(view, event_times):
        values = [(dim, read(view, at)) for dim, read in readers]
        for label, size in settings.window_sizes:
            start = at - at % size
            for dim, value in values:
                if value is None:
                    continue
                key = (label, start, dim, value)
                vector = out.get(key)
                if vector is None:
                    vector = out[key] = [0] * _WIDTH
                for index, amount in increments.items():
                    vector[index] += amount
    for vector in out.values():
        for index in _DISTINCT:
            if vector[index] > 1:
                vector[index] = 1
    return out


def diff_contributions(old: Contribution, new: Contribution) -> Contribution:
    """``new - old`` per window row, omitting rows that did not change."""
    delta: Contribution = {}
    for key, vector in new.items():
        before = old.get(key)
        if before is None:
            delta[key] = list(vector)
        elif before != vector:
            delta[key] = [a - b for a, b in zip(vector, before, strict=True)]
    for key, before in old.items():
        if key not in new:
            delta[key] = [-b for b in before]
    return delta
