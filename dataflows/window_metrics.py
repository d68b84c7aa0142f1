"""Global window totals: merge partition deltas, track the watermark, emit rows.

Each partition sends additive measure deltas plus its watermark.  The global
watermark is the minimum over all the topic's partitions (unknown until every
partition has reported).  A window row is *final* once the global watermark
passes its end: by then every partition has moved beyond it, so no accepted
event can change it.  Until then every change is emitted as a provisional row
(``is_final = false``), so open windows -- "today" -- move in real time.

``late_open_orders`` is a running total per series (window size, dimension,
value): the sum of ``late_open_in - late_open_out`` over every window up to
this one.  Final windows are folded into the series' base and forgotten.

Rows carry absolute values, so writing them is an idempotent upsert by
``(window_size, window_start, dimension, dimension_value)``.  They are emitted
as columns (:data:`MetricColumns`), times as integer microseconds: a dict per
row, transposed for Arrow in the sink, cost ~10% of the streaming core
(``python -m bench.core``), and so did one Python call per component and row;
components and the health index are computed a column at a time.
"""

from __future__ import annotations

import gc
import logging
from bisect import insort
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import add
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from dataflows.contributions import VALUE_FACTS, WindowDelta, WindowKey
from dataflows.formulas import ColumnTotals, FloatColumn, KeptValues, WideInts
from dataflows.metrics import MEASURES, compute_component_columns
from dataflows.native_core import NativeCoreMissing, core_name, native_module
from dataflows.partition_processor import WindowFeed
from dataflows.settings import HealthSettings
from dataflows.timeutil import from_us

__all__ = [
    "TIME_COLUMNS",
    "MetricColumns",
    "MetricWindows",
    "as_rows",
    "flag_column",
    "health_index",
    "int_column",
    "kept_column",
    "measure_array",
    "text_column",
]

log = logging.getLogger(__name__)

_IN = MEASURES.index("late_open_in")
_OUT = MEASURES.index("late_open_out")
Series = tuple[str, str, str]

#: Metric rows as columns: name -> one value per row (a list, a NumPy array
#: for the native store's times and flags, or an Arrow array: the numeric
#: columns built with NumPy, the native store's texts, the watermark's
#: columns); times are us since the epoch.
MetricColumns = dict[str, list[Any] | np.ndarray | pa.Array]
#: Columns holding times (us since the epoch in :data:`MetricColumns`).
TIME_COLUMNS = ("window_start", "window_end", "watermark_at")


def as_rows(columns: MetricColumns) -> list[dict[str, Any]]:
    """Columns -> one dict per row, times as datetimes (tests and small callers)."""
    if not columns:
        return []
    names = list(columns)
    lists = [
        c.to_pylist() if isinstance(c, pa.Array) else c.tolist() if isinstance(c, np.ndarray) else c
        for c in columns.values()
    ]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
    for row in rows:
        for name in TIME_COLUMNS:
            if row[name] is not None:
                row[name] = from_us(row[name])
    return rows


def health_index(
    components: dict[str, float | None], settings: HealthSettings
) -> tuple[float | None, str | None]:
    """The 0-100 composite and the names of the components that contributed."""
    total = weight = 0.0
    used = []
    for name, value in components.items():
        w = settings.weights[name]
        if value is None or w.weight <= 0:
            continue
        total += w.weight * w.score(value)
        weight += w.weight
        used.append(name)
    if not used:
        return None, None
    return 100.0 * total / weight, ",".join(used)


def health_index_columns(
    components: dict[str, FloatColumn], settings: HealthSettings
) -> tuple[FloatColumn, pa.Array]:
    """:func:`health_index` for many rows at once (NaN where a row has no data).

    Same floats as row by row: the same operations in the same component
    order, with an absent component adding an exact 0.0.  The names of the
    components used come as an Arrow string column: a label per set of
    components, taken for every row by Arrow, not looked up and appended
    per row in Python and converted later.
    """
    size = len(next(iter(components.values()))) if components else 0
    total, weight = np.zeros(size), np.zeros(size)
    used_bits = np.zeros(size, dtype=np.int64)
    names: list[str] = []
    for name, values in components.items():
        w = settings.weights[name]
        if w.weight <= 0:
            continue
        present = ~np.isnan(values)
        score = np.minimum(1.0, np.maximum(0.0, (values - w.bad) / (w.good - w.bad)))
        total += np.where(present, w.weight * score, 0.0)
        weight += np.where(present, w.weight, 0.0)
        if len(names) == 63:  # one bit per weighted component in an int64
            raise ValueError("more than 63 weighted health-index components")
        used_bits |= present.astype(np.int64) << len(names)
        names.append(name)
    index = np.full(size, np.nan)
    np.divide(100.0 * total, weight, out=index, where=used_bits != 0)
    # Each row's set as an index into the distinct sets (hashed: a third of
    # the time np.unique's sort took).
    sets = pa.array(used_bits).dictionary_encode()
    labels = [
        ",".join(n for i, n in enumerate(names) if bits >> i & 1) if bits else None
        for bits in sets.dictionary.to_pylist()
    ]
    return index, pa.array(labels, pa.string()).take(sets.indices)


def _nullable(floats: FloatColumn) -> pa.Array:
    """float64 column -> Arrow, NaN (no data) as null."""
    return pa.array(floats, type=pa.float64(), mask=np.isnan(floats))


class _Window:
    __slots__ = ("values", "vector")

    def __init__(self) -> None:
        self.vector = [0] * len(MEASURES)
        #: Kept values per VALUE_FACTS slot; None until one arrives: most
        #: windows never hold one, and creating the Counters up front was a
        #: twentieth of the core's time.
        self.values: list[Counter[int]] | None = None

    def kept(self) -> list[Counter[int]]:
        if self.values is None:
            self.values = [Counter() for _ in VALUE_FACTS]
        return self.values

    def __getstate__(self) -> tuple[list[int], list[Counter[int]] | None]:
        return (self.vector, self.values)

    def __setstate__(self, state: tuple[list[int], list[Counter[int]] | None]) -> None:
        self.vector, self.values = state


#: One changed row as a window store hands it out: label, start, end,
#: dimension, value, is_final, running late-open total, measure totals, kept
#: values per VALUE_FACTS slot (ascending) or None.
StoreRow = tuple[str, int, int, str, str, bool, int, list[int], list[list[int]] | None]
#: An integer column of a store's rows: a list of ints, or (the native store,
#: when every value fits in an int64) their int64 bytes, little-endian -- no
#: Python int per row (:func:`int_column`).
IntColumn = list[int] | bytes
#: A measure column of a store's rows: an :data:`IntColumn`, or (the native
#: store, when a value does not fit in an int64 but every one fits in 38
#: digits) a 1-tuple of the values as 16-byte little-endian two's
#: complement: a ``decimal128(38, 0)`` buffer as it is (:func:`measure_array`),
#: read as ints by :class:`~dataflows.formulas.WideInts`.
MeasureColumn = IntColumn | tuple[bytes]
#: A kept-values slot of a store's rows: each row's values (ascending) or
#: None; or (the native store) the same as flat int64 values, each row's end
#: in them (int64) and one byte per row for "not None"
#: (:meth:`~dataflows.formulas.KeptValues.from_bytes`).
KeptColumn = list[list[int] | None] | tuple[bytes, bytes, bytes]
#: A store's text column: the texts, or (the native store) an Arrow string
#: column's buffers, int32 offsets and UTF-8 data (:func:`text_column`).
TextColumn = list[str] | tuple[bytes, bytes]
#: A store's is_final column: the flags, or (the native store) a byte per row.
FlagColumn = list[bool] | bytes
#: The same rows as columns: labels, starts, ends, dimensions, values,
#: is_final, running late-open totals, one column per measure (MEASURES
#: order), one kept-values column per VALUE_FACTS slot.
StoreColumns = tuple[
    TextColumn,
    IntColumn,
    IntColumn,
    TextColumn,
    TextColumn,
    FlagColumn,
    IntColumn,
    list[MeasureColumn],
    list[KeptColumn],
]


def int_column(column: MeasureColumn) -> Sequence[int] | np.ndarray:
    """A store's integer column as the window step reads it: int64 bytes as NumPy (no copy)."""
    if isinstance(column, tuple):
        return WideInts(column[0])
    return np.frombuffer(column, dtype="<i8") if isinstance(column, bytes) else column


def text_column(column: TextColumn) -> list[str] | pa.Array:
    """A store's text column as the window step hands it on: buffers as an Arrow array.

    pyarrow converts a list of str a value at a time; the native store's
    buffers are the array already.
    """
    if isinstance(column, list):
        return column
    offsets, data = column
    size = len(offsets) // 4 - 1
    return pa.Array.from_buffers(
        pa.string(), size, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def flag_column(column: FlagColumn) -> list[bool] | np.ndarray:
    """A store's is_final column: a byte per row as a NumPy bool array (no copy)."""
    return np.frombuffer(column, dtype=np.bool_) if isinstance(column, bytes) else column


_DECIMAL = pa.decimal128(38, 0)


def measure_array(column: MeasureColumn) -> pa.Array | None:
    """The ``decimal128(38, 0)`` array of a measure column that carries its 128-bit values.

    pyarrow converts a list of Python ints to decimals through each int's
    text (~160 ns a value); the native store's buffer is the array already.
    None for any other column.
    """
    if not isinstance(column, tuple):
        return None
    (buffer,) = column
    return pa.Array.from_buffers(_DECIMAL, len(buffer) // 16, [None, pa.py_buffer(buffer)])


def kept_column(column: KeptColumn) -> Sequence[list[int] | None]:
    """A store's kept-values column as the window step reads it (flat bytes as NumPy)."""
    return KeptValues.from_bytes(*column) if isinstance(column, tuple) else column


#: A store's open windows (key -> (measure totals, kept {value: count} per
#: slot or None)) and late-open base per series: the core-neutral snapshot.
StoreWindows = dict[WindowKey, tuple[list[int], list[dict[int, int]] | None]]
StoreExport = tuple[StoreWindows, dict[Series, int]]


def store_columns(rows: list[StoreRow]) -> StoreColumns:
    """Changed rows as columns (the Python store's ``take_columns``)."""
    if not rows:
        return ([], [], [], [], [], [], [], [[] for _ in MEASURES], [[] for _ in VALUE_FACTS])
    labels, starts, ends, dims, values, finals, late_open, vectors, kept = map(
        list, zip(*rows, strict=True)
    )
    return (
        labels,
        starts,
        ends,
        dims,
        values,
        finals,
        late_open,
        [list(column) for column in zip(*vectors, strict=True)],
        [[None if k is None else k[slot] for k in kept] for slot in range(len(VALUE_FACTS))],
    )


class WindowStore(Protocol):
    """Window totals: what :class:`MetricWindows` keeps per window.

    Two implementations: :class:`PyWindowStore` (the reference) and
    ``orderhealth_native.WindowStore``, chosen with the core
    (:mod:`dataflows.native_core`).
    """

    def add(self, delta: WindowDelta, watermark: int | None) -> list[WindowKey]: ...

    def finalize(self, watermark: int) -> None: ...

    def take_columns(self, hold_until: int | None = None) -> StoreColumns:
        """The rows changed since the last call, as columns; final windows are then forgotten.

        Windows not final that end at or before ``hold_until`` stay changed
        and are left out (see :meth:`PyWindowStore.take_rows`).
        """
        ...

    def pending(self) -> int:
        """Changed windows waiting for a hand-out (after one: those it held back)."""
        ...

    def touch_all(self) -> None:
        """Mark every open window changed: the next hand-out has them all."""
        ...

    def export(self) -> StoreExport: ...

    def load(self, windows: StoreWindows, base: dict[Series, int]) -> None: ...


class PyWindowStore:
    """The Python window store (the reference for the native one)."""

    def __init__(self, settings: HealthSettings) -> None:
        self.windows: dict[WindowKey, _Window] = {}
        #: Open window starts per series, ascending.
        self.series_starts: dict[Series, list[int]] = {}
        #: late_open_in - late_open_out of the series' forgotten (final) windows.
        self.series_base: dict[Series, int] = {}
        self._sizes = dict(settings.window_sizes)
        self._changed: set[WindowKey] = set()
        self._final: set[WindowKey] = set()
        #: Series whose running late-open total moved, from which window start on.
        self._moved_from: dict[Series, int] = {}

    def add(self, delta: WindowDelta, watermark: int | None) -> list[WindowKey]:
        late: list[WindowKey] = []
        kept = delta.kept
        sizes = self._sizes
        changed, moved_from = self._changed, self._moved_from
        for key, change in delta.vectors.items():
            if watermark is not None and key[1] + sizes[key[0]] <= watermark:
                late.append(key)
                continue
            window = self.windows.get(key)
            if window is None:
                window = self.windows[key] = _Window()
                insort(self.series_starts.setdefault(_series(key), []), key[1])
            window.vector = list(map(add, window.vector, change))  # both MEASURES long
            if key in kept:
                counters = window.kept()
                for slot, value, count in kept[key]:
                    counters[slot][value] += count
            changed.add(key)
            if change[_IN] or change[_OUT]:
                series = _series(key)
                moved_from[series] = min(moved_from.get(series, key[1]), key[1])
        return late

    def finalize(self, watermark: int) -> None:
        newly = {
            k
            for k in self.windows
            if k not in self._final and k[1] + self._sizes[k[0]] <= watermark
        }
        self._final.update(newly)
        self._changed.update(newly)

    def take_rows(self, hold_until: int | None = None) -> list[StoreRow]:
        """The changed rows, by series then start; final windows are then forgotten.

        ``hold_until`` (the caller's catch-up rule, :class:`MetricWindows`):
        a window not final that ends at or before it stays changed and is
        not handed out -- a partition has passed it, so it turns final as
        soon as the slower ones catch up, and its provisional row would be
        stale at once.  Its running late-open total is computed when it is
        handed out, so holding it changes no other row.
        """
        changed, final = self._changed, self._final
        for series, first in self._moved_from.items():
            label, dim, value = series
            changed.update((label, s, dim, value) for s in self.series_starts[series] if s > first)
        by_series: dict[Series, set[int]] = {}
        held: set[WindowKey] = set()
        for key in changed:
            by_series.setdefault(_series(key), set()).add(key[1])
        rows: list[StoreRow] = []
        for series in sorted(by_series):
            label, dim, value = series
            wanted = by_series[series]
            running = self.series_base.get(series, 0)
            size = self._sizes[label]
            for start in self.series_starts[series]:
                key = (label, start, dim, value)
                window = self.windows[key]
                vector = window.vector
                running += vector[_IN] - vector[_OUT]
                if start in wanted:
                    if hold_until is not None and key not in final and start + size <= hold_until:
                        held.add(key)
                        continue
                    values = (
                        None
                        if window.values is None
                        else [sorted(counter.elements()) for counter in window.values]
                    )
                    rows.append(
                        (
                            label,
                            start,
                            start + size,
                            dim,
                            value,
                            key in final,
                            running,
                            vector,
                            values,
                        )
                    )
        for key in final:
            self._forget(key)
        self._changed, self._final, self._moved_from = held, set(), {}
        return rows

    def take_columns(self, hold_until: int | None = None) -> StoreColumns:
        return store_columns(self.take_rows(hold_until))

    def pending(self) -> int:
        return len(self._changed)

    def touch_all(self) -> None:
        self._changed.update(self.windows)

    def _forget(self, key: WindowKey) -> None:
        window = self.windows.pop(key)
        series = _series(key)
        self.series_base[series] = (
            self.series_base.get(series, 0) + window.vector[_IN] - window.vector[_OUT]
        )
        self.series_starts[series].remove(key[1])

    def export(self) -> StoreExport:
        return (
            {
                key: (
                    list(w.vector),
                    None if w.values is None else [dict(c) for c in w.values],
                )
                for key, w in self.windows.items()
            },
            dict(self.series_base),
        )

    def load(self, windows: StoreWindows, base: dict[Series, int]) -> None:
        self.windows, self.series_starts = {}, {}
        self._changed, self._final, self._moved_from = set(), set(), {}
        for key, (vector, values) in windows.items():
            window = self.windows[key] = _Window()
            window.vector = list(vector)
            if values is not None:
                window.values = [Counter(v) for v in values]
            insort(self.series_starts.setdefault(_series(key), []), key[1])
        self.series_base = dict(base)


def store_factory(settings: HealthSettings, core: str | None = None) -> WindowStore:
    """An empty window store of the chosen core (:mod:`dataflows.native_core`)."""
    core = core or core_name()
    if core == "python":
        return PyWindowStore(settings)
    native = native_module()
    if native is None:
        raise NativeCoreMissing("the orderhealth_native extension is not installed")
    store: WindowStore = native.WindowStore(
        len(MEASURES), list(settings.window_sizes), len(VALUE_FACTS), _IN, _OUT
    )
    return store


class MetricWindows:
    """Window totals across partitions."""

    def __init__(
        self,
        settings: HealthSettings,
        partitions: list[str],
        *,
        catch_up_lag_us: int | None = None,
    ) -> None:
        self.settings = settings
        self.partitions = sorted(partitions)
        self.partition_watermarks: dict[str, int] = {}
        #: Newest Kafka produce timestamp seen per partition (freshness).
        self.partition_produced: dict[str, int] = {}
        #: Kafka position incorporated per stream (topic/partition -> offset).
        self.progress: dict[str, int] = {}
        self.store = store_factory(settings)
        self.late_contributions = 0
        #: Catching up when the newest message absorbed was produced more than
        #: this long ago (None: never; see :meth:`apply_all`).
        self.catch_up_lag_us = catch_up_lag_us
        #: Whether the last hand-out may have held rows back (:meth:`flush`).
        self.holding = False
        #: Restored from a snapshot taken while holding: every open window is
        #: handed out again once :attr:`progress` reaches ``restate_at``.
        self.restate_pending = False
        #: The progress the published state already has (the staging
        #: table's, set by the flow after a restore; None: at once).
        self.restate_at: dict[str, int] | None = None
        #: Whether the last hand-out was such a restatement.
        self.restated = False
        #: Windows the last hand-out held back.
        self.held_back = 0

    # -- recovery: the store is saved in its core-neutral form -------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != "store"}
        state["store_export"] = self.store.export()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "store_export" in state:
            windows, base = state.pop("store_export")
        else:  # a snapshot from before the stores: _Window objects inline
            old = PyWindowStore(state["settings"])
            old.windows = state.pop("windows")
            state.pop("series_starts", None)
            old.series_base = state.pop("series_base")
            windows, base = old.export()
        state.setdefault("catch_up_lag_us", None)
        state.setdefault("holding", False)
        self.__dict__.update(state)
        self.store = store_factory(self.settings)
        self.store.load(windows, base)
        # Which rows were held is not saved, and the run that crashed may
        # have held others after this snapshot: once the replay has passed
        # what that run committed, every open window is handed out again.
        self.restate_pending = self.holding
        self.restate_at = None
        self.restated = False
        self.held_back = 0

    def vectors(self) -> dict[WindowKey, list[int]]:
        """Open windows' measure totals (tests and diagnostics)."""
        return {key: vector for key, (vector, _values) in self.store.export()[0].items()}

    @property
    def watermark_us(self) -> int | None:
        if any(p not in self.partition_watermarks for p in self.partitions):
            return None
        return min(self.partition_watermarks[p] for p in self.partitions)

    def apply(self, batch: WindowFeed) -> list[dict[str, Any]]:
        """Merge one partition batch; return the rows that changed."""
        return as_rows(self.apply_all([batch]))

    def apply_all(self, batches: Sequence[WindowFeed], now_us: int | None = None) -> MetricColumns:
        """Merge several partition batches; return each changed row once, as columns.

        Rows carry absolute values, so a row touched by several batches is
        computed once, after the last of them (the sink keeps only the newest
        row per key anyway).  Windows made final are forgotten after that.

        While catching up (``now_us`` is more than :attr:`catch_up_lag_us`
        after the newest message's produce time), a window that is not final
        but that some partition's watermark has passed is held back: it turns
        final as soon as the slower partitions catch up, so its provisional
        row would be stale at once.  On a backlog, one partition a read ahead
        of the others (66 hours of the bench's event time) made every call
        re-emit those windows: 1.37M rows per 400k events instead of 0.74M.
        Final rows and windows no partition has passed are never held; held
        rows come out when they turn final, at the first call that is not
        catching up, or with :meth:`flush`.
        """
        for batch in batches:
            self._absorb(batch)
        self.restated = self._restate_due()
        if self.restated:
            self.store.touch_all()
            self.restate_pending, self.restate_at = False, None
        hold = self._hold_until(now_us)
        self.holding = hold is not None
        with _no_cycle_collection():
            columns = self._columns(self.store.take_columns(hold))
        self.held_back = 0 if hold is None else self.store.pending()
        return columns

    def flush(self) -> MetricColumns:
        """Hand out the rows held back while catching up (the stream went quiet or ended)."""
        return self.apply_all([])

    def _restate_due(self) -> bool:
        if not self.restate_pending:
            return False
        at = self.restate_at or {}
        return all(self.progress.get(stream, -1) >= offset for stream, offset in at.items())

    def _hold_until(self, now_us: int | None) -> int | None:
        """The window end up to which provisional rows are held (None: hold none)."""
        lag, produced = self.catch_up_lag_us, self.partition_produced
        if lag is None or now_us is None or not produced or not self.partition_watermarks:
            return None
        if now_us - max(produced.values()) <= lag:
            return None
        return max(self.partition_watermarks.values())

    def _absorb(self, batch: WindowFeed) -> None:
        for key in self.store.add(batch.window_delta, self.watermark_us):
            # Cannot happen for events inside the allowed lateness; counted
            # so that a restatement can be triggered, never silently.
            self.late_contributions += 1
            log.warning("contribution to final window %s ignored; restate it", key)
        if batch.last_offset >= 0:
            self.progress[batch.stream] = max(
                self.progress.get(batch.stream, -1), batch.last_offset
            )
        before = self.watermark_us
        if batch.watermark_us is not None:
            self.partition_watermarks[batch.stream] = batch.watermark_us
        if batch.produced_us is not None:
            self.partition_produced[batch.stream] = batch.produced_us
        after = self.watermark_us
        if after is not None and after != before:
            self.store.finalize(after)

    def _columns(self, changed: StoreColumns) -> MetricColumns:
        """Columns for the changed rows, with components and health index.

        Components and index are computed a column at a time
        (:func:`~dataflows.metrics.compute_component_columns`,
        :func:`health_index_columns`) and handed on as Arrow arrays, nulls
        where a row has no data.
        """
        labels, raw_starts, raw_ends, dims, values, finals, raw_late, vectors, kept = changed
        starts, ends, late_open = map(int_column, (raw_starts, raw_ends, raw_late))
        size = len(starts)
        if not size:
            return {}
        measures = {name: int_column(c) for name, c in zip(MEASURES, vectors, strict=True)}
        kept_values = {fact: kept_column(c) for fact, c in zip(VALUE_FACTS, kept, strict=True)}
        totals = ColumnTotals(measures, kept_values, late_open)
        components = compute_component_columns(totals)
        index, used = health_index_columns(components, self.settings)
        columns: MetricColumns = {
            "window_size": text_column(labels),
            "window_start": starts,
            "window_end": ends,
            "dimension": text_column(dims),
            "dimension_value": text_column(values),
            "is_final": flag_column(finals),
        }
        for (name, column), raw in zip(measures.items(), vectors, strict=True):
            small = totals.ints(name)
            if small is not None:
                columns[name] = pa.array(small)
            else:
                wide = measure_array(raw)
                columns[name] = column if wide is None else wide
        for name, floats in components.items():
            columns[name] = _nullable(floats)
        columns["health_index"] = _nullable(index)
        columns["health_components"] = used
        # One value for every row: repeated by Arrow, not converted a row at a time.
        columns["watermark_at"] = pa.repeat(pa.scalar(self.watermark_us, pa.int64()), size)
        columns["watermark_lag_seconds"] = pa.repeat(
            pa.scalar(self.watermark_lag_seconds, pa.float64()), size
        )
        return columns

    @property
    def watermark_lag_seconds(self) -> float | None:
        """How far the partition holding the watermark back trails the newest one.

        Measured in Kafka produce time (message timestamps), not event time:
        reading a backlog in batches lets partitions drift apart by hours of
        event time harmlessly, but a partition whose newest message was
        produced long before the others' is stuck or idle -- and it is what
        keeps windows from becoming final.  None until every partition has
        reported (or without broker timestamps).
        """
        produced = self.partition_produced
        if any(p not in produced for p in self.partitions):
            return None
        return (max(produced.values()) - min(produced.values())) / 1_000_000


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic GC while the changed rows are built.

    Building them allocates a few containers per row (2 rows per event on the
    bench's data), all kept until the rows are written: each young-generation
    collection on the way traversed them all again, 8% of the flow's time
    (py-spy).  They hold no cycles; collection resumes right after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _series(key: WindowKey) -> Series:
    return (key[0], key[2], key[3])
