"""Component formulas that evaluate one window row, or a whole epoch's rows at once.

A formula is declared once (``Ratio("orders_on_time", "orders_resolved")``)
and knows two ways to evaluate it:

* ``formula(totals)``: one row (:class:`~dataflows.metrics.WindowTotals`),
  exact Python arithmetic.  The batch reference
  (:mod:`dataflows.batch_metrics`) uses it, and it is the definition;
* ``formula.columns(totals)``: every changed row of an epoch at once
  (:class:`ColumnTotals`), NumPy over float64.  The streaming window step
  uses it: one Python call per component and epoch instead of one per row
  was most of the window step's cost (``python -m bench.core``).

The two give the same floats, not merely close ones: Python divides two ints
below 2**53 as two doubles, which is what NumPy does; a column holding a
larger value (``columns`` returns None) is evaluated row by row instead.  A
plain callable (a plugin's own formula) is always evaluated row by row.
``tests/unit/test_formulas.py`` checks the equality on random totals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, cast, overload, runtime_checkable

import numpy as np

from dataflows.timeutil import US_PER_HOUR

if TYPE_CHECKING:
    from dataflows.metrics import WindowTotals

__all__ = [
    "ColumnFormula",
    "ColumnTotals",
    "CycleCV",
    "KeptValues",
    "LateOpen",
    "MeanHours",
    "Percentile",
    "Ratio",
    "WideInts",
    "nearest_rank",
    "python_ints",
]

#: Ints of at most this magnitude convert to float64 exactly.
_EXACT = 2**53
FloatColumn = np.ndarray
#: A column of exact integers: Python ints, or int64 (the native store's).
IntValues = Sequence[int] | np.ndarray


class WideInts(Sequence[int]):
    """A measure column beyond int64, as the native store hands it: 128-bit values.

    ``buffer`` holds each row's value as 16-byte little-endian two's
    complement -- a ``decimal128(38, 0)`` Arrow buffer as it is, which the
    staging table takes unconverted.  A formula reads a row's exact int only
    where it needs one: the store built a Python int for every row of every
    hand-out (a sum of squares is beyond int64 in nearly every hand-out),
    ~2% of the window step, for the tenth of the rows a coefficient of
    variation reads.
    """

    __slots__ = ("_view",)

    def __init__(self, buffer: bytes) -> None:
        if len(buffer) % 16:
            raise ValueError("128-bit values: the buffer's length is a multiple of 16")
        self._view = memoryview(buffer)

    def __len__(self) -> int:
        return len(self._view) // 16

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return self.take(range(*index.indices(len(self))))
        return self.take((index + len(self) if index < 0 else index,))[0]

    def take(self, rows: Sequence[int]) -> list[int]:
        """The exact ints of ``rows``."""
        if rows and (min(rows) < 0 or max(rows) >= len(self)):
            raise IndexError("row out of range")
        view = self._view
        return [int.from_bytes(view[16 * i : 16 * i + 16], "little", signed=True) for i in rows]

    def __iter__(self) -> Iterator[int]:
        return iter(self.take(range(len(self))))


class KeptValues(Sequence[list[int] | None]):
    """A kept fact's values of every row, ascending, in three flat NumPy columns.

    The native store hands a slot out this way: row ``i`` holds
    ``flat[ends[i - 1]:ends[i]]``, or None where ``present[i]`` is False
    (the window never kept a value).  As a sequence it reads like the
    Python store's list of lists; :meth:`nearest_rank` picks a quantile of
    every row at once, without a Python int per value.
    """

    def __init__(self, flat: np.ndarray, ends: np.ndarray, present: np.ndarray) -> None:
        if len(ends) != len(present) or (len(ends) and int(ends[-1]) != len(flat)):
            raise ValueError("kept values: ends and present must cover the flat values")
        self.flat = flat
        self.ends = ends
        self.present = present
        self.starts = np.concatenate(([0], ends[:-1])) if len(ends) else ends

    @classmethod
    def from_bytes(cls, flat: bytes, ends: bytes, present: bytes) -> KeptValues:
        """From the native store: int64 little-endian values and ends, one byte per row."""
        return cls(
            np.frombuffer(flat, dtype="<i8"),
            np.frombuffer(ends, dtype="<i8"),
            np.frombuffer(present, dtype=np.bool_),
        )

    def __len__(self) -> int:
        return len(self.ends)

    @overload
    def __getitem__(self, index: int) -> list[int] | None: ...

    @overload
    def __getitem__(self, index: slice) -> list[list[int] | None]: ...

    def __getitem__(self, index: int | slice) -> list[int] | list[list[int] | None] | None:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not self.present[index]:
            return None
        values: list[int] = self.flat[self.starts[index] : self.ends[index]].tolist()
        return values

    def __iter__(self) -> Iterator[list[int] | None]:
        return (self[i] for i in range(len(self)))

    def nearest_rank(self, q: float) -> FloatColumn | None:
        """:func:`nearest_rank` of every row as float64 (NaN where empty).

        None unless every picked value converts to float64 exactly.  The rank
        is computed with the same double operations as the scalar function
        (``q * n``, then the ceiling), so it picks the same value.
        """
        counts = self.ends - self.starts
        rows = np.flatnonzero(counts)
        out = _empty(len(self))
        if not rows.size:
            return out
        ranks = np.maximum(np.ceil(q * counts[rows].astype(np.float64)), 1).astype(np.int64) - 1
        picked = self.flat[self.starts[rows] + ranks]
        if _too_large(picked):
            return None
        out[rows] = picked
        return out


class ColumnTotals:
    """An epoch's changed window rows as columns: what :meth:`ColumnFormula.columns` sees."""

    def __init__(
        self,
        measures: Mapping[str, IntValues],
        values: Mapping[str, Sequence[Sequence[int] | None]],
        late_open: IntValues,
    ) -> None:
        #: Measure -> one exact int per row: Python ints, or int64 (the
        #: native store's columns when every value fits).
        self.measures = measures
        #: Fact with ``keep_values`` -> per row its values (ascending), or None.
        self.values = values
        #: Per row, the running late-open total.
        self.late_open = late_open
        self.size = len(late_open)
        self._ints: dict[str, np.ndarray | None] = {}
        self._nonempty: dict[str, list[tuple[int, Sequence[int]]]] = {}

    def exact(self, measure: str) -> Sequence[int]:
        """The measure as Python ints: what a formula evaluated row by row sees."""
        return python_ints(self.measures[measure])

    def exact_at(self, measure: str, rows: np.ndarray) -> list[int]:
        """The measure's Python ints at ``rows`` only (a formula that needs a few)."""
        column = self.measures[measure]
        if isinstance(column, np.ndarray):
            return cast(list[int], column[rows].tolist())
        if isinstance(column, WideInts):
            return column.take(rows.tolist())
        return [column[i] for i in rows.tolist()]

    def ints(self, measure: str) -> np.ndarray | None:
        """The measure as int64, or None unless every value is below 2**53 in magnitude.

        Such ints, and sums of a few of them, convert to float64 exactly.
        """
        if measure not in self._ints:
            self._ints[measure] = _small_ints(self.measures[measure])
        return self._ints[measure]

    def nonempty(self, fact: str) -> list[tuple[int, Sequence[int]]]:
        """(row, values) of the rows holding values of the fact."""
        if fact not in self._nonempty:
            kept = self.values.get(fact, ())
            self._nonempty[fact] = [(i, v) for i, v in enumerate(kept) if v]
        return self._nonempty[fact]

    def floats(self, *measures: str) -> FloatColumn | None:
        """The sum of the measures as float64, or None unless it converts exactly."""
        parts = [p for p in map(self.ints, measures) if p is not None]
        if len(parts) < len(measures):
            return None
        total = parts[0] if len(parts) == 1 else np.sum(parts, axis=0)
        if len(parts) > 1 and _too_large(total):
            return None
        return np.asarray(total, dtype=np.float64)


def _too_large(ints: np.ndarray) -> bool:
    return bool(ints.size) and int(np.abs(ints).max()) >= _EXACT


def python_ints(column: IntValues) -> Sequence[int]:
    """Exact Python ints: int64 would overflow or divide differently in a plugin formula."""
    return column.tolist() if isinstance(column, np.ndarray) else column


def _small_ints(values: IntValues) -> np.ndarray | None:
    if isinstance(values, WideInts):
        return None  # a value is beyond int64 (why the store made it wide)
    try:
        ints = np.array(values, dtype=np.int64)
    except OverflowError:
        return None
    return None if _too_large(ints) else ints


def _empty(size: int) -> FloatColumn:
    """A column of "no data" (NaN; written as null)."""
    return np.full(size, np.nan)


@runtime_checkable
class ColumnFormula(Protocol):
    """A formula with a column form (see the module docstring)."""

    def __call__(self, totals: WindowTotals) -> float | None: ...

    def columns(self, totals: ColumnTotals) -> FloatColumn | None:
        """Every row's value (NaN where None); None to be evaluated row by row."""
        ...


class Ratio:
    """``numerator / (sum of denominator measures)``; None where that sum is 0."""

    def __init__(self, numerator: str, *denominator: str) -> None:
        self.numerator = numerator
        self.denominator = denominator

    def __call__(self, totals: WindowTotals) -> float | None:
        den = sum(totals.measures[d] for d in self.denominator)
        return totals.measures[self.numerator] / den if den else None

    def columns(self, totals: ColumnTotals) -> FloatColumn | None:
        num, den = totals.floats(self.numerator), totals.floats(*self.denominator)
        if num is None or den is None:
            return None
        out = _empty(totals.size)
        np.divide(num, den, out=out, where=den != 0)
        return out


class MeanHours:
    """``total / count`` in hours (durations are microseconds); None where count is 0."""

    def __init__(self, total: str, count: str) -> None:
        self.total = total
        self.count = count

    def __call__(self, totals: WindowTotals) -> float | None:
        n = totals.measures[self.count]
        return totals.measures[self.total] / n / US_PER_HOUR if n else None

    def columns(self, totals: ColumnTotals) -> FloatColumn | None:
        total, n = totals.floats(self.total), totals.floats(self.count)
        if total is None or n is None:
            return None
        out = _empty(totals.size)
        np.divide(total, n, out=out, where=n != 0)
        out /= float(US_PER_HOUR)  # NaN stays NaN
        return out


def nearest_rank(values: Sequence[int] | Sequence[float], q: float) -> int | float | None:
    """The q-quantile of ascending ``values`` by the nearest-rank method (None if empty).

    Nearest rank returns an observed value, so a bank re-deriving a percentile
    from the order-level evidence gets exactly the published figure.
    """
    if not values:
        return None
    return values[max(math.ceil(q * len(values)), 1) - 1]


class Percentile:
    """The q-quantile (nearest rank) of a kept fact's values, in hours."""

    def __init__(self, fact: str, q: float) -> None:
        self.fact = fact
        self.q = q

    def _of(self, values: Sequence[int] | None) -> float | None:
        value = nearest_rank(values or (), self.q)
        return None if value is None else value / US_PER_HOUR

    def __call__(self, totals: WindowTotals) -> float | None:
        return self._of(totals.values.get(self.fact))

    def columns(self, totals: ColumnTotals) -> FloatColumn | None:
        kept = totals.values.get(self.fact)
        if isinstance(kept, KeptValues):
            picked = kept.nearest_rank(self.q)
            if picked is not None:
                # Each picked int converts exactly, so this is int / int.
                return picked / float(US_PER_HOUR)
        out = _empty(totals.size)
        for i, values in totals.nonempty(self.fact):
            out[i] = self._of(values)
        return out


class CycleCV:
    """Population coefficient of variation from a count, sum and sum of squares."""

    def __init__(self, count: str, total: str, squares: str) -> None:
        self.count, self.total, self.squares = count, total, squares

    @staticmethod
    def _of(n: int, total: int, squares: int) -> float | None:
        if n < 2 or total <= 0:
            return None
        # sqrt(n*sumsq - sum^2) / sum, with exact integers under the root.
        return math.sqrt(max(n * squares - total * total, 0)) / total

    def __call__(self, totals: WindowTotals) -> float | None:
        m = totals.measures
        return self._of(m[self.count], m[self.total], m[self.squares])

    def columns(self, totals: ColumnTotals) -> FloatColumn | None:
        # The sums of squares exceed 64 bits: exact Python ints (int() of an
        # int64), row by row, but without a WindowTotals per row.
        m = totals.measures
        n, total = totals.ints(self.count), totals.ints(self.total)
        out = _empty(totals.size)
        if n is None or total is None:
            for i in range(totals.size):
                value = self._of(
                    int(m[self.count][i]), int(m[self.total][i]), int(m[self.squares][i])
                )
                if value is not None:
                    out[i] = value
            return out
        # Only rows with a value, their ints read in bulk.
        rows = np.flatnonzero((n >= 2) & (total > 0))
        for i, count, sum_, squares in zip(
            rows.tolist(),
            n[rows].tolist(),
            total[rows].tolist(),
            totals.exact_at(self.squares, rows),
            strict=True,
        ):
            value = self._of(count, sum_, squares)
            if value is not None:
                out[i] = value
        return out


class LateOpen:
    """The running late-open total of the row, as a float."""

    def __call__(self, totals: WindowTotals) -> float | None:
        return float(totals.late_open)

    def columns(self, totals: ColumnTotals) -> FloatColumn | None:
        return np.array(totals.late_open, dtype=np.float64)


def columns_of(
    formula: Callable[[WindowTotals], float | None],
    totals: ColumnTotals,
    rows: Callable[[], Sequence[WindowTotals]],
) -> FloatColumn:
    """Every row's value of ``formula`` (NaN where None): by column if it can, else by row."""
    if isinstance(formula, ColumnFormula):
        out = formula.columns(totals)
        if out is not None:
            return out
    return np.array([formula(row) for row in rows()], dtype=np.float64)
