"""Which core the stream runs: native facts, window deltas and window store, or Python.

Fact expansion (one fact into a row change per window size and dimension),
the window totals, and reading an order's facts from its view were the
largest costs of the core in CPython.  The ``orderhealth_native`` extension
(``native/``, Rust) implements them behind the same interfaces
(:class:`~dataflows.contributions.WindowDelta`,
:class:`~dataflows.window_metrics.WindowStore`, :func:`items_maker`); the
Python implementations stay the reference the tests hold it equal to.

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
from typing import cast

from dataflows.contributions import _PLAN, Delta, OrderItems, WindowDelta, order_items
from dataflows.dimensions import DIMENSION_READERS, Attribute, Constant, Timeline
from dataflows.lifecycle import OrderView
from dataflows.metrics import FACTS, MEASURES
from dataflows.outcome import OutcomeStatus
from dataflows.settings import HealthSettings

__all__ = [
    "CORES",
    "NativeCoreMissing",
    "core_name",
    "delta_factory",
    "items_maker",
    "native_module",
    "native_readers",
]

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


def _installed() -> ModuleType:
    native = native_module()
    if native is None:
        raise NativeCoreMissing("the orderhealth_native extension is not installed")
    return native


def delta_factory(settings: HealthSettings, core: str | None = None) -> Callable[[], WindowDelta]:
    """A maker of empty window deltas for ``settings``, of the chosen core."""
    core = core or core_name()
    if core == "python":
        return lambda: Delta(settings)
    native = _installed()
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


def items_maker(
    settings: HealthSettings, core: str | None = None
) -> Callable[[OrderView], OrderItems]:
    """A maker of an order's items from its view (:func:`~dataflows.contributions.order_items`).

    The native core evaluates the catalogue's built-in facts in Rust and keeps
    the items there for its delta; a fact it does not know (a plugin's, or a
    new one) is still evaluated in Python and handed in.  A dimension read by
    anything but a plain :class:`Constant`, :class:`Attribute` or
    :class:`Timeline` keeps every fact in Python.
    """
    core = core or core_name()
    readers = native_readers(settings)
    if core == "python" or readers is None:
        return lambda view: order_items(view, settings)
    native = _installed()
    statuses = (OutcomeStatus.ON_TIME, OutcomeStatus.LATE, OutcomeStatus.CANCELLED)
    kernel = native.Facts([fact.name for fact in FACTS], readers, statuses)
    in_python: list[int] = kernel.python_facts()
    if not in_python:
        maker: Callable[[OrderView], OrderItems] = kernel.items
        return maker
    return lambda view: kernel.items(view, order_items(view, settings, in_python))


def native_readers(settings: HealthSettings) -> list[tuple[str, str]] | None:
    """Each dimension's reader as the native facts take it, or None if one is custom."""
    out = []
    for dim in settings.dimensions:
        reader = DIMENSION_READERS[dim]
        kind = type(reader)  # exactly: a subclass may read differently
        if kind is Constant:
            out.append(("constant", cast(Constant, reader).value))
        elif kind is Attribute:
            out.append(("attribute", cast(Attribute, reader).name))
        elif kind is Timeline:
            out.append(("timeline", cast(Timeline, reader).field))
        else:
            return None
    return out
