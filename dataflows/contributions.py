"""One order's contribution to every window row, derived from its view.

Each :class:`~dataflows.metrics.Fact` of an order lands in the window of every
configured size that contains its time, once per enabled dimension whose value
is known at that time.  Window totals are sums of these per-order
contributions, so when an order's view changes the stream emits ``new - old``
and never needs to replay history.
"""

from __future__ import annotations

from collections import Counter

from dataflows.dimensions import DIMENSION_READERS
from dataflows.lifecycle import OrderView
from dataflows.metrics import FACTS, MEASURES, Agg
from dataflows.settings import HealthSettings

__all__ = [
    "VALUE_FACTS",
    "Contribution",
    "Delta",
    "Item",
    "RowContribution",
    "RowDelta",
    "WindowKey",
    "add_item_changes",
    "drop_unchanged",
    "order_contribution",
    "order_items",
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
#: Facts whose measures are DISTINCT (counted once per order and row).
_DISTINCT_FACTS = frozenset(
    i
    for i, (_fact, measures, _slot) in enumerate(_PLAN)
    if any(a is Agg.DISTINCT for _, a in measures)
)
if any(
    any(a is Agg.DISTINCT for _, a in m) and not all(a is Agg.DISTINCT for _, a in m)
    for _f, m, _s in _PLAN
):
    raise ValueError("a fact's measures must be all DISTINCT or none (dataflows.metrics.FACTS)")


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
    """A change to one window row: measure differences and kept values in/out.

    ``added``/``removed`` are None until a kept value moves: most rows of a
    change carry none, and allocating empty lists for them was a tenth of
    the flow's time.
    """

    __slots__ = ("added", "removed", "vector")

    def __init__(
        self,
        vector: list[int] | None = None,
        added: list[list[int]] | None = None,
        removed: list[list[int]] | None = None,
    ) -> None:
        self.vector = [0] * _WIDTH if vector is None else vector
        self.added = added
        self.removed = removed

    def values_in(self, slot: int) -> list[int]:
        if self.added is None:
            self.added = _no_values()
        return self.added[slot]

    def values_out(self, slot: int) -> list[int]:
        if self.removed is None:
            self.removed = _no_values()
        return self.removed[slot]

    def __getstate__(
        self,
    ) -> tuple[list[int], list[list[int]] | None, list[list[int]] | None]:
        return (self.vector, self.added, self.removed)

    def __setstate__(
        self, state: tuple[list[int], list[list[int]] | None, list[list[int]] | None]
    ) -> None:
        self.vector, self.added, self.removed = state


def _no_values() -> list[list[int]]:
    return [[] for _ in VALUE_FACTS]


Contribution = dict[WindowKey, RowContribution]
Delta = dict[WindowKey, RowDelta]


def order_contribution(view: OrderView, settings: HealthSettings) -> Contribution:
    """The order's contribution to every window row it touches (the reference).

    The stream does not use this: it applies :func:`add_item_changes` to the
    facts that changed.  Tests hold the two equal.
    """
    dims = settings.dimensions
    sizes = settings.window_sizes
    out: Contribution = {}
    for fact_index, at, values, value in order_items(view, settings):
        _fact, measures, slot = _PLAN[fact_index]
        for label, size in sizes:
            start = at - at % size
            for dim, dim_value in zip(dims, values, strict=True):
                if dim_value is None:
                    continue
                key = (label, start, dim, dim_value)
                row = out.get(key)
                if row is None:
                    row = out[key] = RowContribution()
                vector = row.vector
                for index, agg in measures:
                    if agg is Agg.COUNT:
                        vector[index] += 1
                    elif agg is Agg.SUM:
                        vector[index] += value
                    elif agg is Agg.SUMSQ:
                        vector[index] += value * value
                    else:  # DISTINCT: the order counts once per row
                        vector[index] = 1
                if slot >= 0:
                    row.values[slot].append(value)
    return out


#: One fact of an order with its dimension values resolved:
#: (fact index in FACTS, event time us, dimension values in settings order, value).
Item = tuple[int, int, tuple[str | None, ...], int]


def order_items(view: OrderView, settings: HealthSettings) -> tuple[Item, ...]:
    """Every fact of the order, with the dimension values in effect at its moment.

    The compact form of an order's contribution: the window rows follow from
    it by expanding each item over window sizes and dimensions, so the hot
    state keeps these (a few hundred bytes) instead of the expanded rows.
    """
    readers = [DIMENSION_READERS[dim] for dim in settings.dimensions]
    out: list[Item] = []
    for fact_index, (fact, _measures, _slot) in enumerate(_PLAN):
        for item in fact.stream(view):
            at = item.at_us
            dims_at = at if item.dims_at_us is None else item.dims_at_us
            values = tuple([read(view, dims_at) for read in readers])
            out.append((fact_index, at, values, item.value))
    return tuple(out)


def add_item_changes(
    old: tuple[Item, ...], new: tuple[Item, ...], settings: HealthSettings, into: Delta
) -> None:
    """Add ``new - old`` of one order to the window deltas ``into``.

    Only facts that changed are expanded into window rows, so an event that
    adds one fact costs one fact's rows, not the order's whole contribution.
    COUNT, SUM and SUMSQ are additive per fact; a DISTINCT measure counts the
    order once per row, so for its windows the rows the order touches are
    compared before and after instead.
    """
    if old == new:
        return
    before = Counter(old)
    after = Counter(new)
    added = after - before
    removed = before - after
    distinct_windows: dict[int, set[tuple[str, int]]] = {}
    for items, sign in ((added, 1), (removed, -1)):
        for item, count in items.items():
            fact_index = item[0]
            if fact_index in _DISTINCT_FACTS:
                windows = distinct_windows.setdefault(fact_index, set())
                at = item[1]
                windows.update((label, at - at % size) for label, size in settings.window_sizes)
            else:
                _expand(item, sign * count, settings, into)
    for fact_index, windows in distinct_windows.items():
        _distinct_changes(fact_index, old, new, windows, settings, into)


def _row_delta(into: Delta, key: WindowKey) -> RowDelta:
    change = into.get(key)
    if change is None:
        change = into[key] = RowDelta()
    return change


def _expand(item: Item, sign: int, settings: HealthSettings, into: Delta) -> None:
    fact_index, at, values, value = item
    _fact, measures, slot = _PLAN[fact_index]
    dims = settings.dimensions
    amounts = []
    for index, agg in measures:
        if agg is Agg.COUNT:
            amounts.append((index, sign))
        elif agg is Agg.SUM:
            amounts.append((index, sign * value))
        else:  # SUMSQ
            amounts.append((index, sign * value * value))
    for label, size in settings.window_sizes:
        start = at - at % size
        for dim, dim_value in zip(dims, values, strict=True):
            if dim_value is None:
                continue
            key = (label, start, dim, dim_value)
            change = into.get(key)
            if change is None:
                change = into[key] = RowDelta()
            vector = change.vector
            for index, amount in amounts:
                vector[index] += amount
            if slot >= 0:
                if sign > 0:
                    change.values_in(slot).extend([value] * sign)
                else:
                    change.values_out(slot).extend([value] * -sign)


def _distinct_cells(
    fact_index: int,
    items: tuple[Item, ...],
    windows: set[tuple[str, int]],
    settings: HealthSettings,
) -> set[tuple[str, int, tuple[str | None, ...]]]:
    """(size, start, dimension values) within ``windows`` where the order has the DISTINCT fact.

    The order's facts of one window nearly always share their dimension
    values, so these cells are few; the rows follow from them.
    """
    cells: set[tuple[str, int, tuple[str | None, ...]]] = set()
    sizes = settings.window_sizes
    for index, at, values, _value in items:
        if index != fact_index:
            continue
        for label, size in sizes:
            start = at - at % size
            if (label, start) in windows:
                cells.add((label, start, values))
    return cells


def _distinct_rows(
    cells: set[tuple[str, int, tuple[str | None, ...]]], settings: HealthSettings
) -> set[WindowKey]:
    """The window rows the cells touch (one per known dimension value)."""
    dims = settings.dimensions
    return {
        (label, start, dim, dim_value)
        for label, start, values in cells
        for dim, dim_value in zip(dims, values, strict=True)
        if dim_value is not None
    }


def _distinct_changes(
    fact_index: int,
    old: tuple[Item, ...],
    new: tuple[Item, ...],
    windows: set[tuple[str, int]],
    settings: HealthSettings,
    into: Delta,
) -> None:
    cells_before = _distinct_cells(fact_index, old, windows, settings)
    cells_after = _distinct_cells(fact_index, new, windows, settings)
    if cells_before == cells_after:
        return  # e.g. another event in a window the order was already active in
    before = _distinct_rows(cells_before, settings)
    after = _distinct_rows(cells_after, settings)
    measures = _PLAN[fact_index][1]
    for rows, sign in ((after - before, 1), (before - after, -1)):
        for key in rows:
            vector = _row_delta(into, key).vector
            for index, _agg in measures:
                vector[index] += sign


def drop_unchanged(delta: Delta) -> None:
    """Remove rows whose changes cancel out (an order's fact moved within a window)."""
    for key in [k for k, c in delta.items() if not any(c.vector)]:
        change = delta[key]
        added = change.added or _no_values()
        removed = change.removed or _no_values()
        if all(sorted(a) == sorted(r) for a, r in zip(added, removed, strict=True)):
            del delta[key]
