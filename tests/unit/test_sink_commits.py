"""A table's background commits: in order, coalesced while one runs, bounded, errors raised."""

from __future__ import annotations

import threading

import pytest

from dataflows.sinks import _Commits


class _Gated:
    """A writer that blocks each commit until the test lets it finish."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.commits: list[list[int]] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self._fail_on = fail_on

    def __call__(self, batch: list[int]) -> None:
        self.started.release()
        self.release.acquire()
        if self._fail_on in batch:
            raise OSError(f"disk full at {self._fail_on}")
        self.commits.append(batch)


def test_inline_commits_one_payload_at_a_time() -> None:
    written: list[list[int]] = []
    commits = _Commits("t", written.append, background=False)
    commits.add(1)
    commits.add(2)
    assert written == [[1], [2]]
    commits.close()


def test_epochs_that_end_during_a_commit_go_into_the_next_one_together() -> None:
    writer = _Gated()
    commits: _Commits[int] = _Commits("t", writer, background=True)
    commits.add(1)
    writer.started.acquire()  # commit [1] is running
    commits.add(2)
    commits.add(3)  # neither waits for the running commit
    writer.release.release()
    writer.started.acquire()  # commit [2, 3] is running
    writer.release.release()
    commits.close()
    assert writer.commits == [[1], [2, 3]]


def test_the_queue_is_bounded() -> None:
    writer = _Gated()
    commits: _Commits[int] = _Commits("t", writer, background=True, max_pending=2)
    commits.add(0)
    writer.started.acquire()
    commits.add(1)
    commits.add(2)
    third_added = threading.Event()

    def add_third() -> None:
        commits.add(3)
        third_added.set()

    adder = threading.Thread(target=add_third)
    adder.start()
    assert not third_added.wait(0.2)  # two payloads wait: the third add blocks
    writer.release.release()  # commit [0] ends; the drain takes [1, 2]
    assert third_added.wait(30)
    adder.join()
    for _ in range(2):
        writer.started.acquire()
        writer.release.release()
    commits.close()
    assert writer.commits == [[0], [1, 2], [3]]


def test_a_failed_commit_is_raised_and_stops_the_table() -> None:
    writer = _Gated(fail_on=1)
    commits: _Commits[int] = _Commits("t", writer, background=True)
    commits.add(1)
    writer.started.acquire()
    writer.release.release()
    with pytest.raises(OSError, match="disk full at 1"):
        commits.close()
    with pytest.raises(OSError, match="disk full at 1"):
        commits.add(2)
    assert writer.commits == []


def test_a_spaced_table_gathers_epochs_until_its_interval_a_full_queue_or_the_end() -> None:
    writer = _Gated()
    commits: _Commits[int] = _Commits(
        "t", writer, background=True, min_interval_s=3600, max_pending=3
    )
    commits.add(1)  # no commit before it: committed at once
    assert writer.started.acquire(timeout=30)
    writer.release.release()
    commits.add(2)
    commits.add(3)
    assert not writer.started.acquire(timeout=0.2)  # gathered: the interval has not passed
    commits.add(4)  # the queue is full: committed without waiting out the interval
    assert writer.started.acquire(timeout=30)
    writer.release.release()
    commits.add(5)
    closer = threading.Thread(target=commits.close)
    closer.start()  # the flow ends: what is gathered is committed now
    assert writer.started.acquire(timeout=30)
    writer.release.release()
    closer.join(30)
    assert not closer.is_alive()
    assert writer.commits == [[1], [2, 3, 4], [5]]
