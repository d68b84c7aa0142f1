"""Which core the stream runs: native (Rust) kernels or the Python reference.

Fact expansion (one fact into a row change per window size and dimension),
the window totals, deriving an order's view, reading its facts from the view,
writing its lifecycle row, the outlier baselines and the bronze rows were the
largest costs of the core in CPython.  The ``orderhealth_native`` extension
(``native/``, Rust) implements them behind the same interfaces; the Python
implementations stay the reference the tests hold it equal to.

This module chooses the core and holds what every twin shares: the
extension, the fingerprint that guards a twin against a changed reference,
and the wrapping of native column buffers as Arrow.  Each twin has a module
of its own, with its maker and its guard:

* :func:`delta_factory` (here): window deltas and the window store;
* :mod:`dataflows.native_facts`: an order's facts (``items_maker``);
* :mod:`dataflows.native_view`: an order's view (``view_maker``);
* :mod:`dataflows.native_dwells`: the outlier baselines (``new_history``);
* :mod:`dataflows.native_lifecycle`: ``silver/order_lifecycle`` rows (``lifecycle_maker``);
* :mod:`dataflows.native_bronze`: ``bronze/order_events`` rows (``bronze_maker``);
* :mod:`dataflows.native_times`: event times as microseconds (``to_us_of``);
* :mod:`dataflows.native_intake`: a partition batch's intake (``intake_maker``);
* :mod:`dataflows.native_decode`: the decode step (``decode_maker``).

``ORDERHEALTH_CORE`` chooses: ``native``, ``python``, or unset (native when
the extension is installed, else Python with a warning).  ``make install``
builds the extension; see ``native/README.md``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tokenize
from collections.abc import Callable
from functools import cache
from types import ModuleType

import pyarrow as pa

from dataflows.contributions import _PLAN, Delta, WindowDelta
from dataflows.metrics import MEASURES
from dataflows.settings import HealthSettings

__all__ = [
    "CORES",
    "NativeCoreMissing",
    "arrow_arrays",
    "core_name",
    "delta_factory",
    "fingerprint",
    "installed",
    "native_module",
    "still_checked",
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


def installed() -> ModuleType:
    native = native_module()
    if native is None:
        raise NativeCoreMissing("the orderhealth_native extension is not installed")
    return native


def delta_factory(settings: HealthSettings, core: str | None = None) -> Callable[[], WindowDelta]:
    """A maker of empty window deltas for ``settings``, of the chosen core."""
    core = core or core_name()
    if core == "python":
        return lambda: Delta(settings)
    native = installed()
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


def fingerprint(section: str) -> str:
    """A hash of Python source, comments and layout aside (a twin's guard)."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE}
    tokens = [
        f"{token.type}:{token.string}"
        for token in tokenize.generate_tokens(io.StringIO(section).readline)
        if token.type not in skip
    ]
    return hashlib.sha256("\n".join(tokens).encode()).hexdigest()[:16]


def still_checked(fingerprint: Callable[[], str], checked: str, changed: str) -> bool:
    """Whether a native twin was checked against the Python it mirrors as it is now.

    If not, log ``changed`` (once per process: callers cache this) so that
    the slower Python path is never a silent surprise.
    """
    try:
        current = fingerprint() == checked
    except (OSError, ValueError):  # no source to read (a frozen install)
        current = False
    if not current:
        log.warning(changed)
    return current


def arrow_arrays(
    columns: list[tuple[str, bytes | None, bytes | None, bytes, int]],
    size: int,
    types: dict[str, pa.DataType],
) -> dict[str, pa.Array]:
    """Native column buffers ``(name, validity, offsets, values, nulls)`` as Arrow arrays."""
    out = {}
    for name, validity, offsets, values, nulls in columns:
        buffers = [None if validity is None else pa.py_buffer(validity)]
        if offsets is not None:
            buffers.append(pa.py_buffer(offsets))
        buffers.append(pa.py_buffer(values))
        out[name] = pa.Array.from_buffers(types[name], size, buffers, null_count=nulls)
    return out
