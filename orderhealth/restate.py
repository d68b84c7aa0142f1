"""Restatement: recompute chosen windows from bronze and rewrite them idempotently.

Covers events that arrived beyond the allowed lateness (kept in bronze with
``is_late``, never lost) and backfills.  Recomputation uses the batch oracle
(:mod:`dataflows.batch_metrics`) over *every* valid event, late ones included,
and appends the rows to the ``gold/health_metrics_staging`` log with an app
transaction named after the selection and versioned by the bronze table
version: rerunning the same restatement on the same bronze data is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
import pyarrow.compute as pc
from deltalake import DeltaTable

from dataflows.batch_metrics import batch_metric_rows
from dataflows.settings import HealthSettings
from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS, HEALTH_METRICS_STAGING, table_uri
from lakehouse.writer import Chunk, DeltaWriter

__all__ = ["RestateResult", "restate"]


class RestateResult(msgspec.Struct, frozen=True):
    bronze_version: int
    late_events: int
    rows_recomputed: int
    rows_written: int


def restate(
    root: str,
    settings: HealthSettings,
    *,
    window_sizes: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    partitions: int | None = None,
    pipeline_id: str = "orderhealth",
) -> RestateResult:
    """Recompute windows with ``start <= window_start < end`` of the given sizes."""
    known = [label for label, _ in settings.window_sizes]
    sizes = list(window_sizes or known)
    if unknown := [s for s in sizes if s not in known]:
        raise ValueError(f"unknown window sizes {unknown}; configured: {', '.join(known)}")
    if start is not None and end is not None and start >= end:
        raise ValueError("the restatement period is empty: --from must be before --to")
    bronze_version = DeltaTable(table_uri(root, BRONZE_EVENTS)).version()
    bronze = read_table(root, BRONZE_EVENTS)
    if bronze.num_rows == 0:
        raise ValueError(f"bronze/order_events under {root} is empty: nothing to restate")
    count = partitions or len(pc.unique(bronze["partition"]))
    rows = [
        row
        for row in batch_metric_rows(bronze, settings, partitions=count, include_late=True)
        if row["window_size"] in sizes
        and (start is None or row["window_start"] >= start)
        and (end is None or row["window_start"] < end)
    ]
    selection = ",".join(sizes) + f":{start.isoformat() if start else ''}"
    selection += f"..{end.isoformat() if end else ''}"
    writer = DeltaWriter(root, HEALTH_METRICS_STAGING, pipeline_id=pipeline_id)
    written = writer.upsert([Chunk({f"restate[{selection}]@bronze": bronze_version}, rows)])
    late = pc.sum(bronze["is_late"]).as_py() or 0
    return RestateResult(bronze_version, late, len(rows), written)
