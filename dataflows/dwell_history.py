"""Trailing per-stage dwell distributions, per Kafka partition, for outlier flags.

Orders are spread over partitions by hashing their id, so a partition's
completed dwells are a uniform sample of all orders -- a fine baseline that
keeps partitions independent (and so deterministic).  The baseline for a dwell
that ended in hour ``h`` is the distribution of the same stage's dwells that
ended in ``[h - history, h)``.  It is only asked for once the watermark has
passed the dwell's end, when every dwell ending before ``h`` is known and can
no longer change, so each baseline is computed once and cached.

This class is the reference.  The native core keeps the same history in Rust
(``orderhealth_native.DwellHistory``, :func:`dataflows.native_dwells.new_history`);
both pickle to this class's state, so either restores the other's snapshot.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from dataflows.lifecycle import Baseline, Transition
from dataflows.settings import OutlierSettings

__all__ = ["DwellHistory", "History"]


class History(Protocol):
    """What the stream asks of a partition's dwell history (either core)."""

    settings: OutlierSettings

    def replace(
        self, order_id: str, old: tuple[Transition, ...], new: tuple[Transition, ...]
    ) -> None: ...

    def baseline(self, stage: str, end_us: int) -> Baseline | None: ...

    def evict(self, watermark_us: int) -> None: ...

    def __getstate__(self) -> dict[str, Any]: ...


class DwellHistory:
    def __init__(self, settings: OutlierSettings) -> None:
        self.settings = settings
        #: (stage, hour start) -> order id -> dwell (us)
        self._buckets: dict[tuple[str, int], dict[str, int]] = {}
        self._cache: dict[tuple[str, int], Baseline | None] = {}
        #: (stage, hour start) -> the bucket's dwells as an array, until it changes.
        #: Consecutive hours' baselines share all but one of their buckets, and
        #: gathering every dwell again in Python was half a baseline's cost.
        self._arrays: dict[tuple[str, int], NDArray[np.int64]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # The arrays are derivable from the buckets: snapshots leave them out.
        return {k: v for k, v in self.__dict__.items() if k != "_arrays"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._arrays = {}

    def _bucket(self, end_us: int) -> int:
        return end_us - end_us % self.settings.bucket_us

    def replace(
        self, order_id: str, old: tuple[Transition, ...], new: tuple[Transition, ...]
    ) -> None:
        """Swap an order's completed dwells for their new values."""
        if old == new:
            return
        arrays = self._arrays
        for t in old:
            key = (t.stage, self._bucket(t.end_us))
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.pop(order_id, None)
                if arrays:
                    arrays.pop(key, None)
        for t in new:
            key = (t.stage, self._bucket(t.end_us))
            self._buckets.setdefault(key, {})[order_id] = t.dwell_us
            if arrays:
                arrays.pop(key, None)

    def baseline(self, stage: str, end_us: int) -> Baseline | None:
        hour = self._bucket(end_us)
        key = (stage, hour)
        if key in self._cache:
            return self._cache[key]
        step = self.settings.bucket_us
        parts = [
            self._array((stage, start))
            for start in range(hour - self.settings.history_us, hour, step)
            if (stage, start) in self._buckets
        ]
        ordered = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
        result = None
        if len(ordered):
            middle = float(_middle(ordered))
            deviations = np.abs(ordered.astype(np.float64) - middle)
            deviations.sort()
            result = Baseline(middle, float(_middle(deviations)), len(ordered))
        self._cache[key] = result
        return result

    def evict(self, watermark_us: int) -> None:
        """Forget buckets no future baseline can read."""
        horizon = watermark_us - self.settings.history_us - 2 * self.settings.bucket_us
        for key in [k for k in self._buckets if k[1] < horizon]:
            del self._buckets[key]
        for key in [k for k in self._cache if k[1] < horizon]:
            del self._cache[key]
        for key in [k for k in self._arrays if k[1] < horizon]:
            del self._arrays[key]

    def _array(self, key: tuple[str, int]) -> NDArray[np.int64]:
        array = self._arrays.get(key)
        if array is None:
            bucket = self._buckets[key]
            array = self._arrays[key] = np.fromiter(bucket.values(), np.int64, len(bucket))
        return array


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
