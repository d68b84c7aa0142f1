"""Column-at-a-time components and health index == row by row, float for float."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.formulas import (
    ColumnTotals,
    KeptValues,
    Percentile,
    Ratio,
    WideInts,
    columns_of,
)
from dataflows.metrics import (
    MEASURES,
    WindowTotals,
    compute_component_columns,
    compute_components,
)
from dataflows.settings import HealthSettings
from dataflows.window_metrics import health_index, health_index_columns, int_column

VALUE_FACT = "deviation"
#: One window row: measure totals, kept values or None, running late-open total.
_Row = tuple[list[int], list[int] | None, int]

#: Small counts (zero denominators are common) and microsecond sums: the
#: column forms apply.
_small = st.one_of(st.integers(0, 5), st.integers(-(10**12), 10**13))
#: Now and then a value past 2**53 or 2**63, which must fall back to exact Python.
_any = st.one_of(_small, st.integers(2**53 - 2, 2**53 + 2), st.integers(2**63, 2**70))
#: Kept values: microsecond deviations, and with ``_any`` now and then one
#: that float64 cannot hold exactly (a percentile of it falls back to Python).
_deviation = st.integers(-(10**11), 10**11)
_any_deviation = st.one_of(_deviation, st.integers(2**53 - 2, 2**53 + 2))


def _rows(
    measure: st.SearchStrategy[int], kept: st.SearchStrategy[int] = _deviation
) -> st.SearchStrategy[list[_Row]]:
    row = st.tuples(
        st.lists(measure, min_size=len(MEASURES), max_size=len(MEASURES)),
        st.one_of(st.none(), st.lists(kept, max_size=6).map(sorted)),
        st.integers(-3, 10**6),
    )
    return st.lists(row, min_size=1, max_size=12)


def kept_values(rows: list[list[int] | None]) -> KeptValues:
    """Kept values as the native store hands them out (flat int64 columns)."""
    flat = [v for values in rows if values for v in values]
    ends = np.cumsum([len(values or ()) for values in rows], dtype=np.int64)
    present = [values is not None for values in rows]
    return KeptValues.from_bytes(
        np.array(flat, dtype="<i8").tobytes(),
        np.asarray(ends, dtype="<i8").tobytes(),
        np.array(present, dtype=np.bool_).tobytes(),
    )


def _same(column: float, row: float | None) -> bool:
    if row is None:
        return math.isnan(column)
    return column == row


def _column_totals(rows: list[_Row], *, native: bool = False) -> ColumnTotals:
    """The rows as the window step sees them; ``native``: the native store's int64 columns."""

    def column(values: list[int]) -> list[int] | np.ndarray:
        if native and all(-(2**63) <= v < 2**63 for v in values):
            return int_column(np.array(values, dtype="<i8").tobytes())
        return values

    kept = [r[1] for r in rows]
    return ColumnTotals(
        {m: column([r[0][i] for r in rows]) for i, m in enumerate(MEASURES)},
        {VALUE_FACT: kept_values(kept) if native else kept},
        column([r[2] for r in rows]),
    )


def _row_totals(row: _Row) -> WindowTotals:
    vector, values, late_open = row
    return WindowTotals(
        measures=dict(zip(MEASURES, vector, strict=True)),
        values={} if values is None else {VALUE_FACT: values},
        late_open=late_open,
    )


@settings(max_examples=300, deadline=None)
@given(_rows(_small))
def test_columns_equal_rows(rows: list[_Row]) -> None:
    _check(rows)


@settings(max_examples=200, deadline=None)
@given(_rows(_any))
def test_columns_equal_rows_with_sums_too_large_for_floats(rows: list[_Row]) -> None:
    _check(rows)


@settings(max_examples=200, deadline=None)
@given(_rows(_any, _any_deviation))
def test_columns_equal_rows_on_the_native_stores_int64_columns(rows: list[_Row]) -> None:
    """int64 sums past 2**53 (and squares past 2**63) must still be exact Python."""
    _check(rows, native=True)


def _check(rows: list[_Row], *, native: bool = False) -> None:
    health = HealthSettings.load()
    by_column = compute_component_columns(_column_totals(rows, native=native))
    index, used_column = health_index_columns(by_column, health)
    used = used_column.to_pylist()
    for i, row in enumerate(rows):
        by_row = compute_components(_row_totals(row))
        assert list(by_row) == list(by_column)
        for name, value in by_row.items():
            assert _same(by_column[name][i], value), (name, by_column[name][i], value)
        expected_index, expected_used = health_index(by_row, health)
        assert _same(index[i], expected_index)
        assert used[i] == expected_used


def test_a_plain_callable_is_evaluated_row_by_row() -> None:
    totals = ColumnTotals({"a": [1, 2], "b": [2, 0]}, {}, [0, 0])
    rows = [WindowTotals({"a": 1, "b": 2}, {}, 0), WindowTotals({"a": 2, "b": 0}, {}, 0)]

    def plain(w: WindowTotals) -> float | None:
        return w.measures["a"] / w.measures["b"] if w.measures["b"] else None

    by_row = columns_of(plain, totals, lambda: rows)
    assert by_row[0] == 0.5 and math.isnan(by_row[1])
    assert np.array_equal(columns_of(Ratio("a", "b"), totals, lambda: rows), by_row, equal_nan=True)


def test_too_large_sums_fall_back_to_exact_python() -> None:
    big = 2**53 + 1  # float(big) would round
    totals = ColumnTotals({"a": [big], "b": [3]}, {}, [0])
    assert Ratio("a", "b").columns(totals) is None
    rows = [WindowTotals({"a": big, "b": 3}, {}, 0)]
    assert columns_of(Ratio("a", "b"), totals, lambda: rows)[0] == big / 3


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.lists(_any_deviation, max_size=9).map(sorted)), max_size=12),
    st.sampled_from([0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0, 1 / 3]),
)
def test_kept_values_read_as_lists_and_rank_as_the_scalar(
    rows: list[list[int] | None], q: float
) -> None:
    """The flat form is the lists, and its vectorised nearest rank the scalar one."""
    kept = kept_values(rows)
    assert list(kept) == rows and len(kept) == len(rows)
    assert kept[1:3] == rows[1:3]
    ranked = kept.nearest_rank(q)
    by_row = [Percentile("f", q)._of(values) for values in rows]
    if ranked is None:  # a value float64 cannot hold: the caller ranks row by row
        assert any(abs(v) >= 2**53 for values in rows for v in values or ())
        return
    by_column = Percentile("f", q).columns(ColumnTotals({}, {"f": kept}, [0] * len(rows)))
    for column, row in zip(by_column, by_row, strict=True):
        assert _same(column, row)


@given(st.lists(st.integers(-(2**127), 2**127 - 1), max_size=20))
def test_wide_ints_read_the_128_bit_values_exactly(values: list[int]) -> None:
    wide = WideInts(b"".join(v.to_bytes(16, "little", signed=True) for v in values))
    assert len(wide) == len(values)
    assert list(wide) == values
    assert [wide[i] for i in range(-len(values), len(values))] == values + values
    assert wide[1:] == values[1:]
    rows = list(range(len(values)))[::-2]
    assert wide.take(rows) == [values[i] for i in rows]
    with pytest.raises(IndexError):
        wide[len(values)]
    with pytest.raises(IndexError):
        wide.take([len(values)])
    assert ColumnTotals({"sq": wide}, {}, [0] * len(values)).ints("sq") is None
