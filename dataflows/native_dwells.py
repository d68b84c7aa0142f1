"""The native twin of a partition's dwell history: the outlier baselines in Rust.

The Python history (:class:`~dataflows.dwell_history.DwellHistory`) stays the
reference; both pickle in its form, so either core restores the other's
snapshot.  :data:`NATIVE_DWELLS_OF` guards the twin against a changed reference.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

from dataflows import dwell_history
from dataflows.dwell_history import DwellHistory, History
from dataflows.lifecycle import Baseline, Transition
from dataflows.native_core import core_name, fingerprint, installed, still_checked
from dataflows.settings import OutlierSettings

__all__ = [
    "NATIVE_DWELLS_OF",
    "adopt_history",
    "dwells_fingerprint",
    "new_history",
    "restore_history",
]

#: The fingerprint (:func:`dwells_fingerprint`) of
#: ``dataflows/dwell_history.py`` that ``native/src/dwells.rs`` was checked
#: against; as for the facts
#: (:data:`~dataflows.native_facts.NATIVE_FACTS_OF`), a change there puts the
#: history back in Python until ``tests/unit/test_dwell_history.py`` checks
#: the twin and names the new value.
NATIVE_DWELLS_OF = "e8f90e2ce0df2843"


def dwells_fingerprint() -> str:
    """A hash of ``dataflows/dwell_history.py``, comments and layout aside."""
    return fingerprint(inspect.getsource(dwell_history))


@cache
def _native_dwells_current() -> bool:
    return still_checked(
        dwells_fingerprint,
        NATIVE_DWELLS_OF,
        "the dwell history in dataflows/dwell_history.py changed since native/src/dwells.rs "
        "was checked against it: outlier baselines are computed in Python (slower) until "
        "tests/unit/test_dwell_history.py passes and NATIVE_DWELLS_OF is updated",
    )


def new_history(
    settings: OutlierSettings, state: dict[str, Any] | None = None, core: str | None = None
) -> History:
    """A partition's dwell history for outlier baselines, of the chosen core.

    ``state`` is a history's ``__getstate__()`` (either core's: they share the
    reference's form), to restore.  The native history keeps the buckets and
    the baselines in Rust; the Python one (:class:`DwellHistory`, the
    reference) runs with the Python core, or when ``dataflows/dwell_history.py``
    changed since the twin was checked (:data:`NATIVE_DWELLS_OF`).
    """
    if not _native_history(core):
        history = DwellHistory(settings)
        if state is not None:
            history.__setstate__({**state, "settings": settings})
        return history
    kernel = installed().DwellHistory(settings.bucket_us, settings.history_us, Baseline)
    if state is not None:
        kernel.load(state["_buckets"], state.get("_cache", {}))
    return _NativeDwellHistory(settings, kernel)


def restore_history(state: dict[str, Any]) -> History:
    """Unpickle a native history, into the core this process runs."""
    return new_history(state["settings"], state)


def adopt_history(settings: OutlierSettings, history: History) -> History:
    """A restored ``history`` as the core this process runs, copied only if it is the other's.

    (A native one unpickles into this process's core already; a snapshot from
    before the native history holds the reference's.)
    """
    if isinstance(history, _NativeDwellHistory) == _native_history(None):
        return history
    return new_history(settings, history.__getstate__())


def _native_history(core: str | None) -> bool:
    """Whether a new history is the native one (see :func:`new_history`)."""
    return (core or core_name()) == "native" and _native_dwells_current()


class _NativeDwellHistory:
    """``orderhealth_native.DwellHistory``, pickled in the reference's form."""

    __slots__ = ("_kernel", "baseline", "evict", "replace", "settings")

    def __init__(self, settings: OutlierSettings, kernel: Any) -> None:
        self.settings = settings
        self._kernel = kernel
        # The kernel's own methods: no Python frame per call.
        self.replace: Callable[[str, tuple[Transition, ...], tuple[Transition, ...]], None] = (
            kernel.replace
        )
        self.baseline: Callable[[str, int], Baseline | None] = kernel.baseline
        self.evict: Callable[[int], None] = kernel.evict

    def __getstate__(self) -> dict[str, Any]:
        buckets, cached = self._kernel.state()
        return {"settings": self.settings, "_buckets": buckets, "_cache": cached}

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], History], tuple[dict[str, Any]]]:
        return restore_history, (self.__getstate__(),)
