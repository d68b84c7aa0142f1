"""Background work yields the CPU to the event thread.

Why: a run's pace is its event thread's (decode, hot state, windows: Bytewax
runs a worker's steps on one thread).  The Delta commits -- their Python
threads and delta-rs's tokio workers -- and the quality gate's process have
slack: without recovery no epoch waits for them (:class:`dataflows.sinks.
_Commits`).  On a 2-core machine they still took the CPU from the event
thread whenever three threads were runnable: in a 400k-event run the event
thread waited 1.29 s on the run queue next to 12.2 s on a CPU
(``/proc/<pid>/task/<tid>/schedstat``), with the machine ~1.5 cores busy on
average.  A higher nice value (a lower priority) for the background work
lets the event thread run as soon as it is runnable; the background work
still gets every cycle the event thread leaves.

The gate and the staging commit are also on the way to publication, so
the background work yields only in a one-off run, which is done when its
last epoch is published (the policy is
:attr:`dataflows.flow.FlowConfig.background_nice_value`, the figures are in
docs/scaling.md, "Background work yields").

Linux's nice value belongs to a thread, and a new thread starts with its
creator's.  So the gate's process raises its own at start (the threads its
imports started included; later threads inherit it), a commit thread
raises its own, and the commit threads raise delta-rs's runtime threads',
which the event thread created when it first opened a table
(:func:`lower_runtime_threads`).  Taking a nice value back down needs
privileges, so nothing here ever does.  Elsewhere than Linux all of this
does nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

__all__ = [
    "DEFAULT_BACKGROUND_NICE",
    "RUNTIME_THREAD_PREFIXES",
    "lower_process",
    "lower_runtime_threads",
    "lower_this_thread",
    "thread_nice",
]

log = logging.getLogger(__name__)

#: The nice value background work runs at in a one-off run (0: as the
#: event thread).  10 rather than 19: 19 gained no more and was less steady
#: (docs/scaling.md, "Background work yields").
DEFAULT_BACKGROUND_NICE = 10
#: Names (``/proc/.../comm``) of the threads of delta-rs's tokio runtime.
RUNTIME_THREAD_PREFIXES: tuple[str, ...] = ("tokio-",)

_LINUX = sys.platform.startswith("linux")
#: This process's threads, one directory each.
_TASKS = Path("/proc/self/task")


def _check(nice: int) -> None:
    if not 0 <= nice <= 19:
        raise ValueError(f"a background nice value is 0 to 19, not {nice}")


def thread_nice(tid: int) -> int:
    """The nice value of thread ``tid`` of this process."""
    return os.getpriority(os.PRIO_PROCESS, tid)


def _lower(tid: int, nice: int) -> bool:
    """Set thread ``tid`` to ``nice`` if that lowers it; whether it did."""
    try:
        if thread_nice(tid) >= nice:
            return False
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as err:  # gone meanwhile, or not allowed: run as it is
        log.debug("thread %d kept its priority: %s", tid, err)
        return False
    return True


def lower_this_thread(nice: int) -> bool:
    """Run the calling thread (and the threads it starts) at ``nice``."""
    _check(nice)
    return _LINUX and nice > 0 and _lower(threading.get_native_id(), nice)


def lower_process(nice: int) -> int:
    """Run every thread of this process at ``nice``; return how many changed.

    For a child started for background work, first thing in its ``main``:
    threads that imports started (deltalake's allocator, for one) are lowered
    with the main thread, and every thread started later inherits the value.
    """
    return _lower_threads(nice, None)


def lower_runtime_threads(nice: int) -> int:
    """Lower this process's :data:`RUNTIME_THREAD_PREFIXES` threads; return how many changed.

    A thread already at ``nice`` or above is left alone, so calling this
    before each commit costs a directory listing and a few small reads.
    """
    return _lower_threads(nice, RUNTIME_THREAD_PREFIXES)


def _lower_threads(nice: int, prefixes: tuple[str, ...] | None) -> int:
    """Lower this process's threads (those named with ``prefixes``, if given)."""
    _check(nice)
    if not _LINUX or nice == 0:
        return 0
    changed = 0
    try:
        entries = list(_TASKS.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if prefixes is not None:
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue  # the thread ended
            if not name.startswith(prefixes):
                continue
        if _lower(int(entry.name), nice):
            changed += 1
    return changed
