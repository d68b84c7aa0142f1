"""The lakehouse tables: paths under the root URI and their Arrow schemas.

Paths are exactly those of SPEC §5 so that other tools (DuckDB, Superset) find
them.  The bronze schema is derived from the event contract: a new optional
field in :mod:`schemas.events` becomes a new nullable column without edits here.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any, Literal, get_args, get_origin

import msgspec
import pyarrow as pa

from dataflows.metrics import COMPONENTS, MEASURE_AGGS, MEASURES, Agg
from dataflows.twin import STAGE_COLUMNS
from schemas.events import ALL_EVENT_TYPES

__all__ = [
    "BRONZE_EVENTS",
    "DEAD_LETTER",
    "FILE_RETENTION",
    "FULFILMENT_COLUMNS",
    "FULFILMENT_KEYS",
    "HEALTH_METRICS",
    "HEALTH_METRICS_STAGING",
    "METRIC_COLUMNS",
    "ORDER_LIFECYCLE",
    "PROMISE_FULFILMENT",
    "QUARANTINE",
    "QUARANTINE_ACTIONS",
    "TABLES",
    "VALIDATION_RUNS",
    "TableSpec",
    "table_uri",
]

TIMESTAMP = pa.timestamp("us", tz="UTC")


class TableSpec(msgspec.Struct, frozen=True):
    """A Delta table of the lakehouse."""

    path: str
    schema: pa.Schema
    #: Natural key for idempotent MERGE upserts; None for append-only tables.
    merge_keys: tuple[str, ...] | None = None
    partition_by: tuple[str, ...] = ()
    #: Delta table properties set at creation.
    configuration: dict[str, str] = {}
    #: Its writer compacts small files every this many of its own commits
    #: (0 = never).  Only for tables with one writer process and no change-
    #: feed reader: a compaction commit could otherwise conflict with a
    #: concurrent write, or sit inside a change-feed range being read.
    compact_every: int = 0
    #: Its writer vacuums the table every this many of its own commits (0 =
    #: never): deletes the files that left the table (rewritten by MERGE or
    #: compaction, change-feed files) longer ago than the table's
    #: ``delta.deletedFileRetentionDuration``.  Only for tables with one
    #: writer process: a vacuum is two commits of its own.
    vacuum_every: int = 0
    #: Columns the writer derives, not the rows: partition column -> the
    #: timestamp column whose UTC date it holds.  Part of the schema and of
    #: every MERGE predicate, so a MERGE prunes to the days its rows touch.
    day_columns: dict[str, str] = {}
    #: An append-only log of keyed rows (> 0): :meth:`DeltaWriter.upsert`
    #: appends instead of MERGing, into partition ``log_segment`` = (table
    #: version + 1) // this, and readers take the newest row per key.
    log_segment_commits: int = 0


#: Commits between compactions of a table's small files (see TableSpec).
COMPACT_EVERY = 50
#: Commits between vacuums of a table (see TableSpec).
VACUUM_EVERY = 50
#: How long files that left a table stay on disk, for time travel and for the
#: quality gate's change-feed reads (a table property: every Delta tool that
#: vacuums honours it).  A MERGE rewrites the files of the days it touches, so
#: without vacuums a table's disk use grows with every epoch, not with its data.
FILE_RETENTION = {"delta.deletedFileRetentionDuration": "interval 24 hours"}


def table_uri(root: str, spec: TableSpec) -> str:
    """URI of a table under the lakehouse root (local path or object-store URI)."""
    return f"{root.rstrip('/')}/{spec.path}"


def _arrow_type(annotation: Any) -> pa.DataType:
    """Arrow type of a contract field annotation (Optional[...] -> nullable)."""
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        # Unions of scalars (context values) are stored as JSON text.
        return _arrow_type(options[0]) if len(options) == 1 else pa.string()
    if origin is Literal:
        return pa.string()
    if origin is dict or annotation is dict:
        return pa.string()  # free-form maps are stored as JSON text
    mapping: dict[Any, pa.DataType] = {
        str: pa.string(),
        int: pa.int64(),
        float: pa.float64(),
        bool: pa.bool_(),
        datetime: TIMESTAMP,
    }
    if annotation not in mapping:
        raise TypeError(f"no Arrow type for contract annotation {annotation!r}")
    return mapping[annotation]


def _contract_fields() -> list[pa.Field]:
    fields: dict[str, pa.Field] = {"event_type": pa.field("event_type", pa.string(), False)}
    for cls in ALL_EVENT_TYPES.values():
        hints = typing.get_type_hints(cls, include_extras=True)
        for name in cls.__struct_fields__:
            if name not in fields:
                fields[name] = pa.field(name, _arrow_type(hints[name]))
    return list(fields.values())


_COORDINATES = [
    pa.field("topic", pa.string(), False),
    pa.field("partition", pa.int32(), False),
    pa.field("offset", pa.int64(), False),
]

BRONZE_EVENTS = TableSpec(
    path="bronze/order_events",
    schema=pa.schema(
        [
            *_contract_fields(),
            *_COORDINATES,
            pa.field("is_duplicate", pa.bool_(), False),
            pa.field("is_late", pa.bool_(), False),
            # Names of record rules with action "warn" that this event broke.
            pa.field("quality_warnings", pa.string()),
        ]
    ),
    compact_every=COMPACT_EVERY,
    vacuum_every=VACUUM_EVERY,
)

DEAD_LETTER = TableSpec(
    path="bronze/dead_letter",
    schema=pa.schema(
        [
            *_COORDINATES,
            pa.field("key", pa.binary()),
            pa.field("value", pa.binary()),
            pa.field("reason", pa.string(), False),
            # For reason "rule_violation": the record rule that dropped it.
            pa.field("rule", pa.string()),
            pa.field("message", pa.string(), False),
            pa.field("field", pa.string()),
            pa.field("expected", pa.string()),
            pa.field("got", pa.string()),
        ]
    ),
    compact_every=COMPACT_EVERY,
    vacuum_every=VACUUM_EVERY,
)


def _stage_fields() -> list[pa.Field]:
    fields = []
    for _, column in STAGE_COLUMNS:
        fields.append(pa.field(f"{column}_at", TIMESTAMP))
        fields.append(pa.field(f"{column}_dwell_hours", pa.float64()))
    return fields


ORDER_LIFECYCLE = TableSpec(
    path="silver/order_lifecycle",
    merge_keys=("order_id",),
    schema=pa.schema(
        [
            pa.field("order_id", pa.string(), False),
            pa.field("customer_id", pa.string()),
            pa.field("customer_segment", pa.string()),
            pa.field("channel", pa.string()),
            pa.field("region", pa.string()),
            pa.field("seller_id", pa.string()),
            pa.field("order_value", pa.float64()),
            pa.field("currency", pa.string()),
            pa.field("line_count", pa.int64()),
            pa.field("promise_confidence", pa.float64()),
            pa.field("first_warehouse_id", pa.string()),
            pa.field("warehouse_id", pa.string()),
            pa.field("carrier_id", pa.string()),
            pa.field("first_promised_at", TIMESTAMP),
            pa.field("latest_promised_at", TIMESTAMP),
            pa.field("current_stage", pa.string()),
            pa.field("outcome", pa.string(), False),
            pa.field("resolved_at", TIMESTAMP),
            pa.field("cancelled_at", TIMESTAMP),
            pa.field("cancel_reason", pa.string()),
            pa.field("anomaly_count", pa.int64(), False),
            pa.field("anomaly_kinds", pa.string()),
            pa.field("anomaly_flags", pa.string(), False),
            pa.field("event_count", pa.int64(), False),
            pa.field("last_event_at", TIMESTAMP, False),
            pa.field("context_by_stage", pa.string(), False),
            pa.field("topic", pa.string(), False),
            pa.field("partition", pa.int32(), False),
            pa.field("last_event_offset", pa.int64(), False),
            *_stage_fields(),
            # Event time of the first event the stream accepted for the order
            # (in Kafka order), and its UTC day, derived by the writer.  The
            # day partitions the table: fixed for the order's life, and near
            # the orders an epoch touches, so a MERGE rewrites recent days
            # only instead of every order ever seen.
            pa.field("first_seen_at", TIMESTAMP, False),
            pa.field("first_seen_date", pa.date32()),
        ]
    ),
    partition_by=("first_seen_date",),
    day_columns={"first_seen_date": "first_seen_at"},
    compact_every=COMPACT_EVERY,
    vacuum_every=VACUUM_EVERY,
)


def _measure_type(measure: str) -> pa.DataType:
    # Sums of squared microseconds exceed int64 (a 30 h cycle squared is ~1e22).
    return pa.decimal128(38, 0) if MEASURE_AGGS[measure] is Agg.SUMSQ else pa.int64()


_METRIC_KEYS = ("window_size", "window_start", "dimension", "dimension_value")
# Metric tables are partitioned by window size and the UTC day of the window
# start: an epoch's MERGE touches the few days its rows fall in instead of
# rewriting every window of a size (1.8M rows after a million events).
_WINDOW_DAY = {"window_date": "window_start"}
_WINDOW_PARTITIONS = ("window_size", "window_date")
_WINDOW_DATE_FIELD = pa.field("window_date", pa.date32())
# Nullable on purpose: a corrupt batch must reach the gate (and quarantine)
# rather than fail the write with a schema error.
_METRIC_FIELDS = [
    pa.field("window_size", pa.string()),
    pa.field("window_start", TIMESTAMP),
    pa.field("window_end", TIMESTAMP),
    pa.field("dimension", pa.string()),
    pa.field("dimension_value", pa.string()),
    pa.field("is_final", pa.bool_()),
    *[pa.field(m, _measure_type(m)) for m in MEASURES],
    *[pa.field(c.name, pa.float64()) for c in COMPONENTS],
    pa.field("health_index", pa.float64()),
    pa.field("health_components", pa.string()),
    # Freshness at emission: the global watermark, and how far the partition
    # holding it back trails the newest one in Kafka produce time (seconds;
    # null for restated rows).  See MetricWindows.watermark_lag_seconds.
    pa.field("watermark_at", TIMESTAMP),
    pa.field("watermark_lag_seconds", pa.float64()),
]
METRIC_COLUMNS: tuple[str, ...] = tuple(f.name for f in _METRIC_FIELDS)

#: Staging commits per segment of the staging log (see HEALTH_METRICS_STAGING).
LOG_SEGMENT_COMMITS = 100
#: The partition column of a log table (TableSpec.log_segment_commits).
LOG_SEGMENT = "log_segment"

HEALTH_METRICS_STAGING = TableSpec(
    path="gold/health_metrics_staging",
    # A log, not a table of current rows: each commit appends the rows an
    # epoch changed (the newest per key), and the quality gate reads a
    # commit's rows from the change data feed, also after a crash between
    # staging and publication.  An append is ~30 ms where a MERGE of the same
    # 25k rows into the table, with its change feed, was ~380 ms, on the way
    # to publication every epoch (docs/scaling.md, "Staging as a log").  The
    # newest row per key is the current one: lakehouse.reader.read_log.
    merge_keys=_METRIC_KEYS,
    # Each commit lands in segment (table version + 1) // LOG_SEGMENT_COMMITS,
    # so that the gate can drop the segments it has gated whole, as a
    # metadata-only DELETE (DeltaWriter.prune_log).
    partition_by=(LOG_SEGMENT,),
    log_segment_commits=LOG_SEGMENT_COMMITS,
    schema=pa.schema([*_METRIC_FIELDS, pa.field(LOG_SEGMENT, pa.int64())]),
    configuration={"delta.enableChangeDataFeed": "true"},
    # Not compacted (the gate reads its change feed).
    vacuum_every=VACUUM_EVERY,
)

_PUBLICATION_FIELDS = [
    # quality/validation_runs.run_id of the gate run that let the row through.
    pa.field("validation_run_id", pa.string(), False),
    # passed | warning (published with failed warning expectations) | released
    pa.field("quality_status", pa.string(), False),
    pa.field("quality_warnings", pa.string()),
    # The staging commit the row came from: a released old batch never
    # overwrites a row from a newer one.
    pa.field("staging_version", pa.int64(), False),
]

HEALTH_METRICS = TableSpec(
    path="gold/health_metrics",
    merge_keys=_METRIC_KEYS,
    partition_by=_WINDOW_PARTITIONS,
    day_columns=_WINDOW_DAY,
    schema=pa.schema([*_METRIC_FIELDS, *_PUBLICATION_FIELDS, _WINDOW_DATE_FIELD]),
    compact_every=COMPACT_EVERY,
    vacuum_every=VACUUM_EVERY,
)

#: Key of a daily promise-fulfilment fact: the UTC day and the subject (a dimension).
FULFILMENT_KEYS = ("day", "subject_type", "subject_id")
# Per subject per day: the 1-day metric windows re-expressed as finance facts
# (dataflows/fulfilment.py derives them; the gate publishes them).
_FULFILMENT_FIELDS = [
    pa.field("day", pa.date32(), False),
    # A dimension of health.toml ("all" = the whole company) and its value.
    pa.field("subject_type", pa.string(), False),
    pa.field("subject_id", pa.string(), False),
    pa.field("is_final", pa.bool_(), False),
    # Promises that came due (kept or late, at their resolution time) or were
    # withdrawn (cancelled before resolving) that day: promised = kept + late + cancelled.
    pa.field("promised", pa.int64(), False),
    pa.field("kept", pa.int64(), False),
    pa.field("late", pa.int64(), False),
    pa.field("cancelled", pa.int64(), False),
    pa.field("kept_rate", pa.float64()),
    # Deviation (delivered - first promise) over orders delivered that day.
    pa.field("delivered", pa.int64(), False),
    pa.field("deviation_us_sum", pa.int64(), False),
    pa.field("deviation_hours_avg", pa.float64()),
    pa.field("deviation_hours_p50", pa.float64()),
    pa.field("deviation_hours_p90", pa.float64()),
    pa.field("deviation_hours_p99", pa.float64()),
]
FULFILMENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FULFILMENT_FIELDS)

PROMISE_FULFILMENT = TableSpec(
    path="gold/promise_fulfilment",
    merge_keys=FULFILMENT_KEYS,
    schema=pa.schema(
        [
            *_FULFILMENT_FIELDS,
            # The gate run of the promise_fulfilment suite that let the row
            # through, and the staged batch it belonged to.
            pa.field("validation_run_id", pa.string(), False),
            pa.field("batch_id", pa.string(), False),
            pa.field("quality_status", pa.string(), False),
            pa.field("quality_warnings", pa.string()),
            pa.field("staging_version", pa.int64(), False),
        ]
    ),
    compact_every=COMPACT_EVERY,
    vacuum_every=VACUUM_EVERY,
)

QUARANTINE = TableSpec(
    path="gold/quarantine",
    schema=pa.schema(
        [
            pa.field("batch_id", pa.string(), False),
            pa.field("source_table", pa.string(), False),
            pa.field("staging_version", pa.int64(), False),
            pa.field("validation_run_id", pa.string(), False),
            pa.field("failed_expectations", pa.string(), False),
            pa.field("quarantined_at", TIMESTAMP, False),
            *_METRIC_FIELDS,
        ]
    ),
)

VALIDATION_RUNS = TableSpec(
    path="quality/validation_runs",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), False),
            pa.field("batch_id", pa.string(), False),
            pa.field("suite", pa.string(), False),
            pa.field("source_table", pa.string(), False),
            # Staging version for batch gates; for record rules the Kafka
            # stream and the last offset covered.
            pa.field("source_version", pa.int64()),
            pa.field("topic", pa.string()),
            pa.field("partition", pa.int32()),
            pa.field("offset", pa.int64()),
            pa.field("success", pa.bool_(), False),
            # passed | warning | quarantined (batch gates); passed | violations (rules)
            pa.field("outcome", pa.string(), False),
            pa.field("row_count", pa.int64(), False),
            # JSON: [{"expectation", "column", "severity", "observed"}], or per-rule counts
            pa.field("failing_expectations", pa.string(), False),
            pa.field("counts", pa.string(), False),
            pa.field("duration_ms", pa.float64(), False),
            pa.field("validated_at", TIMESTAMP, False),
            # The full GX validation result (JSON), for Data Docs.
            pa.field("result", pa.string()),
        ]
    ),
)

QUARANTINE_ACTIONS = TableSpec(
    path="quality/quarantine_actions",
    schema=pa.schema(
        [
            pa.field("batch_id", pa.string(), False),
            pa.field("action", pa.string(), False),  # released | discarded
            pa.field("actor", pa.string(), False),
            pa.field("reason", pa.string(), False),
            pa.field("acted_at", TIMESTAMP, False),
            pa.field("rows_published", pa.int64(), False),
        ]
    ),
)

TABLES: tuple[TableSpec, ...] = (
    BRONZE_EVENTS,
    DEAD_LETTER,
    ORDER_LIFECYCLE,
    HEALTH_METRICS_STAGING,
    HEALTH_METRICS,
    PROMISE_FULFILMENT,
    QUARANTINE,
    VALIDATION_RUNS,
    QUARANTINE_ACTIONS,
)
