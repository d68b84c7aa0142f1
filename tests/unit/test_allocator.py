"""The allocator choice: which environment re-executes, and a real re-execution."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataflows.allocator import (
    ENV,
    AllocatorMissing,
    active_allocator,
    find_jemalloc,
    preload_env,
    without_jemalloc,
)

LIB = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def test_auto_preloads_jemalloc_once_keeping_other_preloads() -> None:
    env = preload_env({"PATH": "/bin", "LD_PRELOAD": "/opt/other.so"}, LIB)
    assert env is not None
    assert env["LD_PRELOAD"] == f"{LIB} /opt/other.so"
    assert env["PATH"] == "/bin"
    # The re-executed process does not re-execute again, even if the loader
    # refused the library (it would loop).
    assert preload_env(env, LIB) is None
    assert preload_env({"LD_PRELOAD": LIB}, LIB) is None


@pytest.mark.parametrize("value", ["", "auto", "AUTO", "jemalloc", " jemalloc "])
def test_jemalloc_when_installed(value: str) -> None:
    env = preload_env({ENV: value}, LIB)
    assert env is not None and env["LD_PRELOAD"] == LIB


def test_system_never_preloads() -> None:
    assert preload_env({ENV: "system"}, LIB) is None


def test_missing_library() -> None:
    assert preload_env({}, None) is None  # auto: the system's malloc, quietly
    with pytest.raises(AllocatorMissing, match="apt-get install -y libjemalloc2"):
        preload_env({ENV: "jemalloc"}, None)


def test_unknown_choice_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="ORDERHEALTH_MALLOC must be one of auto, jemalloc"):
        preload_env({ENV: "tcmalloc"}, LIB)


def test_the_gate_s_environment_drops_only_jemalloc() -> None:
    env = {"PATH": "/bin", "LD_PRELOAD": f"{LIB} /opt/other.so", ENV: "auto"}
    assert without_jemalloc(env) == {"PATH": "/bin", "LD_PRELOAD": "/opt/other.so", ENV: "auto"}
    assert without_jemalloc({"LD_PRELOAD": LIB}) == {}
    assert without_jemalloc({"PATH": "/bin"}) == {"PATH": "/bin"}


def test_find_jemalloc_looks_in_the_library_directories(tmp_path: Path) -> None:
    empty, lib = tmp_path / "empty", tmp_path / "lib"
    empty.mkdir()
    lib.mkdir()
    assert find_jemalloc([str(empty), str(lib)]) is None
    (lib / "libjemalloc.so.2").write_bytes(b"")
    assert find_jemalloc([str(empty), str(lib)]) == str(lib / "libjemalloc.so.2")


def test_active_allocator_reads_the_mapped_libraries(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert active_allocator(str(maps)) == "system"
    maps.write_text(maps.read_text() + f"7f02-7f03 r-xp 0 08:01 2 {LIB}\n")
    assert active_allocator(str(maps)) == "jemalloc"
    assert active_allocator(str(tmp_path / "absent")) == "system"


_PROBE = (
    "from dataflows.allocator import reexec_with_allocator, active_allocator\n"
    "reexec_with_allocator()\n"
    "print(active_allocator())\n"
)


def _probe(choice: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "LD_PRELOAD")}
    env.pop("ORDERHEALTH_MALLOC_REEXECUTED", None)
    if choice is not None:
        env[ENV] = choice
    return subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_a_real_process_re_executes_under_jemalloc() -> None:
    """`make install` installs libjemalloc2, so here it must be found and used."""
    assert find_jemalloc() is not None, "libjemalloc2 is not installed (make allocator)"
    assert _probe(None).stdout.strip() == "jemalloc"
    assert _probe("jemalloc").stdout.strip() == "jemalloc"
    assert _probe("system").stdout.strip() == "system"
    refused = _probe("bogus")
    assert refused.returncode != 0 and "ORDERHEALTH_MALLOC must be one of" in refused.stderr
