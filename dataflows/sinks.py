"""Bytewax sinks that write the lakehouse through :class:`lakehouse.writer.DeltaWriter`.

Guarantee: **exactly-once** into Delta across crashes and restarts.  Items are
buffered for the epoch (as Arrow tables, converted as they arrive) and
committed when Bytewax snapshots the sink at the epoch's end, before the
epoch is recorded in the recovery store: one Delta commit per table per
epoch.  A crash after the commit but before the recovery
store records the epoch replays the epoch; the writer then recognises the
replayed rows from the app transactions and skips them.  With recovery off,
the flow restarts from the beginning of the topic and the same skipping makes
the rerun a no-op.

Without recovery an epoch's commits also need not finish before the next
epoch starts: each table then commits on a thread of its own
(:class:`_Commits`), one commit at a time and in epoch order, while the
flow goes on; epochs that end while a commit runs go into the next one
together.  delta-rs releases the GIL while it writes, so a commit's I/O
and Parquet encoding overlap the next epoch's Python work (the flow's Delta
commits were a quarter of its wall time).  An error surfaces at the table's
next flush or at the end of the run.  With recovery on, a flush is
synchronous: the recovery store must not record an epoch whose rows are not
yet in Delta.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Generic, Literal, TypeVar

import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from dataflows.run_log import run_stats
from dataflows.scheduling import lower_runtime_threads, lower_this_thread
from lakehouse.tables import VALIDATION_RUNS, TableSpec
from lakehouse.writer import Chunk, DeltaWriter
from quality.record_rules import Tallies, count_fates, tally_rows

__all__ = ["SINK_KEY", "AfterFlush", "DeltaSink", "RecordRuleSink"]

#: Every item of a Delta sink is routed to one sink partition: one writer per
#: table avoids concurrent-commit conflicts between workers.
SINK_KEY = "delta"

Mode = Literal["append", "upsert"]
T = TypeVar("T")
#: Called after every flush, with ``closing=True`` at the end of the flow.
AfterFlush = Callable[[bool], None]


class _Commits(Generic[T]):
    """One table's commits: inline, or in order on a thread of their own.

    In the background (see the module docstring) each epoch's payload joins a
    queue that the table's thread drains whole, one commit per drain.  When a
    commit outlasts an epoch, the epochs that arrived meanwhile go into the
    next commit together: the event thread does not wait for the table (it
    waited for the staging commit ~8% of a run), and a slow table gets fewer,
    larger commits.  At most ``max_pending`` payloads wait; beyond that the
    event thread does, which bounds the memory held.  A failed commit stops
    the table's commits, and its error is raised at the next flush or close.

    ``min_interval_s`` spaces a table's commits: its thread gathers epochs
    until that long after its previous commit started (or until
    ``max_pending`` wait, or the flow ends).  The tables publication does not
    wait for use it (``FlowConfig.side_commit_interval_s``): their commits
    were a third of the flow's commit time and competed on 2 cores with the
    staging commit and the gate, which are on the way to publication.

    ``nice``: with ``background``, the commit thread and delta-rs's runtime
    threads run at this nice value, so that they yield the CPU to the event
    thread (:mod:`dataflows.scheduling`); 0 leaves them as they are.
    """

    def __init__(
        self,
        name: str,
        write: Callable[[list[T]], None],
        *,
        background: bool,
        min_interval_s: float = 0.0,
        max_pending: int | None = None,
        nice: int = 0,
    ) -> None:
        self._write = write
        self._nice = nice
        # A spaced table gathers several epochs per commit: room for them.
        self._max_pending = max_pending or (16 if min_interval_s > 0 else 4)
        self._min_interval = min_interval_s
        self._last_start = float("-inf")
        self._closing = False
        self._pool = (
            ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"commit {name}",
                initializer=lower_this_thread,
                initargs=(nice,),
            )
            if background
            else None
        )
        self._changed = threading.Condition()
        self._queue: list[T] = []
        self._busy = False
        self._error: BaseException | None = None

    def add(self, payload: T) -> None:
        """Commit ``payload`` now (inline) or with the next drain (background)."""
        if self._pool is None:
            self._write([payload])
            return
        with self._changed:
            self._raise_error()
            while len(self._queue) >= self._max_pending:
                self._changed.wait()
                self._raise_error()
            self._queue.append(payload)
            self._changed.notify_all()  # a gathering drain commits when the queue is full
            if not self._busy:
                self._busy = True
                self._pool.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._changed:
                while not self._closing and 0 < len(self._queue) < self._max_pending:
                    wait = self._last_start + self._min_interval - time.monotonic()
                    if wait <= 0:
                        break
                    self._changed.wait(wait)
                batch, self._queue = self._queue, []
                self._changed.notify_all()
                if not batch:
                    self._busy = False
                    return
                self._last_start = time.monotonic()
            # The runtime may have started threads since the last commit.
            lower_runtime_threads(self._nice)
            try:
                self._write(batch)
            except BaseException as err:
                with self._changed:
                    self._error = err
                    self._queue = []
                    self._busy = False
                    self._changed.notify_all()
                return

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Wait for every queued commit; raise a commit's error."""
        if self._pool is None:
            return
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            while self._busy:
                self._changed.wait()
        self._pool.shutdown()
        self._raise_error()


class _DeltaSinkPartition(StatefulSinkPartition[Any, None]):
    def __init__(
        self,
        writer: DeltaWriter,
        mode: Mode,
        on_commit: Callable[[str, int], None] | None,
        after_flush: AfterFlush | None = None,
        *,
        background: bool = False,
        commit_interval_s: float = 0.0,
        nice: int = 0,
    ) -> None:
        self._writer = writer
        self._mode = mode
        self._on_commit = on_commit
        self._after_flush = after_flush
        self._tables: list[pa.Table] = []
        self._chunks: list[Chunk] = []
        self._commits = _Commits(
            writer.spec.path,
            self._write,
            background=background,
            min_interval_s=commit_interval_s,
            nice=nice,
        )
        writer.table()  # create the table up front, so readers find it early

    def write_batch(self, values: list[Any]) -> None:
        # Rows become Arrow as they arrive, on the event thread: converted at
        # the commit instead, on the commit thread, they contended for the
        # GIL with the event thread in 5 ms slices (docs/scaling.md, "The
        # event thread only").
        to_arrow = self._writer.to_arrow
        if self._mode == "append":
            # A value is a list of rows, or a table built a column at a time.
            tables = [to_arrow(v) for v in values if isinstance(v, pa.Table)]
            rows = list(chain.from_iterable(v for v in values if not isinstance(v, pa.Table)))
            self._tables.extend(tables)
            if rows:
                self._tables.append(to_arrow(rows))
        else:
            self._chunks.extend(Chunk(c.progress, to_arrow(c.rows), c.restate) for c in values)

    def _flush(self, closing: bool = False) -> None:
        tables, self._tables = self._tables, []
        chunks, self._chunks = self._chunks, []
        # An epoch without rows still pokes the gate (through the queue, after
        # the commits before it): after a restart on an idle stream, rows
        # staged before the stop are published without waiting for new data.
        if tables or chunks or self._after_flush is not None:
            self._commits.add((tables, chunks))
        if closing:
            self._commits.close()
            if self._after_flush is not None:
                self._after_flush(True)

    def _write(self, epochs: list[tuple[list[pa.Table], list[Chunk]]]) -> None:
        """Commit one or more epochs' rows (see :class:`_Commits`) as one commit."""
        tables = [t for epoch_tables, _ in epochs for t in epoch_tables]
        chunks = [c for _, epoch_chunks in epochs for c in epoch_chunks]
        if self._mode == "append":
            written = self._writer.append(pa.concat_tables(tables)) if tables else 0
        else:
            written = self._writer.upsert(chunks)
        if self._on_commit is not None and written:
            self._on_commit(self._writer.spec.path, written)
        if self._after_flush is not None:
            self._after_flush(False)

    def snapshot(self) -> None:
        self._flush()
        return None

    def close(self) -> None:
        self._flush(closing=True)


class DeltaSink(FixedPartitionedSink[Any, None]):
    """Writes lists of rows or tables (``append``) or :class:`Chunk` s (``upsert``) to one table."""

    def __init__(
        self,
        root: str,
        spec: TableSpec,
        *,
        mode: Mode,
        pipeline_id: str,
        storage_options: dict[str, str] | None = None,
        on_commit: Callable[[str, int], None] | None = None,
        after_flush: Callable[[], AfterFlush] | None = None,
        background: bool = False,
        commit_interval_s: float = 0.0,
        background_nice: int = 0,
    ) -> None:
        """``after_flush`` is a factory, called in the worker that owns the table.

        ``background``: commit on a thread of the table's own (only without
        recovery; see the module docstring).  ``commit_interval_s``: with
        ``background``, at most one commit per that many seconds (epochs
        gathered meanwhile go into one commit).  ``background_nice``: with
        ``background``, the nice value the commits run at (see :class:`_Commits`).
        """
        self._background = background
        self._commit_interval = commit_interval_s
        self._nice = background_nice
        self._root = root
        self._spec = spec
        self._mode = mode
        self._pipeline_id = pipeline_id
        self._storage_options = storage_options
        self._on_commit = on_commit
        self._after_flush = after_flush

    def list_parts(self) -> list[str]:
        return [SINK_KEY]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _DeltaSinkPartition:
        writer = DeltaWriter(
            self._root,
            self._spec,
            pipeline_id=self._pipeline_id,
            storage_options=self._storage_options,
        )
        hook = self._after_flush() if self._after_flush is not None else None
        return _DeltaSinkPartition(
            writer,
            self._mode,
            self._on_commit,
            hook,
            background=self._background,
            commit_interval_s=self._commit_interval,
            nice=self._nice,
        )


class _RuleTallyPartition(StatefulSinkPartition[list[Tallies], None]):
    def __init__(
        self,
        writer: DeltaWriter,
        *,
        background: bool = False,
        commit_interval_s: float = 0.0,
        nice: int = 0,
    ) -> None:
        self._writer = writer
        self._tallies: list[Tallies] = []
        self._commits = _Commits(
            writer.spec.path,
            self._write,
            background=background,
            min_interval_s=commit_interval_s,
            nice=nice,
        )
        writer.table()

    def write_batch(self, values: list[list[Tallies]]) -> None:
        for value in values:
            self._tallies.extend(value)

    def _flush(self, closing: bool = False) -> None:
        tallies, self._tallies = self._tallies, []
        if tallies:
            # The epoch's structured log line: every consumed message is tallied.
            run_stats.epoch(count_fates(tallies))
            self._commits.add(tallies)
        if closing:
            self._commits.close()

    def _write(self, epochs: list[list[Tallies]]) -> None:
        tallies = [t for epoch in epochs for t in epoch]
        committed = self._writer.committed({t.stream for t in tallies})
        now = datetime.now(UTC)
        rows = [
            dict(row, duration_ms=0.0, validated_at=now, result=None)
            for row in tally_rows(tallies, committed)
        ]
        self._writer.append(rows)

    def snapshot(self) -> None:
        self._flush()
        return None

    def close(self) -> None:
        self._flush(closing=True)


class RecordRuleSink(FixedPartitionedSink[list[Tallies], None]):
    """Per-rule counts of the record-level rules, one validation run per partition per epoch.

    Exactly-once like the tables: rows carry the partition's last offset and
    replayed messages are filtered one by one (:func:`quality.record_rules.tally_rows`).
    """

    def __init__(
        self,
        root: str,
        *,
        pipeline_id: str,
        storage_options: dict[str, str] | None = None,
        background: bool = False,
        commit_interval_s: float = 0.0,
        background_nice: int = 0,
    ) -> None:
        """``background``, ``commit_interval_s``, ``background_nice``: as for :class:`DeltaSink`."""
        self._root = root
        self._pipeline_id = pipeline_id
        self._storage_options = storage_options
        self._background = background
        self._commit_interval = commit_interval_s
        self._nice = background_nice

    def list_parts(self) -> list[str]:
        return [SINK_KEY]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _RuleTallyPartition:
        return _RuleTallyPartition(
            DeltaWriter(
                self._root,
                VALIDATION_RUNS,
                pipeline_id=self._pipeline_id,
                storage_options=self._storage_options,
            ),
            background=self._background,
            commit_interval_s=self._commit_interval,
            nice=self._nice,
        )
