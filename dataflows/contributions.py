"""One order's contribution to every window row, derived from its view.

Each :class:`~dataflows.metrics.Fact` of an order lands in the window of every
configured size that contains its time, once per enabled dimension whose value
is known at that time.  Window totals are sums of these per-order
contributions, so when an order's view changes the stream emits ``new - old``
and never needs to replay history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Protocol

from dataflows.dimensions import moment_reader
from dataflows.lifecycle import OrderView
from dataflows.metrics import FACTS, MEASURES, Agg
from dataflows.settings import HealthSettings

__all__ = [
    "VALUE_FACTS",
    "Contribution",
    "Delta",
    "Item",
    "NativeItems",
    "OrderItems",
    "RowContribution",
    "WindowDelta",
    "WindowKey",
    "add_item_changes",
    "as_tuples",
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


#: One fact of an order with its dimension values resolved:
#: (fact index in FACTS, event time us, dimension values in settings order, value).
Item = tuple[int, int, tuple[str | None, ...], int]


class NativeItems(Protocol):
    """``orderhealth_native.Items``: an order's items kept in Rust (``Facts.items``)."""

    def as_tuples(self) -> tuple[Item, ...]: ...

    def __len__(self) -> int: ...


#: An order's items as a window delta takes them.
OrderItems = tuple[Item, ...] | NativeItems


def as_tuples(items: OrderItems) -> tuple[Item, ...]:
    """The items as Python tuples, whichever core made them."""
    return items if isinstance(items, tuple) else items.as_tuples()


class WindowDelta(Protocol):
    """What the stream needs of a set of window-row changes.

    Two implementations: :class:`Delta` here (the reference) and
    ``orderhealth_native.Delta`` (``native/``), which tests hold equal to it.
    """

    @property
    def vectors(self) -> Mapping[WindowKey, list[int]]: ...

    @property
    def kept(self) -> Mapping[WindowKey, list[tuple[int, int, int]]]: ...

    def apply(self, old: OrderItems, new: OrderItems) -> None: ...

    def drop_unchanged(self) -> None: ...


class Delta:
    """Changes to window rows: measure differences, and kept values in and out.

    Plain lists per row rather than an object per row: a batch touches tens of
    thousands of rows, and constructing a change object for each was a tenth
    of the per-partition time.  Kept values (for percentiles) are rare -- one
    fact keeps them -- so they live apart, only for the rows they move in.
    """

    __slots__ = ("_settings", "kept", "vectors")

    def __init__(self, settings: HealthSettings | None = None) -> None:
        #: Only needed to expand facts; an unpickled Delta is read, not added to.
        self._settings = settings
        #: Row -> measure differences, in MEASURES order.
        self.vectors: dict[WindowKey, list[int]] = {}
        #: Row -> kept-value changes: (slot in VALUE_FACTS, value, +count or -count).
        self.kept: dict[WindowKey, list[tuple[int, int, int]]] = {}

    def vector(self, key: WindowKey) -> list[int]:
        vector = self.vectors.get(key)
        if vector is None:
            vector = self.vectors[key] = [0] * _WIDTH
        return vector

    def apply(self, old: OrderItems, new: OrderItems) -> None:
        """Add the row changes of one order's items from ``old`` to ``new``."""
        add_item_changes(as_tuples(old), as_tuples(new), self)

    def expand(self, item: Item, sign: int) -> None:
        """Add ``sign`` times one (non-DISTINCT) fact to every row it lands in."""
        if self._settings is None:
            raise ValueError("this Delta has no settings to expand facts with")
        _expand(item, sign, self._settings, self)

    def distinct(
        self, fact_index: int, old: tuple[Item, ...], new: tuple[Item, ...], changed: list[Item]
    ) -> None:
        """Add the row changes of one DISTINCT fact in the windows of its ``changed`` items.

        A DISTINCT measure counts the order once per row, so it is not
        additive per fact: the rows the order has the fact in are compared
        before and after instead (:func:`_distinct_changes`).
        """
        if self._settings is None:
            raise ValueError("this Delta has no settings to expand facts with")
        sizes = self._settings.window_sizes
        windows = {(label, at - at % size) for _f, at, _v, _x in changed for label, size in sizes}
        _distinct_changes(fact_index, old, new, windows, self._settings, self)

    def drop_unchanged(self) -> None:
        """Remove rows whose changes cancel out (an order's fact moved within a window)."""
        for key in [k for k, v in self.vectors.items() if not any(v)]:
            moves = Counter[tuple[int, int]]()
            for slot, value, count in self.kept.get(key, ()):
                moves[(slot, value)] += count
            if not any(moves.values()):
                del self.vectors[key]
                self.kept.pop(key, None)

    def __getstate__(
        self,
    ) -> tuple[dict[WindowKey, list[int]], dict[WindowKey, list[tuple[int, int, int]]]]:
        return (self.vectors, self.kept)

    def __setstate__(
        self,
        state: tuple[dict[WindowKey, list[int]], dict[WindowKey, list[tuple[int, int, int]]]],
    ) -> None:
        self._settings = None
        self.vectors, self.kept = state


Contribution = dict[WindowKey, RowContribution]


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


def order_items(
    view: OrderView, settings: HealthSettings, facts: Sequence[int] | None = None
) -> tuple[Item, ...]:
    """Every fact of the order, with the dimension values in effect at its moment.

    The compact form of an order's contribution: the window rows follow from
    it by expanding each item over window sizes and dimensions, so the hot
    state keeps these (a few hundred bytes) instead of the expanded rows.
    Most facts of an order fall on a few moments (its events), so the
    dimension values are read once per moment and the tuple is shared.
    ``facts``: only these fact indexes, ascending (the native core evaluates
    the others: ``dataflows.native_facts.items_maker``).
    """
    read_at = moment_reader(settings.dimensions, view)
    out: list[Item] = []
    at_moment: dict[int, tuple[str | None, ...]] = {}
    for fact_index in range(len(_PLAN)) if facts is None else facts:
        fact = _PLAN[fact_index][0]
        for item in fact.stream(view):
            at = item.at_us
            dims_at = at if item.dims_at_us is None else item.dims_at_us
            values = at_moment.get(dims_at)
            if values is None:
                values = at_moment[dims_at] = read_at(dims_at)
            out.append((fact_index, at, values, item.value))
    return tuple(out)


def add_item_changes(old: tuple[Item, ...], new: tuple[Item, ...], into: Delta) -> None:
    """Add ``new - old`` of one order to the window deltas ``into``.

    Only facts that changed are expanded into window rows, so an event that
    adds one fact costs one fact's rows, not the order's whole contribution.
    COUNT, SUM and SUMSQ are additive per fact; a DISTINCT measure counts the
    order once per row, so for its windows the rows the order touches are
    compared before and after instead.
    """
    if old == new:
        return
    changes: Iterable[tuple[Item, int]]
    if not old:
        # An order's first facts (a third of the calls): all added.  A
        # repeated item expanded twice counts as its count of two, so no set
        # of the items is built (hashing them was half the cost of a call).
        changes = ((item, 1) for item in new)
    else:
        added, removed = _multiset_changes(old, new)
        changes = chain(added.items(), ((item, -count) for item, count in removed.items()))
    distinct: dict[int, list[Item]] = {}
    for item, count in changes:
        if item[0] in _DISTINCT_FACTS:
            distinct.setdefault(item[0], []).append(item)
        else:
            into.expand(item, count)
    for fact_index, changed in distinct.items():
        into.distinct(fact_index, old, new, changed)


def _multiset_changes(
    old: tuple[Item, ...], new: tuple[Item, ...]
) -> tuple[Mapping[Item, int], Mapping[Item, int]]:
    """Items added and removed (with multiplicity) between ``old`` and ``new``.

    An order's items are nearly always distinct, and set differences run in C;
    ``Counter`` subtraction, for the rare repeated item, was 3% of the flow.
    """
    before, after = set(old), set(new)
    if len(before) == len(old) and len(after) == len(new):
        return dict.fromkeys(after - before, 1), dict.fromkeys(before - after, 1)
    counted_before, counted_after = Counter(old), Counter(new)
    return counted_after - counted_before, counted_before - counted_after


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
    vectors = into.vectors
    for label, size in settings.window_sizes:
        start = at - at % size
        for dim, dim_value in zip(dims, values, strict=True):
            if dim_value is None:
                continue
            key = (label, start, dim, dim_value)
            vector = vectors.get(key)
            if vector is None:
                vector = vectors[key] = [0] * _WIDTH
            for index, amount in amounts:
                vector[index] += amount
            if slot >= 0:
                into.kept.setdefault(key, []).append((slot, value, sign))


#: The dimension-value tuples of an order's DISTINCT-fact items, per window.
_Cells = dict[tuple[str, int], set[tuple[str | None, ...]]]


def _distinct_cells(
    fact_index: int,
    items: tuple[Item, ...],
    windows: set[tuple[str, int]],
    settings: HealthSettings,
) -> _Cells:
    """Per window of ``windows``: the dimension values under which the order has the fact.

    An order's facts in one window nearly always share their dimension
    values, so a window holds one or two tuples; its rows follow from them.
    """
    cells: _Cells = {}
    sizes = settings.window_sizes
    for index, at, values, _value in items:
        if index != fact_index:
            continue
        for label, size in sizes:
            window = (label, at - at % size)
            if window in windows:
                cells.setdefault(window, set()).add(values)
    return cells


def _distinct_rows(
    window: tuple[str, int], cells: set[tuple[str | None, ...]], settings: HealthSettings
) -> set[WindowKey]:
    """The rows of ``window`` under those dimension values (one per known value)."""
    label, start = window
    dims = settings.dimensions
    return {
        (label, start, dim, dim_value)
        for values in cells
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
    indexes = [index for index, _agg in _PLAN[fact_index][1]]
    no_cells: set[tuple[str | None, ...]] = set()
    for window in windows:
        was = cells_before.get(window, no_cells)
        now = cells_after.get(window, no_cells)
        if was == now:
            continue  # e.g. another event in an hour the order was already active in
        before = _distinct_rows(window, was, settings)
        after = _distinct_rows(window, now, settings)
        for rows, sign in ((after - before, 1), (before - after, -1)):
            for key in rows:
                vector = into.vector(key)
                for index in indexes:
                    vector[index] += sign
