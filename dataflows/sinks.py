"""Bytewax sinks that write the lakehouse through :class:`lakehouse.writer.DeltaWriter`.

Guarantee: **exactly-once** into Delta across crashes and restarts.  Items are
buffered for the epoch and committed when Bytewax snapshots the sink at the
epoch's end, before the epoch is recorded in the recovery store: one Delta
commit per table per epoch.  A crash after the commit but before the recovery
store records the epoch replays the epoch; the writer then recognises the
replayed rows from the app transactions and skips them.  With recovery off,
the flow restarts from the beginning of the topic and the same skipping makes
the rerun a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from lakehouse.tables import TableSpec
from lakehouse.writer import Chunk, DeltaWriter

__all__ = ["SINK_KEY", "DeltaSink"]

#: Every item of a Delta sink is routed to one sink partition: one writer per
#: table avoids concurrent-commit conflicts between workers.
SINK_KEY = "delta"

Mode = Literal["append", "upsert"]


class _DeltaSinkPartition(StatefulSinkPartition[Any, None]):
    def __init__(
        self, writer: DeltaWriter, mode: Mode, on_commit: Callable[[str, int], None] | None
    ) -> None:
        self._writer = writer
        self._mode = mode
        self._on_commit = on_commit
        self._rows: list[dict[str, Any]] = []
        self._chunks: list[Chunk] = []
        writer.table()  # create the table up front, so readers find it early

    def write_batch(self, values: list[Any]) -> None:
        if self._mode == "append":
            for value in values:
                self._rows.extend(value)
        else:
            self._chunks.extend(values)

    def _flush(self) -> None:
        if self._mode == "append":
            rows, self._rows = self._rows, []
            written = self._writer.append(rows)
        else:
            chunks, self._chunks = self._chunks, []
            written = self._writer.upsert(chunks)
        if self._on_commit is not None and written:
            self._on_commit(self._writer.spec.path, written)

    def snapshot(self) -> None:
        self._flush()
        return None

    def close(self) -> None:
        self._flush()


class DeltaSink(FixedPartitionedSink[Any, None]):
    """Writes lists of rows (``append``) or :class:`Chunk` s (``upsert``) to one table."""

    def __init__(
        self,
        root: str,
        spec: TableSpec,
        *,
        mode: Mode,
        pipeline_id: str,
        storage_options: dict[str, str] | None = None,
        on_commit: Callable[[str, int], None] | None = None,
    ) -> None:
        self._root = root
        self._spec = spec
        self._mode = mode
        self._pipeline_id = pipeline_id
        self._storage_options = storage_options
        self._on_commit = on_commit

    def list_parts(self) -> list[str]:
        return [SINK_KEY]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _DeltaSinkPartition:
        writer = DeltaWriter(
            self._root,
            self._spec,
            pipeline_id=self._pipeline_id,
            storage_options=self._storage_options,
        )
        return _DeltaSinkPartition(writer, self._mode, self._on_commit)
