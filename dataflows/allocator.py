"""The process's memory allocator: jemalloc when the machine has it.

Why: the streaming core allocates and frees in bursts -- a batch's window
deltas, rows and column buffers grow by doubling, a retired order's events
are freed all at once -- and glibc's malloc spent a tenth of the
per-partition step in ``realloc`` and its own bookkeeping (py-spy
``--native`` over ``bench.core``).  With jemalloc preloaded the same core took
7% less CPU per event (five interleaved pairs of ``bench.core`` at 200,000
events, every pair faster; ``docs/scaling.md``, "The allocator").

An allocator can only be chosen before the process starts, so the
``orderhealth`` command re-executes itself once with jemalloc in
``LD_PRELOAD``.  The quality gate's process is started without it
(:func:`without_jemalloc`): GX validating a large batch in pandas was ~11%
slower under jemalloc (187,130 rows: 230 against 207 ms, ``bench.gate``,
two runs each), and no faster on small ones.
``ORDERHEALTH_MALLOC`` chooses:

* ``auto`` (or unset): jemalloc if its library is installed, else the
  system's;
* ``jemalloc``: jemalloc, or a clear error when it is missing;
* ``system``: the C library's malloc, as without this module.

This module imports nothing heavy: it runs before the command's imports.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "ALLOCATORS",
    "ENV",
    "AllocatorMissing",
    "active_allocator",
    "find_jemalloc",
    "preload_env",
    "reexec_with_allocator",
    "without_jemalloc",
]

ENV = "ORDERHEALTH_MALLOC"
ALLOCATORS = ("auto", "jemalloc", "system")
#: Set in the re-executed process: never re-execute twice (a library the
#: loader refused would otherwise loop).
_REEXECUTED = "ORDERHEALTH_MALLOC_REEXECUTED"
_LIBRARY = "libjemalloc.so.2"


class AllocatorMissing(RuntimeError):
    """``ORDERHEALTH_MALLOC=jemalloc`` but no jemalloc library is installed."""


def find_jemalloc(roots: Sequence[str] | None = None) -> str | None:
    """The path of jemalloc's shared library (Debian: ``libjemalloc2``), or None."""
    if roots is None:
        arch = sysconfig.get_config_var("MULTIARCH") or ""
        roots = [
            *([f"/usr/lib/{arch}", f"/lib/{arch}"] if arch else []),
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/lib",
        ]
    for root in roots:
        candidate = Path(root) / _LIBRARY
        if candidate.is_file():
            return str(candidate)
    return None


def active_allocator(maps: str = "/proc/self/maps") -> str:
    """``jemalloc`` when this process has it mapped, else ``system``."""
    try:
        text = Path(maps).read_text()
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in text else "system"


def preload_env(env: Mapping[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to re-execute with, or None to stay as this process is.

    Pure, for the tests: ``env`` is the current environment, ``library`` what
    :func:`find_jemalloc` found.
    """
    wanted = env.get(ENV, "auto").strip().lower() or "auto"
    if wanted not in ALLOCATORS:
        raise ValueError(f"{ENV} must be one of {', '.join(ALLOCATORS)}, not {wanted!r}")
    if wanted == "system" or env.get(_REEXECUTED):
        return None
    if library is None:
        if wanted == "jemalloc":
            raise AllocatorMissing(
                f"{ENV}=jemalloc but {_LIBRARY} is not installed "
                "(Debian: apt-get install -y libjemalloc2), or set it to auto or system"
            )
        return None
    preload = env.get("LD_PRELOAD", "")
    if library in preload.split():
        return None
    return {
        **env,
        "LD_PRELOAD": f"{library} {preload}".strip(),
        _REEXECUTED: "1",
    }


def reexec_with_allocator() -> None:
    """Replace this process with itself under jemalloc, if wanted and not yet so.

    Does nothing off Linux, when jemalloc is already loaded, or when it is
    not wanted or not installed (under ``auto``).
    """
    if not sys.platform.startswith("linux") or active_allocator() == "jemalloc":
        return
    env = preload_env(os.environ, find_jemalloc())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def without_jemalloc(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a child process that should run on the system's malloc.

    Takes jemalloc out of ``LD_PRELOAD`` (keeping anything else preloaded);
    the child is not the ``orderhealth`` command, so it does not re-execute.
    """
    out = {key: value for key, value in env.items() if key != "LD_PRELOAD"}
    kept = [lib for lib in env.get("LD_PRELOAD", "").split() if "libjemalloc" not in lib]
    if kept:
        out["LD_PRELOAD"] = " ".join(kept)
    return out
