"""CPython settings for the flow process: the garbage collector and the GIL's switch interval.

And which CPython build runs it (:func:`interpreter_build`), because the build
moves the figures.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import sysconfig
from pathlib import Path

__all__ = [
    "GC_THRESHOLDS",
    "SWITCH_INTERVAL_S",
    "freeze_start_up_heap",
    "interpreter_build",
    "tune_garbage_collector",
    "tune_interpreter",
]

#: Allocations between young-generation collections (CPython's default: 700).
GC_THRESHOLDS = (100_000, 50, 100)
#: Seconds a thread holds the GIL before another waiting one gets it (default 0.005).
SWITCH_INTERVAL_S = 0.001


def freeze_start_up_heap() -> None:
    """Move everything alive now out of the collector's sight for good.

    What a process loaded at start-up (libraries, GX's context) lives as long
    as the process; full collections otherwise walk all of it again and again.
    """
    gc.collect()
    gc.freeze()


def tune_garbage_collector() -> None:
    """Collect rarely, and never scan what was loaded at start-up.

    The flow allocates millions of short-lived, acyclic objects (events, rows,
    contribution vectors); with CPython's default thresholds the cyclic
    collector ran constantly and scanned the whole hot state each time.  On
    100k events: 128 s -> 85 s.  Nothing in the flow relies on cycle
    collection for timely clean-up, so rarer collections only delay freeing
    the rare cycle.
    """
    freeze_start_up_heap()
    gc.set_threshold(*GC_THRESHOLDS)


def tune_interpreter() -> None:
    """The garbage collector as above, and a 1 ms GIL switch interval.

    The Delta commits run on threads of their own (:mod:`dataflows.sinks`).
    delta-rs releases the GIL while it writes, but each commit's Python
    parts need it back from the event thread, which is busy nearly all the
    time at load: with CPython's 5 ms interval every hand-over waited up to
    that long.  At 10k events/s the staging commit, which publication waits
    for, took 125 ms at the median (p95 195 ms); with 1 ms, 95 ms (p95
    150 ms), and freshness p95 moved by ~0.1 s.  Throughput did not move
    (three interleaved pairs of 500k events: -0.7%, within noise).
    """
    tune_garbage_collector()
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _shared_libpython(maps: Path = Path("/proc/self/maps")) -> bool:
    """Whether this process runs CPython from a shared ``libpython``.

    Read from the process's memory map where there is one: Debian's static
    executable reports the shared build's configuration in ``sysconfig``.
    """
    try:
        return "/libpython3" in maps.read_text()
    except OSError:
        return bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))


def interpreter_build() -> str:
    """This interpreter: version, executable, and a static or shared ``libpython``.

    Why: the flow's pace depends on the CPython build.  Debian's static build
    with profile-guided and link-time optimisation ran it 3-4% faster than
    pyenv's default shared one (docs/scaling.md, "An optimised interpreter"),
    so a run's summary and the bench's results name the build they came from.
    """
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    linkage = "shared" if _shared_libpython() else "static"
    return f"CPython {platform.python_version()} ({executable}, {linkage} libpython)"
