"""Read-side helpers: load lakehouse tables and summarise them.

Used by the demo's terminal report and by the tests.  Reads go through
deltalake into Arrow; nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, QueryBuilder
from deltalake.exceptions import TableNotFoundError

from lakehouse.tables import (
    BRONZE_EVENTS,
    DEAD_LETTER,
    HEALTH_METRICS,
    ORDER_LIFECYCLE,
    TableSpec,
    table_uri,
)

__all__ = ["PipelineCounts", "latest_health", "pipeline_counts", "read_table", "table_version"]


def read_table(
    root: str,
    spec: TableSpec,
    columns: list[str] | None = None,
    where: str | None = None,
    *,
    version: int | None = None,
) -> pa.Table:
    """The table's current version as Arrow (empty with its schema if missing).

    Reads through delta-rs's own query engine rather than
    ``DeltaTable.to_pyarrow_table()``: the latter scans through a Rust-backed
    pyarrow filesystem whose threads abort the interpreter at exit about half
    the time with deltalake 1.6 ("terminate called without an active
    exception", delta-io/delta-rs#2184).  ``where`` is a SQL condition
    (DataFusion dialect) pushed down to the scan; ``version`` reads an older
    snapshot (the credit reports pin the versions they cite).
    """
    schema = pa.schema([spec.schema.field(c) for c in columns]) if columns else spec.schema
    try:
        table = DeltaTable(table_uri(root, spec), version=version)
    except TableNotFoundError:
        if version is not None:
            raise
        return schema.empty_table()
    selected = ", ".join(f'"{name}"' for name in schema.names)
    sql = f"SELECT {selected} FROM t" + (f" WHERE {where}" if where else "")
    result = QueryBuilder().register("t", table).execute(sql).read_all()
    return pa.table(result).cast(schema)


def table_version(root: str, spec: TableSpec) -> int | None:
    """The table's current version, or None when it does not exist yet."""
    try:
        return DeltaTable(table_uri(root, spec)).version()
    except TableNotFoundError:
        return None


class PipelineCounts(dict[str, Any]):
    """Conservation figures: produced = valid + dead-lettered."""


def pipeline_counts(root: str) -> PipelineCounts:
    bronze = read_table(root, BRONZE_EVENTS, ["is_duplicate", "is_late", "event_id"])
    dead = read_table(root, DEAD_LETTER, ["reason"])
    lifecycle = read_table(root, ORDER_LIFECYCLE, ["order_id"])
    duplicates = pc.sum(bronze["is_duplicate"]).as_py() or 0
    late = pc.sum(bronze["is_late"]).as_py() or 0
    return PipelineCounts(
        valid=bronze.num_rows,
        duplicates=duplicates,
        late=late,
        unique_events=pc.count_distinct(bronze["event_id"]).as_py() if bronze.num_rows else 0,
        dead_lettered=dead.num_rows,
        dead_letter_reasons=dict(Counter(dead["reason"].to_pylist())),
        orders=lifecycle.num_rows,
    )


def latest_health(root: str, window_size: str, dimension: str) -> list[dict[str, Any]]:
    """Latest published window row per dimension value (open or final)."""
    table = read_table(root, HEALTH_METRICS)
    mask = pc.and_(
        pc.equal(table["window_size"], window_size), pc.equal(table["dimension"], dimension)
    )
    rows = table.filter(mask).sort_by([("window_start", "descending")]).to_pylist()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest.setdefault(row["dimension_value"], row)
    return [latest[k] for k in sorted(latest)]
