"""Drive the streaming core (no Bytewax) over partitions, like the flow does."""

from __future__ import annotations

import pickle
import random
from typing import Any

import msgspec

from dataflows.partition_processor import PartitionProcessor, SourcedEvent
from dataflows.settings import HealthSettings
from dataflows.timeutil import to_us
from dataflows.twin import lifecycle_rows
from dataflows.window_metrics import MetricWindows, as_rows


class StreamRun:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, str, str], dict[str, Any]] = {}
        self.bronze: list[dict[str, Any]] = []
        #: silver/order_lifecycle rows in the order they were written (times in us).
        self.lifecycle: list[dict[str, Any]] = []
        self.windows: MetricWindows | None = None

    def keep(self, rows: list[dict[str, Any]]) -> None:
        """The newest row per key, as the staging table keeps them."""
        for row in rows:
            key = (
                row["window_size"],
                to_us(row["window_start"]),
                row["dimension"],
                row["dimension_value"],
            )
            self.rows[key] = row


def run_stream(
    partitions: list[list[SourcedEvent]],
    settings: HealthSettings,
    seed: int,
    *,
    catching_up: bool = False,
) -> StreamRun:
    """Random batch sizes, random interleaving of partitions, and a pickle
    round-trip of the state now and then (what Bytewax recovery does).

    ``catching_up``: the window step is always behind (every message was
    produced long ago), so it holds rows back; they are flushed at the end.
    """
    rng = random.Random(seed)
    names = [f"t/{p}" for p, items in enumerate(partitions) if items]
    windows = MetricWindows(settings, names, catch_up_lag_us=0 if catching_up else None)
    processors = [PartitionProcessor("t", p, settings) for p in range(len(partitions))]
    run = StreamRun()
    cursors = [0] * len(partitions)
    while any(c < len(items) for c, items in zip(cursors, partitions, strict=True)):
        p = rng.randrange(len(partitions))
        if cursors[p] >= len(partitions[p]):
            continue
        size = rng.randint(1, 6)
        batch = partitions[p][cursors[p] : cursors[p] + size]
        cursors[p] += size
        result = processors[p].process(batch)
        run.bronze.extend(result.bronze.rows())
        run.lifecycle.extend(lifecycle_rows(result.lifecycle))
        feed = result.window_feed()
        if catching_up:
            feed = msgspec.structs.replace(feed, produced_us=0)
        run.keep(as_rows(windows.apply_all([feed], now_us=_LONG_AFTER)))
        if rng.random() < 0.2:
            processors[p] = pickle.loads(pickle.dumps(processors[p]))
            windows = pickle.loads(pickle.dumps(windows))
    run.keep(as_rows(windows.flush()))
    run.windows = windows
    return run


#: A wall clock far after every produce time: always catching up when a lag is set.
_LONG_AFTER = 10**18
