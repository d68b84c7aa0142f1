"""The flow process's CPython settings (dataflows.interpreter_tuning)."""

from __future__ import annotations

import gc
import os
import platform
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflows.interpreter_tuning import (
    GC_THRESHOLDS,
    SWITCH_INTERVAL_S,
    _shared_libpython,
    freeze_start_up_heap,
    interpreter_build,
    tune_interpreter,
)


@pytest.fixture
def restored_interpreter() -> Iterator[None]:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_the_flow_hands_the_gil_to_its_commit_threads_every_millisecond(
    restored_interpreter: None,
) -> None:
    sys.setswitchinterval(0.005)  # CPython's default
    tune_interpreter()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0


def test_the_gate_freezes_its_start_up_heap_and_keeps_the_thresholds(
    restored_interpreter: None,
) -> None:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    freeze_start_up_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == thresholds


def test_the_build_is_named_by_version_executable_and_libpython() -> None:
    build = interpreter_build()
    assert build.startswith(f"CPython {platform.python_version()} (")
    assert os.path.realpath(sys._base_executable) in build
    assert build.endswith(("static libpython)", "shared libpython)"))


def test_a_shared_libpython_is_read_from_the_memory_map(tmp_path: Path) -> None:
    shared, static = tmp_path / "shared", tmp_path / "static"
    shared.write_text(
        "7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0\n"
    )
    static.write_text("5600-5601 r-xp 00000000 08:01 41 /usr/bin/python3.11\n")
    assert _shared_libpython(shared) is True
    assert _shared_libpython(static) is False
    # No memory map (not Linux): what the build's configuration says.
    assert _shared_libpython(tmp_path / "none") is bool(
        sysconfig.get_config_var("Py_ENABLE_SHARED")
    )
