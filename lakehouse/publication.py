"""Publication through the quality gate: staging -> (published | quarantine).

A *batch* is the set of metric rows changed by a range of staging commits,
read from the staging table's change data feed (for a key changed several
times, the rows of its newest commit in the range).  Each gate run takes every
staging commit since the previous run, so a batch is cut by time, not by epoch:
GX costs a fixed ~0.4 s per validation and the flow commits staging every epoch.

Exactly-once, also across a crash in the middle of a run: every write of a
run carries the app transaction ``(gate:<suite>, last staging version)``, in
this order -- published *or* quarantine, then ``quality/validation_runs``.
The validation run is the "done" marker.  If a crash leaves a publication
without its run, the next run re-cuts exactly the same version range (the
published/quarantine transaction says where it ended), re-validates it
deterministically (same rows, same history) and writes only the run.

The published table is a MERGE by key, so it changes atomically per batch and
keeps its last good state when a batch is quarantined.

Each batch also yields the daily promise-fulfilment facts finance reports on
(:mod:`dataflows.fulfilment`: its day-long rows re-expressed).  They are
validated by their own suite in the same run; a critical failure in either
suite quarantines the whole batch, so ``gold/health_metrics`` and
``gold/promise_fulfilment`` never disagree about what passed.  Write order:
published metrics, published facts, then one run record per suite.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from dataflows.fulfilment import fulfilment_facts
from lakehouse.reader import log_changes, newest_commit_per_key, read_table
from lakehouse.tables import (
    HEALTH_METRICS,
    HEALTH_METRICS_STAGING,
    METRIC_COLUMNS,
    PROMISE_FULFILMENT,
    QUARANTINE,
    QUARANTINE_ACTIONS,
    VALIDATION_RUNS,
    TableSpec,
)
from lakehouse.writer import DeltaWriter

if TYPE_CHECKING:
    from quality.gate import GateVerdict, QualityGate

__all__ = [
    "GateRun",
    "Publisher",
    "QuarantineError",
    "QuarantinedBatch",
    "StagingUnreadableError",
    "as_gate_batch",
    "discard",
    "list_quarantined",
    "release",
]

log = logging.getLogger(__name__)

SUITE = "health_metrics"
FULFILMENT_SUITE = "promise_fulfilment"


class StagingUnreadableError(RuntimeError):
    """Staging commits the gate has not gated cannot be read back."""


class QuarantineError(ValueError):
    """An operator action that cannot be carried out (unknown batch, already decided)."""


class GateRun(msgspec.Struct, frozen=True):
    """One gate run over a staging version range, as recorded."""

    run_id: str
    batch_id: str
    outcome: str
    row_count: int
    failed: tuple[str, ...]
    duration_ms: float
    first_version: int
    last_version: int


@contextmanager
def gate_lock(root: str) -> Iterator[None]:
    """One gate writer at a time per local lakehouse (an exclusive file lock).

    Two gates -- a restarted flow's and its predecessor's last run, or an
    operator's command -- could otherwise both see the same range pending and
    record it twice.  Object-store lakehouses have no lock: run one gate there.
    """
    if "://" in root:
        yield
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / "_gate.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _batch_id(first: int, last: int) -> str:
    return f"{SUITE}@{first}-{last}"


def fulfilment_run_id(batch_id: str) -> str:
    """The run id of the promise_fulfilment suite over a batch."""
    return f"vr-{FULFILMENT_SUITE}:{batch_id}"


class Publisher:
    """Gates staging batches of one lakehouse and publishes or quarantines them."""

    def __init__(
        self,
        root: str,
        *,
        pipeline_id: str = "orderhealth",
        storage_options: dict[str, str] | None = None,
        gate: QualityGate | None = None,
    ) -> None:
        def writer(spec: Any) -> DeltaWriter:
            return DeltaWriter(root, spec, pipeline_id=pipeline_id, storage_options=storage_options)

        self.root = root
        self.staging = writer(HEALTH_METRICS_STAGING)
        self.published = writer(HEALTH_METRICS)
        self.fulfilment = writer(PROMISE_FULFILMENT)
        self.quarantine = writer(QUARANTINE)
        self.runs = writer(VALIDATION_RUNS)
        self.stream = f"gate:{SUITE}"
        self._gate = gate
        self._fulfilment_gate: QualityGate | None = None
        self._recent: list[int] | None = None

    @property
    def gate(self) -> QualityGate:
        if self._gate is None:
            from quality.gate import load_gate

            self._gate = load_gate(SUITE)
        return self._gate

    @property
    def fulfilment_gate(self) -> QualityGate:
        if self._fulfilment_gate is None:
            from quality.gate import load_gate

            self._fulfilment_gate = load_gate(FULFILMENT_SUITE)
        return self._fulfilment_gate

    def prepare(self) -> None:
        """Create the tables and build the gates now rather than on the first batch."""
        for writer in (self.staging, self.published, self.fulfilment, self.quarantine, self.runs):
            writer.table()
        _ = self.gate, self.fulfilment_gate

    # -- what is pending --------------------------------------------------------
    def pending(self) -> tuple[int, int] | None:
        """The staging version range ``(first, last)`` the next run covers, if any."""
        gated = self.runs.committed([self.stream])[self.stream]
        written = max(
            self.published.committed([self.stream])[self.stream],
            self.fulfilment.committed([self.stream])[self.stream],
            self.quarantine.committed([self.stream])[self.stream],
        )
        # A crash after publishing but before recording the run: redo that range.
        last = written if written > gated else self.staging.table().version()
        first = max(gated + 1, 1)  # version 0 creates the (empty) table
        return (first, last) if last >= first else None

    def changed_rows(self, first: int, last: int) -> pa.Table:
        """Rows staged by commits ``first..last``; newest commit per key.

        Keys are compared as Python tuples, so null keys and duplicate keys
        inside one commit survive to be judged by the gate.  The columns are
        ``METRIC_COLUMNS`` plus ``staging_version``.
        """
        try:
            changes = log_changes(self.staging.table(), first, last)
        except Exception as error:  # delta-rs raises plain Exceptions for missing files
            raise StagingUnreadableError(
                f"{HEALTH_METRICS_STAGING.path}: the change feed of commits {first}..{last} "
                f"is unreadable ({error}).  The staging log keeps the files of every commit "
                "the gate has not gated, so they were deleted or damaged outside the "
                "pipeline; restore them, or re-create the lakehouse and replay from Kafka."
            ) from error
        if changes.num_rows == 0:
            return _EMPTY_BATCH
        batch = newest_commit_per_key(changes, HEALTH_METRICS_STAGING.merge_keys or ())
        return as_gate_batch(batch, batch["_commit_version"])

    def recent_row_counts(self) -> list[int]:
        if self._recent is None:
            runs = read_table(
                self.root,
                VALIDATION_RUNS,
                ["source_version", "row_count"],
                where=f"suite = '{SUITE}'",
            ).sort_by("source_version")
            self._recent = runs["row_count"].to_pylist()
        return self._recent

    # -- one gate run -------------------------------------------------------------
    def run(self) -> GateRun | None:
        """Gate everything staged since the last run; None when nothing is pending."""
        pending = self.pending()
        if pending is None:
            return None
        first, last = pending
        batch = self.changed_rows(first, last)
        if batch.num_rows == 0:
            return None  # maintenance commits only; the range grows until data arrives
        verdict = self.gate.validate(_frame(batch, self.gate), self.recent_row_counts())
        batch_id = _batch_id(first, last)
        run_id = f"vr-{batch_id}"
        facts = fulfilment_facts(batch, carry=["staging_version"])
        fact_verdict = (
            self.fulfilment_gate.validate(_frame(facts, self.fulfilment_gate), [])
            if facts.num_rows
            else None
        )
        failed = verdict.failed + (fact_verdict.failed if fact_verdict else ())
        outcome = _worst(verdict.outcome, fact_verdict.outcome if fact_verdict else "passed")
        now = datetime.now(UTC)
        if outcome == "quarantined":
            extra = {
                "batch_id": batch_id,
                "source_table": HEALTH_METRICS_STAGING.path,
                "validation_run_id": run_id,
                "failed_expectations": json.dumps([msgspec.to_builtins(f) for f in failed]),
                "quarantined_at": now,
            }
            self.quarantine.append_once(
                _with_columns(batch, extra, QUARANTINE), stream=self.stream, version=last
            )
        else:
            self._publish(self.published, batch, verdict, last, validation_run_id=run_id)
            if fact_verdict is not None:
                self._publish(
                    self.fulfilment,
                    facts,
                    fact_verdict,
                    last,
                    validation_run_id=fulfilment_run_id(batch_id),
                    batch_id=batch_id,
                )
        run_rows = [_run_row(verdict, run_id, batch_id, first, last, now)]
        if fact_verdict is not None:
            run_rows.append(
                _run_row(fact_verdict, fulfilment_run_id(batch_id), batch_id, first, last, now)
            )
        self.runs.append_once(run_rows, stream=self.stream, version=last)
        self.recent_row_counts().append(verdict.row_count)
        # Gated and recorded: staging segments before this one are done with.
        self.staging.prune_log(last)
        run = GateRun(
            run_id=run_id,
            batch_id=batch_id,
            outcome=outcome,
            row_count=verdict.row_count,
            failed=tuple(f.describe() for f in failed),
            duration_ms=verdict.duration_ms,
            first_version=first,
            last_version=last,
        )
        # The flow logs each run as a structured ``gate_run`` record.
        level = logging.WARNING if failed else logging.DEBUG
        log.log(level, "gate %s: %s (%d rows) %s", batch_id, run.outcome, run.row_count, run.failed)
        return run

    def _publish(
        self, writer: DeltaWriter, rows: pa.Table, verdict: GateVerdict, version: int, **ids: str
    ) -> None:
        """MERGE gate-passed rows with their run id and quality flag."""
        warnings = ",".join(sorted({f.expectation for f in verdict.warnings})) or None
        extra = dict(ids, quality_status=verdict.outcome, quality_warnings=warnings)
        writer.merge_once(
            _with_columns(rows, extra, writer.spec),
            stream=self.stream,
            version=version,
            newer_column="staging_version",
        )

    def run_all(self, on_run: Callable[[GateRun], None] | None = None) -> list[GateRun]:
        """Run until nothing is pending (normally once; twice after a crash)."""
        done = []
        with gate_lock(self.root):
            self._recent = None  # another gate may have run since
            while (run := self.run()) is not None:
                done.append(run)
                if on_run is not None:
                    on_run(run)
        return done


_BATCH_SCHEMA = pa.schema(
    [
        *(HEALTH_METRICS_STAGING.schema.field(c) for c in METRIC_COLUMNS),
        pa.field("staging_version", pa.int64(), False),
    ]
)
_EMPTY_BATCH = _BATCH_SCHEMA.empty_table()


_SEVERITY = {"passed": 0, "warning": 1, "quarantined": 2}


def as_gate_batch(rows: pa.Table, versions: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Staging rows as a gate batch: the metric columns, typed, plus their staging version."""
    return pa.Table.from_arrays(
        [rows[c].cast(HEALTH_METRICS_STAGING.schema.field(c).type) for c in METRIC_COLUMNS]
        + [versions.cast(pa.int64())],
        schema=_BATCH_SCHEMA,
    )


def _frame(batch: pa.Table, gate: QualityGate) -> Any:
    """A batch as the pandas frame its gate validates: the columns its suite reads."""
    wanted = gate.columns
    names = [c for c in batch.column_names if c != "staging_version"]
    return batch.select([c for c in names if wanted is None or c in wanted]).to_pandas()


def _worst(a: str, b: str) -> str:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b


def _with_columns(batch: pa.Table, constants: dict[str, Any], spec: TableSpec) -> pa.Table:
    """The batch with constant columns added, in the target table's column order.

    Columns the writer derives (``spec.day_columns``) are left to it.
    """
    n = batch.num_rows
    fields = [f for f in spec.schema if f.name not in spec.day_columns]
    columns = []
    for field in fields:
        if field.name in constants:
            columns.append(pa.array([constants[field.name]] * n, field.type))
        else:
            columns.append(batch[field.name].cast(field.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _run_row(
    verdict: GateVerdict, run_id: str, batch_id: str, first: int, last: int, at: datetime
) -> dict[str, Any]:
    counts = {
        "rows": verdict.row_count,
        "expectations": verdict.evaluated,
        "failed_critical": len(verdict.critical),
        "failed_warning": len(verdict.warnings),
        "staging_versions": [first, last],
        "parameters": verdict.parameters,
    }
    return {
        "run_id": run_id,
        "batch_id": batch_id,
        "suite": verdict.suite,
        "source_table": HEALTH_METRICS_STAGING.path,
        "source_version": last,
        "success": verdict.success,
        "outcome": verdict.outcome,
        "row_count": verdict.row_count,
        "failing_expectations": json.dumps([msgspec.to_builtins(f) for f in verdict.failed]),
        "counts": json.dumps(counts),
        "duration_ms": verdict.duration_ms,
        "validated_at": at,
        "result": verdict.result_json,
    }


# -- operator actions ---------------------------------------------------------------


class QuarantinedBatch(msgspec.Struct, frozen=True):
    batch_id: str
    rows: int
    validation_run_id: str
    failed: tuple[str, ...]
    quarantined_at: datetime
    #: pending | released | discarded
    status: str
    actor: str | None = None
    reason: str | None = None
    acted_at: datetime | None = None


def list_quarantined(root: str, *, include_decided: bool = False) -> list[QuarantinedBatch]:
    """Quarantined batches, oldest first, with why they failed and any decision."""
    from quality.gate import FailedExpectation

    table = read_table(
        root,
        QUARANTINE,
        [
            "batch_id",
            "validation_run_id",
            "failed_expectations",
            "quarantined_at",
            "staging_version",
        ],
    )
    actions = {r["batch_id"]: r for r in read_table(root, QUARANTINE_ACTIONS).to_pylist()}
    batches: dict[str, dict[str, Any]] = {}
    for row in table.sort_by("staging_version").to_pylist():
        entry = batches.setdefault(row["batch_id"], dict(row, rows=0))
        entry["rows"] += 1
    out = []
    for batch_id, entry in batches.items():
        action = actions.get(batch_id)
        if action is not None and not include_decided:
            continue
        failed = msgspec.json.decode(entry["failed_expectations"], type=list[FailedExpectation])
        out.append(
            QuarantinedBatch(
                batch_id=batch_id,
                rows=entry["rows"],
                validation_run_id=entry["validation_run_id"],
                failed=tuple(f.describe() for f in failed),
                quarantined_at=entry["quarantined_at"],
                status="pending" if action is None else action["action"],
                actor=action and action["actor"],
                reason=action and action["reason"],
                acted_at=action and action["acted_at"],
            )
        )
    return out


def _pending_batch(root: str, batch_id: str) -> list[dict[str, Any]]:
    for batch in list_quarantined(root, include_decided=True):
        if batch.batch_id == batch_id and batch.status != "pending":
            raise QuarantineError(
                f"batch {batch_id} was already {batch.status} by {batch.actor} "
                f"at {batch.acted_at:%Y-%m-%d %H:%M:%S} UTC ({batch.reason})"
            )
    table = read_table(root, QUARANTINE)
    rows: list[dict[str, Any]] = table.filter(pc.equal(table["batch_id"], batch_id)).to_pylist()
    if not rows:
        raise QuarantineError(
            f"no quarantined batch {batch_id!r}; `orderhealth quality list` shows them"
        )
    return rows


def _audit(
    root: str,
    batch_id: str,
    action: str,
    actor: str,
    reason: str,
    published: int,
    pipeline_id: str,
) -> None:
    if not reason.strip():
        raise QuarantineError("a reason is required: it goes into the audit record")
    DeltaWriter(root, QUARANTINE_ACTIONS, pipeline_id=pipeline_id).append_once(
        [
            {
                "batch_id": batch_id,
                "action": action,
                "actor": actor,
                "reason": reason,
                "acted_at": datetime.now(UTC),
                "rows_published": published,
            }
        ],
        stream=f"action:{batch_id}",
        version=0,
    )


def release(
    root: str, batch_id: str, *, actor: str, reason: str, pipeline_id: str = "orderhealth"
) -> int:
    """Publish a quarantined batch anyway; returns rows published (see :func:`_release`)."""
    with gate_lock(root):
        return _release(root, batch_id, actor=actor, reason=reason, pipeline_id=pipeline_id)


def _release(root: str, batch_id: str, *, actor: str, reason: str, pipeline_id: str) -> int:
    """Publish a quarantined batch anyway; returns rows published.

    Rows are marked ``quality_status = released`` and keep the failing run's
    id; a row already published from a newer staging commit is not replaced.
    The batch's daily promise-fulfilment facts are released with it.
    """
    if not reason.strip():
        raise QuarantineError("a reason is required: it goes into the audit record")
    rows = _pending_batch(root, batch_id)
    keys = HEALTH_METRICS.merge_keys or ()
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["staging_version"]):
        latest[tuple(row[k] for k in keys)] = row  # a duplicated key: the last one wins
    published = [
        dict(
            {c: row[c] for c in METRIC_COLUMNS},
            validation_run_id=row["validation_run_id"],
            quality_status="released",
            quality_warnings="released from quarantine",
            staging_version=row["staging_version"],
        )
        for key, row in latest.items()
        if all(k is not None for k in key)  # a null key cannot be published
    ]
    stream = f"release:{batch_id}"
    DeltaWriter(root, HEALTH_METRICS, pipeline_id=pipeline_id).merge_once(
        published, stream=stream, version=0, newer_column="staging_version"
    )
    if published:
        metrics = pa.Table.from_pylist(published, schema=HEALTH_METRICS.schema)
        facts = fulfilment_facts(metrics, carry=["staging_version"])
        if facts.num_rows:
            extra = {
                "validation_run_id": rows[0]["validation_run_id"],
                "batch_id": batch_id,
                "quality_status": "released",
                "quality_warnings": "released from quarantine",
            }
            DeltaWriter(root, PROMISE_FULFILMENT, pipeline_id=pipeline_id).merge_once(
                _with_columns(facts, extra, PROMISE_FULFILMENT),
                stream=stream,
                version=0,
                newer_column="staging_version",
            )
    _audit(root, batch_id, "released", actor, reason, len(published), pipeline_id)
    return len(published)


def discard(
    root: str, batch_id: str, *, actor: str, reason: str, pipeline_id: str = "orderhealth"
) -> None:
    """Decide never to publish a quarantined batch (an audit record, nothing else)."""
    with gate_lock(root):
        _pending_batch(root, batch_id)
        _audit(root, batch_id, "discarded", actor, reason, 0, pipeline_id)
