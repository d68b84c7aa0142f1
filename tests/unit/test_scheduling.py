"""Background work at a higher nice value: real threads and processes, read back from the OS.

A nice value cannot be lowered again without privileges, so every test
lowers a thread or process of its own, never the test runner's thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from dataflows.flow import FlowConfig
from dataflows.scheduling import (
    DEFAULT_BACKGROUND_NICE,
    lower_process,
    lower_runtime_threads,
    lower_this_thread,
    thread_nice,
)
from dataflows.settings import HealthSettings
from dataflows.sinks import _Commits

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux nice values")

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _in_thread(body: Callable[[], T]) -> T:
    """Run ``body`` on a new thread and return what it returned."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(body()))
    thread.start()
    thread.join()
    return out[0]


def _child(code: str) -> str:
    """Run ``code`` in a new interpreter (60 s at most) and return its output."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout


def test_a_thread_lowers_itself_and_its_children_only() -> None:
    def body() -> tuple[bool, int, int, int]:
        changed = lower_this_thread(10)
        child = _in_thread(lambda: thread_nice(threading.get_native_id()))
        return changed, thread_nice(threading.get_native_id()), child, lower_this_thread(10)

    changed, mine, child, again = _in_thread(body)
    assert (changed, mine, child, again) == (True, 10, 10, False)
    assert thread_nice(threading.get_native_id()) == os.getpriority(os.PRIO_PROCESS, 0)


def test_a_higher_nice_value_is_never_lowered() -> None:
    def body() -> tuple[bool, int]:
        lower_this_thread(15)
        return lower_this_thread(10), thread_nice(threading.get_native_id())

    assert _in_thread(body) == (False, 15)


def test_zero_changes_nothing_and_out_of_range_is_an_error() -> None:
    assert _in_thread(lambda: lower_this_thread(0)) is False
    assert lower_runtime_threads(0) == 0
    assert lower_process(0) == 0
    for wrong in (-1, 20):
        with pytest.raises(ValueError, match="0 to 19"):
            lower_this_thread(wrong)
        with pytest.raises(ValueError, match="0 to 19"):
            lower_runtime_threads(wrong)
        with pytest.raises(ValueError, match="0 to 19"):
            lower_process(wrong)


def test_runtime_threads_are_found_by_name() -> None:
    """Threads named as tokio names its workers are lowered; others are not."""
    ready, done = threading.Barrier(3, timeout=30), threading.Event()
    ids: dict[str, int] = {}

    def named(name: str) -> None:
        ids[name] = threading.get_native_id()
        Path(f"/proc/self/task/{ids[name]}/comm").write_text(name)
        ready.wait()
        done.wait(timeout=30)

    threads = [
        threading.Thread(target=named, args=(name,)) for name in ("tokio-rt-worker", "rdk:main")
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    try:
        # Earlier tests may have started delta-rs's real runtime in this process.
        assert lower_runtime_threads(7) >= 1
        assert thread_nice(ids["tokio-rt-worker"]) == 7
        assert thread_nice(ids["rdk:main"]) == os.getpriority(os.PRIO_PROCESS, 0)
        assert lower_runtime_threads(7) == 0  # already there: nothing to do
    finally:
        done.set()
        for thread in threads:
            thread.join()


def test_a_process_lowers_every_thread_also_those_started_before() -> None:
    # A thread can end between the listing and the read (the late one does, even
    # joined: the OS thread outlives the join a moment); that once raised here,
    # left the early thread waiting and hung CI.  Now a vanished thread is
    # skipped, both threads are daemons and the child has a deadline.
    code = """
import os, threading
from dataflows.scheduling import lower_process, thread_nice
stop = threading.Event()
early = threading.Thread(target=stop.wait, daemon=True)
early.start()
try:
    lower_process(12)
    late = []
    thread = threading.Thread(
        target=lambda: late.append(thread_nice(threading.get_native_id())), daemon=True
    )
    thread.start()
    thread.join()
    values = set()
    for task in os.listdir("/proc/self/task"):
        try:
            values.add(thread_nice(int(task)))
        except ProcessLookupError:
            pass  # a thread that ended after the listing (joined ones linger a moment)
finally:
    stop.set()
print(sorted(values), late)
"""
    assert _child(code).split("\n")[0] == "[12] [12]"


def test_the_gate_process_runs_at_the_nice_value_it_is_given() -> None:
    code = """
import os
import dataflows.gatekeeper as gate
gate._serve = lambda *args: print(os.getpriority(os.PRIO_PROCESS, 0)) or 0
gate.main(["/nonexistent", "--nice", "9"])
"""
    assert _child(code).strip() == "9"


@pytest.mark.parametrize("background", [True, False])
def test_background_commits_run_at_the_nice_value(background: bool) -> None:
    seen: list[int] = []
    commits: _Commits[int] = _Commits(
        "t",
        lambda batch: seen.append(thread_nice(threading.get_native_id())),
        background=background,
        nice=6,
    )
    commits.add(1)
    commits.close()
    # Inline commits run on the caller's thread, whose value stays.
    assert seen == [6 if background else os.getpriority(os.PRIO_PROCESS, 0)]


def test_background_work_yields_in_a_one_off_run_and_not_when_tailing() -> None:
    config = FlowConfig(
        bootstrap_servers="localhost:9092",
        topic="orders",
        partitions=1,
        lakehouse="/tmp/lake",
        settings=HealthSettings.load(None),
    )
    assert config.background_nice_value == 0  # tailing: on the way to publication
    one_off = msgspec.structs.replace(config, tail=False)
    assert one_off.background_nice_value == DEFAULT_BACKGROUND_NICE
    assert msgspec.structs.replace(one_off, background_nice=0).background_nice_value == 0
    assert msgspec.structs.replace(config, background_nice=3).background_nice_value == 3
