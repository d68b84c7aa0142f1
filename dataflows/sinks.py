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
flow goes on.  delta-rs releases the GIL while it writes, so a commit's I/O
and Parquet encoding overlap the next epoch's Python work (the flow's Delta
commits were a quarter of its wall time).  An error surfaces at the table's
next flush or at the end of the run.  With recovery on, a flush is
synchronous: the recovery store must not record an epoch whose rows are not
yet in Delta.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Literal

import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from dataflows.run_log import run_stats
from lakehouse.tables import VALIDATION_RUNS, TableSpec
from lakehouse.writer import Chunk, DeltaWriter
from quality.record_rules import Tally, tally_rows

__all__ = ["SINK_KEY", "AfterFlush", "DeltaSink", "RecordRuleSink"]

#: Every item of a Delta sink is routed to one sink partition: one writer per
#: table avoids concurrent-commit conflicts between workers.
SINK_KEY = "delta"

Mode = Literal["append", "upsert"]
#: Called after every flush, with ``closing=True`` at the end of the flow.
AfterFlush = Callable[[bool], None]


class _Commits:
    """One table's commits: inline, or in order on a thread of their own.

    In the background (see the module docstring) a commit waits for the
    previous one, whose error, if any, it raises.
    """

    def __init__(self, name: str, *, background: bool) -> None:
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"commit {name}")
            if background
            else None
        )
        self._pending: Future[None] | None = None

    def run(self, work: Callable[[], None]) -> None:
        if self._pool is None:
            work()
            return
        self.wait()
        self._pending = self._pool.submit(work)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()


class _DeltaSinkPartition(StatefulSinkPartition[Any, None]):
    def __init__(
        self,
        writer: DeltaWriter,
        mode: Mode,
        on_commit: Callable[[str, int], None] | None,
        after_flush: AfterFlush | None = None,
        *,
        background: bool = False,
    ) -> None:
        self._writer = writer
        self._mode = mode
        self._on_commit = on_commit
        self._after_flush = after_flush
        self._tables: list[pa.Table] = []
        self._chunks: list[Chunk] = []
        self._commits = _Commits(writer.spec.path, background=background)
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
            self._chunks.extend(Chunk(c.progress, to_arrow(c.rows)) for c in values)

    def _flush(self, closing: bool = False) -> None:
        tables, self._tables = self._tables, []
        chunks, self._chunks = self._chunks, []

        def commit() -> None:
            self._write(tables, chunks)
            if self._after_flush is not None:
                self._after_flush(closing)

        self._commits.run(commit)
        if closing:
            self._commits.close()

    def _write(self, tables: list[pa.Table], chunks: list[Chunk]) -> None:
        if self._mode == "append":
            written = self._writer.append(pa.concat_tables(tables)) if tables else 0
        else:
            written = self._writer.upsert(chunks)
        if self._on_commit is not None and written:
            self._on_commit(self._writer.spec.path, written)

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
    ) -> None:
        """``after_flush`` is a factory, called in the worker that owns the table.

        ``background``: commit on a thread of the table's own (only without
        recovery; see the module docstring).
        """
        self._background = background
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
            writer, self._mode, self._on_commit, hook, background=self._background
        )


class _RuleTallyPartition(StatefulSinkPartition[list[Tally], None]):
    def __init__(self, writer: DeltaWriter, *, background: bool = False) -> None:
        self._writer = writer
        self._tallies: list[Tally] = []
        self._commits = _Commits(writer.spec.path, background=background)
        writer.table()

    def write_batch(self, values: list[list[Tally]]) -> None:
        for value in values:
            self._tallies.extend(value)

    def _flush(self, closing: bool = False) -> None:
        tallies, self._tallies = self._tallies, []
        if tallies:
            # The epoch's structured log line: one tally per consumed message.
            run_stats.epoch((kind, detail) for _s, _o, kind, detail in tallies)
            self._commits.run(lambda: self._write(tallies))
        if closing:
            self._commits.close()

    def _write(self, tallies: list[Tally]) -> None:
        committed = self._writer.committed({t[0] for t in tallies})
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


class RecordRuleSink(FixedPartitionedSink[list[Tally], None]):
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
    ) -> None:
        """``background``: as for :class:`DeltaSink`."""
        self._root = root
        self._pipeline_id = pipeline_id
        self._storage_options = storage_options
        self._background = background

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
        )
