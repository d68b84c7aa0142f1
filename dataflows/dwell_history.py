"""Trailing per-stage dwell distributions, per Kafka partition, for outlier flags.

Orders are spread over partitions by hashing their id, so a partition's
completed dwells are a uniform sample of all orders -- a fine baseline that
keeps partitions independent (and so deterministic).  The baseline for a dwell
that ended in hour ``h`` is the distribution of the same stage's dwells that
ended in ``[h - history, h)``.  It is only asked for once the watermark has
passed the dwell's end, when every dwell ending before ``h`` is known and can
no longer change, so each baseline is computed once and cached.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dataflows.lifecycle import Baseline, Transition
from dataflows.settings import OutlierSettings

__all__ = ["DwellHistory"]


class DwellHistory:
    def __init__(self, settings: OutlierSettings) -> None:
        self.settings = settings
        #: (stage, hour start) -> order id -> dwell (us)
        self._buckets: dict[tuple[str, int], dict[str, int]] = {}
        self._cache: dict[tuple[str, int], Baseline | None] = {}

    def _bucket(self, end_us: int) -> int:
        return end_us - end_us % self.settings.bucket_us

    def replace(
        self, order_id: str, old: tuple[Transition, ...], new: tuple[Transition, ...]
    ) -> None:
        """Swap an order's completed dwells for their new values."""
        if old == new:
            return
        for t in old:
            bucket = self._buckets.get((t.stage, self._bucket(t.end_us)))
            if bucket is not None:
                bucket.pop(order_id, None)
        for t in new:
            key = (t.stage, self._bucket(t.end_us))
            self._buckets.setdefault(key, {})[order_id] = t.dwell_us

    def baseline(self, stage: str, end_us: int) -> Baseline | None:
        hour = self._bucket(end_us)
        key = (stage, hour)
        if key in self._cache:
            return self._cache[key]
        step = self.settings.bucket_us
        dwells = [
            dwell
            for start in range(hour - self.settings.history_us, hour, step)
            for dwell in self._buckets.get((stage, start), {}).values()
        ]
        result = None
        if dwells:
            ordered = np.sort(np.array(dwells, dtype=np.int64))
            middle = float(_middle(ordered))
            deviations = np.abs(ordered.astype(np.float64) - middle)
            deviations.sort()
            result = Baseline(middle, float(_middle(deviations)), len(dwells))
        self._cache[key] = result
        return result

    def evict(self, watermark_us: int) -> None:
        """Forget buckets no future baseline can read."""
        horizon = watermark_us - self.settings.history_us - 2 * self.settings.bucket_us
        for key in [k for k in self._buckets if k[1] < horizon]:
            del self._buckets[key]
        for key in [k for k in self._cache if k[1] < horizon]:
            del self._cache[key]


def _middle(ordered: NDArray[np.int64] | NDArray[np.float64]) -> int | float:
    """The median of ascending values, exactly as ``statistics.median`` computes it.

    The sorting runs in NumPy (``statistics.median`` over the trailing dwells
    was 4% of the flow); the middle values are then taken out as Python
    numbers (``item``) and averaged with Python's arithmetic, so the figure
    is the same float.
    """
    n = len(ordered)
    if n % 2:
        return ordered[n // 2].item()  # type: ignore[no-any-return]
    return (ordered[n // 2 - 1].item() + ordered[n // 2].item()) / 2  # type: ignore[no-any-return]
