"""Rows held back while catching up change nothing that is finally published.

While the window step is behind (:meth:`MetricWindows.apply_all`), it holds
back provisional rows of windows some partition has passed; they come out
when final, or with :meth:`MetricWindows.flush`.  On random streams (out of
order, duplicated, randomly batched and interleaved, state pickled and
restored on the way) the newest row per key after the flush is the same as
without holding, in both cores, and no final row is ever held.
"""

from __future__ import annotations

import pickle
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings

from dataflows.native_core import delta_factory, native_module
from dataflows.partition_processor import WindowFeed
from dataflows.settings import HealthSettings
from dataflows.timeutil import to_us
from dataflows.window_metrics import MetricWindows, as_rows
from tests.strategies import streams
from tests.stream_driver import run_stream
from tests.unit.test_native_core import _ADDITIVE, core

BASE = HealthSettings.load()
SETTINGS = msgspec.structs.replace(
    BASE, outliers=msgspec.structs.replace(BASE.outliers, min_samples=3)
)
CORES = ["python", "native"] if native_module() is not None else ["python"]
#: Stamped at emission, so they differ with when a row came out.
_EMISSION = ("watermark_at", "watermark_lag_seconds")


def _published(rows: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {key: {k: v for k, v in row.items() if k not in _EMISSION} for key, row in rows.items()}


@settings(max_examples=60, deadline=None)
@given(case=streams(SETTINGS, max_orders=14))
def test_holding_while_catching_up_publishes_the_same_rows(case) -> None:  # type: ignore[no-untyped-def]
    partitions, seed = case
    for name in CORES:
        with core(name):
            live = run_stream(partitions, SETTINGS, seed)
            behind = run_stream(partitions, SETTINGS, seed, catching_up=True)
        assert _published(behind.rows) == _published(live.rows)
        assert behind.windows is not None and live.windows is not None
        assert behind.windows.store.export() == live.windows.store.export()


HOUR = 3_600_000_000


def _feed(name: str, stream: str, watermark: int, produced: int, *hours: float) -> WindowFeed:
    """A partition's batch: one additive fact at each of ``hours``."""
    delta = delta_factory(SETTINGS, name)()
    dims = ("x",) * len(SETTINGS.dimensions)
    for hour in hours:
        delta.apply((), ((_ADDITIVE[0], int(hour * HOUR), dims, 1),))
    return WindowFeed(stream, 0, watermark, delta, produced)


@pytest.mark.parametrize("name", CORES)
def test_only_windows_a_partition_passed_are_held_and_only_when_behind(name: str) -> None:
    """A window one partition passed waits; the open ones and the final ones do not."""
    with core(name):
        windows = MetricWindows(SETTINGS, ["t/0", "t/1"], catch_up_lag_us=5_000_000)
    produced = 100 * HOUR
    fast = _feed(name, "t/0", 12 * HOUR, produced, 10.5, 13.5)
    slow = _feed(name, "t/1", 10 * HOUR, produced)
    # Caught up (produced 1 s ago): every changed window comes out, provisional.
    rows = as_rows(windows.apply_all([fast, slow], now_us=produced + 1_000_000))
    assert rows and not any(r["is_final"] for r in rows)
    assert not windows.holding
    # Behind (produced a minute ago): the 10:30 minute and hour (passed by
    # t/0's watermark, 12:00) are held; the 13:30 ones and the day are not.
    fast = _feed(name, "t/0", 12 * HOUR, produced, 10.5, 13.5)
    rows = as_rows(windows.apply_all([fast], now_us=produced + 60_000_000))
    starts = {(r["window_size"], r["window_start"].hour) for r in rows}
    assert windows.holding
    assert starts == {("1m", 13), ("1h", 13), ("1d", 0)}, starts
    # The slow partition passes 11:00: the 10:30 windows turn final and come out.
    slow = _feed(name, "t/1", 11 * HOUR, produced)
    rows = as_rows(windows.apply_all([slow], now_us=produced + 60_000_000))
    final = {(r["window_size"], r["window_start"].hour) for r in rows if r["is_final"]}
    assert final == {("1m", 10), ("1h", 10)}, final
    assert not windows.flush()  # nothing left held


@pytest.mark.parametrize("name", CORES)
def test_a_restore_while_holding_restates_every_open_window_after_the_replay(name: str) -> None:
    """The crashed run may have held rows the snapshot never saw: all open windows come again."""
    with core(name):
        windows = MetricWindows(SETTINGS, ["t/0", "t/1"], catch_up_lag_us=0)
    produced = 100 * HOUR
    feeds = [
        _feed(name, "t/0", 12 * HOUR, produced, 10.5, 13.5),
        _feed(name, "t/1", 10 * HOUR, produced, 9.5),
    ]
    assert as_rows(windows.apply_all(feeds, now_us=produced + 1))
    assert windows.holding
    open_windows = set(windows.vectors())
    with core(name):
        restored = pickle.loads(pickle.dumps(windows))
    assert restored.restate_pending
    # The staging table already has offset 5 of t/1 (the replay starts before it).
    restored.restate_at = {"t/0": 0, "t/1": 5}
    replayed = WindowFeed("t/1", 3, 10 * HOUR, delta_factory(SETTINGS, name)(), produced)
    restored.apply_all([replayed], now_us=produced + 1)
    assert not restored.restated and restored.restate_pending
    caught_up = WindowFeed("t/1", 5, 10 * HOUR, delta_factory(SETTINGS, name)(), produced)
    rows = as_rows(restored.apply_all([caught_up]))  # caught up: nothing held
    assert restored.restated and not restored.restate_pending
    assert {_key(r) for r in rows} == open_windows


def _key(row: dict[str, Any]) -> tuple[str, int, str, str]:
    return (
        row["window_size"],
        to_us(row["window_start"]),
        row["dimension"],
        row["dimension_value"],
    )
