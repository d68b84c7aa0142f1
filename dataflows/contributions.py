"""One order's contribution to every window row, derived from its view.

Each :class:`~dataflows.metrics.Fact` of an order lands in the window of every
configured size that contains its time, once per enabled dimension whose value
is known at that time.  Window totals are sums of these per-order
contributions, so when an order's view changes the stream emits ``new - old``
and never needs to replay history.
"""

from __future__ import annotations

from dataflows.dimensions import DIMENSION_READERS
from dataflows.lifecycle import OrderView
from dataflows.metrics import FACTS, MEASURES, Agg
from dataflows.settings import HealthSettings

__all__ = [
    "VALUE_FACTS",
    "Contribution",
    "Delta",
    "RowContribution",
    "RowDelta",
    "WindowKey",
    "diff_contributions",
    "merge_delta",
    "order_contribution",
]

#: (window size label, window start us, dimension, dimension value)
WindowKey = tuple[str, int, str, str]
#: Facts whose values are kept for percentiles, in a fixed order.
VALUE_FACTS: tuple[str, ...] = tuple(f.name for f in FACTS if f.keep_values)

_WIDTH = len(MEASURES)
# Per fact: [(measure index, aggregation)], and its slot in VALUE_FACTS (or -1).
_PLAN = [
    (
        fact,
        [(MEASURES.index(m), agg) for m, agg in fact.measures.items()],
        VALUE_FACTS.index(fact.name) if fact.keep_values else -1,
    )
    for fact in FACTS
]


class RowContribution:
    """One order's measures (and kept values) for one window row."""

    __slots__ = ("values", "vector")

    def __init__(self) -> None:
        self.vector = [0] * _WIDTH
        self.values: list[list[int]] = [[] for _ in VALUE_FACTS]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RowContribution)
            and self.vector == other.vector
            and self.values == other.values
        )

    def __getstate__(self) -> tuple[list[int], list[list[int]]]:
        return (self.vector, self.values)

    def __setstate__(self, state: tuple[list[int], list[list[int]]]) -> None:
        self.vector, self.values = state


class RowDelta:
    """A change to one window row: measure differences and kept values in/out."""

    __slots__ = ("added", "removed", "vector")

    def __init__(self) -> None:
        self.vector = [0] * _WIDTH
        self.added: list[list[int]] = [[] for _ in VALUE_FACTS]
        self.removed: list[list[int]] = [[] for _ in VALUE_FACTS]

    def __getstate__(self) -> tuple[list[int], list[list[int]], list[list[int]]]:
        return (self.vector, self.added, self.removed)

    def __setstate__(self, state: tuple[list[int], list[list[int]], list[list[int]]]) -> None:
        self.vector, self.added, self.removed = state


Contribution = dict[WindowKey, RowContribution]
Delta = dict[WindowKey, RowDelta]


def order_contribution(view: OrderView, settings: HealthSettings) -> Contribution:
    """The order's contribution to every window row it touches."""
    readers = [(dim, DIMENSION_READERS[dim]) for dim in settings.dimensions]
    sizes = settings.window_sizes
    out: Contribution = {}
    for fact, measures, slot in _PLAN:
        for item in fact.stream(view):
            at = item.at_us
            dims_at = at if item.dims_at_us is None else item.dims_at_us
            values = [(dim, read(view, dims_at)) for dim, read in readers]
            for label, size in sizes:
                start = at - at % size
                for dim, value in values:
                    if value is None:
                        continue
                    key = (label, start, dim, value)
                    row = out.get(key)
                    if row is None:
                        row = out[key] = RowContribution()
                    vector = row.vector
                    for index, agg in measures:
                        if agg is Agg.COUNT:
                            vector[index] += 1
                        elif agg is Agg.SUM:
                            vector[index] += item.value
                        elif agg is Agg.SUMSQ:
                            vector[index] += item.value * item.value
                        else:  # DISTINCT: the order counts once per row
                            vector[index] = 1
                    if slot >= 0:
                        row.values[slot].append(item.value)
    return out


def diff_contributions(old: Contribution, new: Contribution) -> Delta:
    """``new - old`` per window row, omitting rows that did not change."""
    delta: Delta = {}
    for key, row in new.items():
        before = old.get(key)
        if before is not None and before == row:
            continue
        change = RowDelta()
        if before is None:
            change.vector = list(row.vector)
            change.added = [list(v) for v in row.values]
        else:
            change.vector = [a - b for a, b in zip(row.vector, before.vector, strict=True)]
            change.added = [list(v) for v in row.values]
            change.removed = [list(v) for v in before.values]
        delta[key] = change
    for key, before in old.items():
        if key not in new:
            change = RowDelta()
            change.vector = [-b for b in before.vector]
            change.removed = [list(v) for v in before.values]
            delta[key] = change
    return delta


def merge_delta(into: Delta, delta: Delta) -> None:
    """Accumulate ``delta`` into ``into`` (deltas of several orders)."""
    for key, change in delta.items():
        current = into.get(key)
        if current is None:
            into[key] = change
            continue
        current.vector = [a + b for a, b in zip(current.vector, change.vector, strict=True)]
        for slot in range(len(VALUE_FACTS)):
            current.added[slot].extend(change.added[slot])
            current.removed[slot].extend(change.removed[slot])
