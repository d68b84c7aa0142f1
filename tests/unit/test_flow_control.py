"""Flow control: the in-flight credit, and partitions kept together in event time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.app import _aligned
from dataflows.kafka_source import FlowControl

HOUR = 3_600_000_000


def test_without_alignment_only_the_credit_counts() -> None:
    control = FlowControl(max_in_flight=10)
    control.consumed(10, "t/0")
    control.advanced("t/0", 100 * HOUR)
    assert not control.may_read("t/1")
    control.completed(1, "t/0")
    assert control.may_read("t/0") and control.may_read("t/1")


def test_a_partition_ahead_of_a_laggard_with_a_backlog_waits_for_it() -> None:
    control = FlowControl(max_in_flight=None, max_skew_us=HOUR)
    for stream, hours in (("t/0", 10), ("t/1", 2)):
        control.consumed(5, stream, backlog=True)
        control.advanced(stream, hours * HOUR)
        control.completed(5, stream)
    assert not control.may_read("t/0")  # 8 h ahead of t/1
    assert control.may_read("t/1")
    control.consumed(5, "t/1", backlog=True)
    control.advanced("t/1", 9 * HOUR)
    control.completed(5, "t/1")
    assert control.may_read("t/0")  # within the hour


def test_a_caught_up_partition_never_holds_the_others_back() -> None:
    """A quiet partition's event time stays old; the others must not stall on it."""
    control = FlowControl(max_in_flight=None, max_skew_us=HOUR)
    control.consumed(3, "t/0", backlog=False)
    control.advanced("t/0", 1 * HOUR)
    control.completed(3, "t/0")
    control.consumed(5, "t/1", backlog=True)
    control.advanced("t/1", 50 * HOUR)
    control.completed(5, "t/1")
    assert control.may_read("t/1")


def test_a_partition_reads_again_only_once_its_last_read_is_processed() -> None:
    control = FlowControl(max_in_flight=None, max_skew_us=HOUR)
    control.consumed(5, "t/0")
    assert not control.may_read("t/0")
    control.completed(2, "t/0")  # dead letters complete one by one
    assert not control.may_read("t/0")
    control.completed(3, "t/0")
    assert control.may_read("t/0")


def test_a_laggard_whose_event_time_is_not_known_yet_holds_the_others() -> None:
    control = FlowControl(max_in_flight=None, max_skew_us=HOUR)
    control.consumed(5, "t/0")
    control.advanced("t/0", 5 * HOUR)
    control.completed(5, "t/0")
    control.consumed(5, "t/1")  # read, not processed yet
    assert not control.may_read("t/0")


streams = st.lists(
    st.tuples(st.none() | st.integers(0, 100), st.integers(0, 3), st.booleans()),
    min_size=1,
    max_size=8,
)


@given(streams=streams, skew_h=st.integers(0, 5))
def test_some_partition_with_a_backlog_may_always_read(
    streams: list[tuple[int | None, int, bool]], skew_h: int
) -> None:
    """Liveness: once nothing is in flight, alignment never pauses every partition."""
    control = FlowControl(max_in_flight=None, max_skew_us=skew_h * HOUR)
    for index, (hours, in_flight, backlog) in enumerate(streams):
        name = f"t/{index}"
        control.consumed(in_flight, name, backlog=backlog)
        control.advanced(name, None if hours is None else hours * HOUR)
    names = [f"t/{i}" for i in range(len(streams))]
    for name in names:
        control.completed(control._streams[name].in_flight, name)
    waiting = [name for name, (_h, _f, backlog) in zip(names, streams, strict=True) if backlog]
    if waiting:
        assert any(control.may_read(name) for name in waiting)


@pytest.mark.parametrize(
    ("env", "multi_process", "expected"),
    [
        ({}, False, False),
        ({"BYTEWAX_WORKERS_PER_PROCESS": "4"}, False, True),
        ({"BYTEWAX_WORKERS_PER_PROCESS": "4"}, True, False),
        ({"ORDERHEALTH_ALIGN_PARTITIONS": "1"}, False, True),
        ({"BYTEWAX_WORKERS_PER_PROCESS": "4", "ORDERHEALTH_ALIGN_PARTITIONS": "0"}, False, False),
    ],
)
def test_the_production_flow_aligns_several_workers_of_one_process(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], multi_process: bool, expected: bool
) -> None:
    for name in ("BYTEWAX_WORKERS_PER_PROCESS", "ORDERHEALTH_ALIGN_PARTITIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _aligned(multi_process) is expected
