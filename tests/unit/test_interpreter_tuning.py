"""The flow process's CPython settings (dataflows.interpreter_tuning)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from dataflows.interpreter_tuning import (
    GC_THRESHOLDS,
    SWITCH_INTERVAL_S,
    freeze_start_up_heap,
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
