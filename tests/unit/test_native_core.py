"""The native core equals the Python reference.

``orderhealth_native`` (``native/``, Rust) replaces the Python window delta
and window store on the hot path.  The Python implementations stay the
reference: on random streams (out of order, duplicated, randomly batched,
state pickled and restored on the way) both cores must emit the same metric
rows, value for value, and the same open windows.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_core
from dataflows.contributions import VALUE_FACTS, Delta, Item, WindowDelta, WindowKey
from dataflows.metrics import FACTS, Agg
from dataflows.native_core import NativeCoreMissing, core_name, delta_factory, native_module
from dataflows.settings import HealthSettings
from dataflows.window_metrics import (
    MeasureColumn,
    MetricWindows,
    PyWindowStore,
    StoreColumns,
    TextColumn,
    flag_column,
    int_column,
    kept_column,
    measure_array,
    text_column,
)
from tests.strategies import streams
from tests.stream_driver import run_stream

BASE = HealthSettings.load()
SETTINGS = msgspec.structs.replace(
    BASE, outliers=msgspec.structs.replace(BASE.outliers, min_samples=3)
)
native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="orderhealth_native is not built")


@contextmanager
def core(name: str) -> Iterator[None]:
    """Run with ``ORDERHEALTH_CORE=name`` (no monkeypatch: hypothesis reuses the test)."""
    before = os.environ.get("ORDERHEALTH_CORE")
    os.environ["ORDERHEALTH_CORE"] = name
    try:
        yield
    finally:
        if before is None:
            del os.environ["ORDERHEALTH_CORE"]
        else:
            os.environ["ORDERHEALTH_CORE"] = before


def test_ci_builds_the_native_core() -> None:
    """CI must run the native core, or the equivalence tests below would skip."""
    if os.environ.get("CI"):
        assert native is not None, "make install did not build native/ (orderhealth_native)"
        assert core_name() == "native"


@needs_native
@settings(max_examples=60, deadline=None)
@given(case=streams(SETTINGS, max_orders=14))
def test_both_cores_emit_the_same_rows(case) -> None:  # type: ignore[no-untyped-def]
    partitions, seed = case
    with core("python"):
        reference = run_stream(partitions, SETTINGS, seed)
    with core("native"):
        fast = run_stream(partitions, SETTINGS, seed)
    assert fast.rows == reference.rows
    assert fast.bronze == reference.bronze
    assert fast.lifecycle == reference.lifecycle
    assert reference.windows is not None and fast.windows is not None
    assert fast.windows.vectors() == reference.windows.vectors()
    assert fast.windows.store.export() == reference.windows.store.export()
    assert fast.windows.late_contributions == reference.windows.late_contributions


_VALUE_FACT = next(i for i, f in enumerate(FACTS) if f.keep_values)
_ADDITIVE = [
    i for i, f in enumerate(FACTS) if all(agg is not Agg.DISTINCT for agg in f.measures.values())
]
_DIMS = len(SETTINGS.dimensions)
items = st.tuples(
    st.sampled_from(range(len(FACTS))),
    # Negative times too: window starts floor like Python's %.  Few distinct
    # hours, so that an order's facts share windows.
    st.integers(-3, 3).map(lambda h: h * 3_600_000_000 + 1) | st.integers(-(10**13), 10**13),
    st.tuples(*[st.none() | st.sampled_from(["a", "b", "ü-€"]) for _ in range(_DIMS)]),
    # Values whose squares overflow 64 bits.
    st.integers(-(2**40), 2**40),
)
orders = st.lists(st.tuples(st.lists(items, max_size=6), st.lists(items, max_size=6)), max_size=8)


@needs_native
@settings(max_examples=300, deadline=None)
@given(changes=orders)
def test_native_delta_equals_the_reference(changes: list[tuple[list[Item], list[Item]]]) -> None:
    """Random orders' item changes (every fact kind, DISTINCT ones included)."""
    reference = delta_factory(SETTINGS, "python")()
    fast = delta_factory(SETTINGS, "native")()
    for delta in (reference, fast):
        for old, new in changes:
            delta.apply(tuple(old), tuple(new))
        delta.drop_unchanged()
    assert fast.vectors == reference.vectors
    assert _kept(fast) == _kept(reference)
    restored = pickle.loads(pickle.dumps(fast))
    assert (restored.vectors, restored.kept) == (fast.vectors, fast.kept)


def _kept(delta: WindowDelta) -> dict[WindowKey, list[tuple[int, int, int]]]:
    """Kept-value changes per row, in a fixed order (the deltas may list them differently)."""
    return {key: sorted(changes) for key, changes in delta.kept.items()}


@needs_native
def test_native_delta_refuses_what_it_cannot_expand() -> None:
    assert native is not None
    fact = _ADDITIVE[0]
    values = (None,) * _DIMS
    unpickled = pickle.loads(pickle.dumps(delta_factory(SETTINGS, "native")()))
    with pytest.raises(ValueError, match="no plan"):
        unpickled.apply((), ((fact, 0, values, 1),))
    fresh = delta_factory(SETTINGS, "native")()
    with pytest.raises(ValueError, match="one dimension value per dimension"):
        fresh.apply((), ((fact, 0, ("a",), 1),))
    with pytest.raises(ValueError, match="fact index"):
        fresh.apply((), ((len(FACTS), 0, values, 1),))
    with pytest.raises(ValueError, match="an item is"):
        fresh.apply((), ((fact, 0, values),))
    with pytest.raises(ValueError, match="unknown aggregation"):
        native.Plan(2, [("1h", 3_600_000_000)], ["region"], [([(0, "median")], -1)])
    with pytest.raises(ValueError, match="window sizes must be positive"):
        native.Plan(2, [("1h", 0)], ["region"], [])


def test_the_python_delta_refuses_to_expand_without_settings() -> None:
    unpickled = pickle.loads(pickle.dumps(Delta(SETTINGS)))
    with pytest.raises(ValueError, match="no settings"):
        unpickled.expand((_ADDITIVE[0], 0, (None,) * _DIMS, 1), 1)


def test_the_core_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERHEALTH_CORE", "python")
    assert core_name() == "python"
    assert isinstance(MetricWindows(SETTINGS, ["t/0"]).store, PyWindowStore)
    monkeypatch.setenv("ORDERHEALTH_CORE", "fast")
    with pytest.raises(ValueError, match="ORDERHEALTH_CORE must be one of native, python"):
        core_name()
    monkeypatch.setattr(native_core, "native_module", lambda: None)
    monkeypatch.setenv("ORDERHEALTH_CORE", "native")
    with pytest.raises(NativeCoreMissing, match="make install builds it"):
        core_name()
    monkeypatch.delenv("ORDERHEALTH_CORE")
    assert core_name() == "python"  # with a warning


def test_a_snapshot_from_before_the_stores_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Window state pickled by the previous release (``_Window`` objects inline)."""
    monkeypatch.setenv("ORDERHEALTH_CORE", "python")
    windows = MetricWindows(SETTINGS, ["t/0"])
    store = windows.store
    assert isinstance(store, PyWindowStore)
    delta = Delta(SETTINGS)
    delta.expand((_VALUE_FACT, 7_200_000_000, ("DE",) + (None,) * (_DIMS - 1), 5), 1)
    store.add(delta, None)
    store.take_rows()
    old = dict(windows.__dict__)
    del old["store"]
    old.update(windows=store.windows, series_starts=store.series_starts, series_base={})
    restored = MetricWindows.__new__(MetricWindows)
    restored.__setstate__(pickle.loads(pickle.dumps(old)))
    assert restored.vectors() == windows.vectors()
    assert len(VALUE_FACTS) == len(restored.store.export()[0][next(iter(windows.vectors()))][1])


@needs_native
@settings(max_examples=200, deadline=None)
@given(
    rounds=st.lists(orders, min_size=1, max_size=3),
    watermarks=st.lists(st.none() | st.integers(-(10**13), 10**13), min_size=3, max_size=3),
)
def test_both_stores_hand_out_their_rows_as_the_same_columns(
    rounds: list[list[tuple[list[Item], list[Item]]]], watermarks: list[int | None]
) -> None:
    """The window step reads columns; the native store builds them itself."""
    stores = {}
    for name in ("python", "native"):
        with core(name):
            stores[name] = MetricWindows(SETTINGS, ["t/0"]).store
    for changes, watermark in zip(rounds, watermarks, strict=False):
        for name, store in stores.items():
            delta = delta_factory(SETTINGS, name)()
            for old, new in changes:
                delta.apply(tuple(old), tuple(new))
            delta.drop_unchanged()
            store.add(delta, None)
            if watermark is not None:
                store.finalize(watermark)
        native, python = stores["native"].take_columns(), stores["python"].take_columns()
        assert _as_lists(native) == python
        _assert_int64_bytes_where_they_fit(native, python)
        assert stores["native"].export() == stores["python"].export()


def _as_lists(columns: StoreColumns) -> StoreColumns:
    """The native store's int64-bytes columns as the Python store's lists."""
    labels, starts, ends, dims, values, finals, late, measures, kept = columns

    def listed(column: MeasureColumn) -> list[int]:
        return list(map(int, int_column(column)))

    def texts(column: TextColumn) -> list[str]:
        text = text_column(column)
        return text if isinstance(text, list) else text.to_pylist()

    return (
        texts(labels),
        listed(starts),
        listed(ends),
        texts(dims),
        texts(values),
        list(map(bool, flag_column(finals))),
        listed(late),
        [listed(m) for m in measures],
        [list(kept_column(column)) for column in kept],
    )


def _assert_int64_bytes_where_they_fit(native: StoreColumns, python: StoreColumns) -> None:
    """Bytes exactly when every value of the column fits in an int64 (sums are 128-bit).

    A measure column beyond int64 but within 38 digits also carries its
    decimal128 buffer, which must be what pyarrow makes of the ints.
    """
    for p in (0, 3, 4):  # labels, dimensions, values: Arrow string buffers
        assert isinstance(native[p], tuple)
    assert isinstance(native[5], bytes)  # is_final: a byte per row
    pairs = [(native[p], python[p]) for p in (1, 2, 6)]  # starts, ends, late-open totals
    for native_column, python_column in pairs:
        fits = all(-(2**63) <= v < 2**63 for v in python_column)
        assert isinstance(native_column, bytes if fits else list)
    for native_column, python_column in zip(native[7], python[7], strict=True):
        fits = all(-(2**63) <= v < 2**63 for v in python_column)
        decimal = all(abs(v) < 10**38 for v in python_column)
        wide = measure_array(native_column)
        if fits:
            assert isinstance(native_column, bytes)
        elif decimal:
            assert wide is not None
            assert wide.equals(pa.array(python_column, pa.decimal128(38, 0)))
        else:
            assert isinstance(native_column, list)


@needs_native
def test_sums_of_squares_beyond_38_digits_stay_a_list_of_ints() -> None:
    """Beyond a decimal128(38, 0), pyarrow's own conversion (and its error) stays."""
    squares = next(i for i, f in enumerate(FACTS) if Agg.SUMSQ in f.measures.values())
    dims = tuple("a" for _ in range(_DIMS))
    columns: dict[str, StoreColumns] = {}
    for name in ("python", "native"):
        with core(name):
            store = MetricWindows(SETTINGS, ["t/0"]).store
        delta = delta_factory(SETTINGS, name)()
        # Twelve orders' values in one window: 12 * 9e36 > 10**38 (and < 2**127).
        for _ in range(12):
            delta.apply((), ((squares, 1, dims, 3 * 10**18),))
        delta.drop_unchanged()
        store.add(delta, None)
        columns[name] = store.take_columns()
    assert _as_lists(columns["native"]) == columns["python"]
    _assert_int64_bytes_where_they_fit(columns["native"], columns["python"])
    assert any(
        isinstance(c, list) and any(abs(v) >= 10**38 for v in c) for c in columns["native"][7]
    )
