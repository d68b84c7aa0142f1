"""Which core the stream runs: native window deltas and window store, or Python.

Fact expansion (one fact into a row change per window size and dimension)
and the window totals were the largest per-row costs of the core in CPython.
The ``orderhealth_native`` extension (``native/``, Rust) implements both
behind the same interfaces (:class:`~dataflows.contributions.WindowDelta`,
:class:`~dataflows.window_metrics.WindowStore`); the Python implementations
stay the reference the tests hold it equal to.

``ORDERHEALTH_CORE`` chooses: ``native``, ``python``, or unset (native when
the extension is installed, else Python with a warning).  ``make install``
builds the extension; see ``native/README.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cache
from types import ModuleType

from dataflows.contributions import _PLAN, Delta, WindowDelta
from dataflows.metrics import MEASURES
from dataflows.settings import HealthSettings

__all__ = ["CORES", "NativeCoreMissing", "core_name", "delta_factory", "native_module"]

log = logging.getLogger(__name__)

CORES = ("native", "python")
_ENV = "ORDERHEALTH_CORE"


class NativeCoreMissing(RuntimeError):
    """``ORDERHEALTH_CORE=native`` but the extension is not installed."""


def native_module() -> ModuleType | None:
    """The extension module, or None when it is not installed."""
    try:
        import orderhealth_native
    except ImportError:
        return None
    return orderhealth_native


def core_name() -> str:
    """The core this process runs: ``native`` or ``python`` (see module docstring)."""
    wanted = os.environ.get(_ENV, "").strip().lower()
    if wanted and wanted not in CORES:
        raise ValueError(f"{_ENV} must be one of {', '.join(CORES)}, not {wanted!r}")
    available = native_module() is not None
    if wanted == "native" and not available:
        raise NativeCoreMissing(
            f"{_ENV}=native, but the orderhealth_native extension is not installed "
            "(make install builds it; see native/README.md)"
        )
    if wanted:
        return wanted
    if not available:
        _warn_python_fallback()
        return "python"
    return "native"


@cache
def _warn_python_fallback() -> None:
    """Once per process: every partition and the window step ask."""
    log.warning(
        "the orderhealth_native extension is not installed: running the Python core "
        "(slower; make install builds it)"
    )


def delta_factory(settings: HealthSettings, core: str | None = None) -> Callable[[], WindowDelta]:
    """A maker of empty window deltas for ``settings``, of the chosen core."""
    core = core or core_name()
    if core == "python":
        return lambda: Delta(settings)
    native = native_module()
    if native is None:
        raise NativeCoreMissing("the orderhealth_native extension is not installed")
    plan = native.Plan(
        len(MEASURES),
        list(settings.window_sizes),
        list(settings.dimensions),
        [
            ([(index, agg.value) for index, agg in measures], slot)
            for _fact, measures, slot in _PLAN
        ],
    )
    maker: Callable[[], WindowDelta] = lambda: native.Delta(plan)  # noqa: E731
    return maker
