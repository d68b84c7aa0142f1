"""Global window totals: merge partition deltas, track the watermark, emit rows.

Each partition sends additive measure deltas plus its watermark.  The global
watermark is the minimum over all the topic's partitions (unknown until every
partition has reported).  A window row is *final* once the global watermark
passes its end: by then every partition has moved beyond it, so no accepted
event can change it.  Until then every change is emitted as a provisional row
(``is_final = false``), so open windows -- "today" -- move in real time.

Rows carry absolute values, so writing them is an idempotent upsert by
``(window_size, window_start, dimension, dimension_value)``.
"""

from __future__ import annotations

import logging
from typing import Any

from dataflows.contributions import Contribution, WindowKey
from dataflows.metrics import MEASURES, compute_components
from dataflows.partition_processor import PartitionBatch
from dataflows.settings import HealthSettings
from dataflows.timeutil import from_us

__all__ = ["MetricWindows"]

log = logging.getLogger(__name__)


class MetricWindows:
    """Window totals across partitions."""

    def __init__(self, settings: HealthSettings, partitions: list[str]) -> None:
        self.settings = settings
        self.partitions = sorted(partitions)
        self.partition_watermarks: dict[str, int] = {}
        #: Kafka position incorporated per stream (topic/partition -> offset).
        self.progress: dict[str, int] = {}
        self.totals: dict[WindowKey, list[int]] = {}
        self.finalized: set[WindowKey] = set()
        self.late_contributions = 0
        self._sizes = dict(settings.window_sizes)
        self._retention_us = max(self._sizes.values())

    @property
    def watermark_us(self) -> int | None:
        if any(p not in self.partition_watermarks for p in self.partitions):
            return None
        return min(self.partition_watermarks[p] for p in self.partitions)

    def apply(self, batch: PartitionBatch) -> list[dict[str, Any]]:
        """Merge one partition batch; return the rows that changed."""
        changed: set[WindowKey] = set()
        self._add(batch.window_delta, changed)
        if batch.last_offset >= 0:
            self.progress[batch.stream] = max(
                self.progress.get(batch.stream, -1), batch.last_offset
            )
        before = self.watermark_us
        if batch.watermark_us is not None:
            self.partition_watermarks[batch.stream] = batch.watermark_us
        after = self.watermark_us
        if after is not None and after != before:
            for key in self.totals:
                if key not in self.finalized and self._end(key) <= after:
                    self.finalized.add(key)
                    changed.add(key)
        rows = [self.row(key) for key in sorted(changed)]
        if after is not None:
            self._evict(after)
        return rows

    def _add(self, delta: Contribution, changed: set[WindowKey]) -> None:
        watermark = self.watermark_us
        for key, vector in delta.items():
            if key in self.finalized or (watermark is not None and self._end(key) <= watermark):
                # Cannot happen for events inside the allowed lateness; counted
                # so that a restatement can be triggered, never silently.
                self.late_contributions += 1
                log.warning("contribution to final window %s ignored; restate it", key)
                continue
            total = self.totals.get(key)
            if total is None:
                self.totals[key] = list(vector)
            else:
                for index, amount in enumerate(vector):
                    total[index] += amount
            changed.add(key)

    def _end(self, key: WindowKey) -> int:
        return key[1] + self._sizes[key[0]]

    def _evict(self, watermark: int) -> None:
        """Forget final windows well behind the watermark (bounded state)."""
        horizon = watermark - self._retention_us
        stale = [k for k in self.finalized if self._end(k) < horizon]
        for key in stale:
            self.finalized.discard(key)
            self.totals.pop(key, None)

    def row(self, key: WindowKey) -> dict[str, Any]:
        label, start, dimension, value = key
        measures = dict(zip(MEASURES, self.totals[key], strict=True))
        row: dict[str, Any] = {
            "window_size": label,
            "window_start": from_us(start),
            "window_end": from_us(start + self._sizes[label]),
            "dimension": dimension,
            "dimension_value": value,
            "is_final": key in self.finalized,
        }
        row.update(measures)
        row.update(compute_components(measures))
        return row
