"""The batch oracle: every metric recomputed from ``bronze/order_events`` with DuckDB.

This is an independent implementation of the lifecycle and the outcome rule:
SQL views over the raw events, not the streaming code path.  What it shares
with the stream are *definitions* -- the settings, each fact's ``batch_sql``,
and the component formulas of :mod:`dataflows.metrics` -- so a disagreement
between the two points at a bug in one of them.

Used for restatement and backfill (``orderhealth restate``) and by the
stream-equals-batch property test.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import duckdb
import pyarrow as pa

from dataflows.metrics import FACTS, MEASURES, Agg, WindowTotals, compute_components
from dataflows.settings import HealthSettings
from dataflows.timeutil import from_us
from dataflows.window_metrics import health_index
from schemas.events import EventType

__all__ = ["batch_metric_rows", "order_outcomes"]

_TYPE_RANKS = ", ".join(f"('{t.value}', {rank})" for rank, t in enumerate(EventType))


def _views(settings: HealthSettings, include_late: bool) -> list[str]:
    return _outcome_views(settings, include_late) + _anomaly_views(settings)


def _outcome_views(settings: HealthSettings, include_late: bool) -> list[str]:
    """Events, orders, stages, routing/carrier timelines and the outcome rule."""
    stage_ranks = ", ".join(f"('{s.value}', {i})" for i, s in enumerate(settings.stage_order))
    slas = (
        ", ".join(f"('{s.value}', {us})" for s, us in settings.stage_sla_us.items())
        or "(NULL, NULL)"
    )
    lateness = settings.allowed_lateness_us
    late_filter = "" if include_late else "AND NOT is_late"
    return [
        f"CREATE TEMP TABLE type_rank AS "
        f"SELECT * FROM (VALUES {_TYPE_RANKS}) v(event_type, type_rank)",
        f"CREATE TEMP TABLE stage_rank AS "
        f"SELECT * FROM (VALUES {stage_ranks}) v(stage, stage_rank)",
        f"CREATE TEMP TABLE stage_sla AS "
        f"SELECT stage, CAST(sla_us AS BIGINT) AS sla_us "
        f"FROM (VALUES {slas or '(NULL, NULL)'}) v(stage, sla_us)",
        # Accepted events: first copy of each event id per order.
        f"""CREATE TEMP TABLE events AS
        SELECT b."partition" AS part, b.order_id, b.event_id, b.event_type, r.type_rank,
               epoch_us(b.event_time) AS t, epoch_us(b.promised_delivery_at) AS promise_t,
               b.warehouse_id, b.carrier_id, b.region, b.channel, b.customer_segment, b.seller_id
        FROM bronze b JOIN type_rank r USING (event_type)
        WHERE NOT b.is_duplicate {late_filter}
        QUALIFY row_number() OVER (
            PARTITION BY b.order_id, b.event_id ORDER BY b."partition", b."offset") = 1""",
        # Per-partition watermark: newest accepted event time minus the lateness.
        f"""CREATE TEMP TABLE partition_wm AS
        SELECT part, max(t) - {lateness} AS wm FROM events GROUP BY part""",
        """CREATE TEMP TABLE created AS
        SELECT order_id, t AS created_t, promise_t, region, channel, customer_segment, seller_id
        FROM events WHERE event_type = 'ORDER_CREATED'
        QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY t, event_id) = 1""",
        """CREATE TEMP TABLE stages AS
        SELECT e.order_id, e.event_type AS stage, s.stage_rank, min(e.t) AS stage_t
        FROM events e JOIN stage_rank s ON s.stage = e.event_type
        GROUP BY e.order_id, e.event_type, s.stage_rank""",
        """CREATE TEMP TABLE cancels AS
        SELECT order_id, t AS cancelled_t FROM events WHERE event_type = 'CANCELLED'
        QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY t, event_id) = 1""",
        # The warehouse in effect from each routing time on (last decision at a tie).
        """CREATE TEMP TABLE warehouse_changes AS
        SELECT order_id, t, warehouse_id FROM events
        WHERE event_type IN ('ROUTED', 'REROUTED')
        QUALIFY row_number() OVER (
            PARTITION BY order_id, t ORDER BY type_rank DESC, event_id DESC) = 1""",
        """CREATE TEMP TABLE carrier_changes AS
        SELECT order_id, t, carrier_id FROM events WHERE event_type = 'SHIPPED'
        QUALIFY row_number() OVER (PARTITION BY order_id, t ORDER BY event_id DESC) = 1""",
        """CREATE TEMP TABLE first_route AS
        SELECT order_id, warehouse_id AS first_warehouse FROM events
        WHERE event_type IN ('ROUTED', 'REROUTED')
        QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY t, type_rank, event_id) = 1""",
        """CREATE TEMP TABLE orders AS
        SELECT o.order_id, o.part, w.wm, c.created_t, c.promise_t, c.region, c.channel,
               c.customer_segment, c.seller_id, f.first_warehouse
        FROM (SELECT DISTINCT order_id, part FROM events) o
        JOIN partition_wm w USING (part)
        LEFT JOIN created c USING (order_id)
        LEFT JOIN first_route f USING (order_id)""",
        # The outcome rule (SPEC §4).
        """CREATE TEMP TABLE outcomes AS
        WITH base AS (
            SELECT o.*, d.stage_t AS delivered_t, x.cancelled_t,
                CASE
                    WHEN o.promise_t IS NULL THEN NULL
                    WHEN d.stage_t <= o.promise_t THEN 'on_time'
                    WHEN d.stage_t IS NOT NULL OR o.wm > o.promise_t THEN 'late'
                END AS res_status
            FROM orders o
            LEFT JOIN (SELECT * FROM stages WHERE stage = 'DELIVERED') d USING (order_id)
            LEFT JOIN cancels x USING (order_id)
        ), resolved AS (
            SELECT *, CASE res_status WHEN 'on_time' THEN delivered_t
                                      WHEN 'late' THEN promise_t END AS res_t
            FROM base
        )
        SELECT * EXCLUDE (res_status, res_t),
            CASE WHEN cancelled_t IS NOT NULL AND (res_t IS NULL OR cancelled_t < res_t)
                 THEN 'cancelled' ELSE coalesce(res_status, 'open') END AS status,
            CASE WHEN cancelled_t IS NOT NULL AND (res_t IS NULL OR cancelled_t < res_t)
                 THEN cancelled_t ELSE res_t END AS resolved_t
        FROM resolved""",
    ]


def _anomaly_views(settings: HealthSettings) -> list[str]:
    """Dwells, SLA transitions, outlier baselines and anomaly flags."""
    o = settings.outliers
    return [
        # Completed stages: ended by the first later-canonical stage at or after them.
        """CREATE TEMP TABLE dwells AS
        SELECT a.order_id, a.stage, a.stage_t AS start_t, min(b.stage_t) AS end_t,
               min(b.stage_t) - a.stage_t AS dwell, s.sla_us
        FROM stages a
        JOIN stages b ON a.order_id = b.order_id AND b.stage_rank > a.stage_rank
                     AND b.stage_t >= a.stage_t
        LEFT JOIN stage_sla s ON s.stage = a.stage
        WHERE a.stage <> 'DELIVERED'
        GROUP BY a.order_id, a.stage, a.stage_t, s.sla_us""",
        """CREATE TEMP TABLE transitions AS
        SELECT order_id, stage, end_t, dwell > sla_us AS breached
        FROM dwells WHERE sla_us IS NOT NULL""",
        # Outlier baselines: same partition and stage, dwells ending in the
        # history before the hour bucket of the dwell's end.
        f"""CREATE TEMP TABLE dwell_parts AS
        SELECT d.*, o.part, o.wm, d.end_t - d.end_t % {o.bucket_us} AS hour
        FROM dwells d JOIN orders o USING (order_id)""",
        f"""CREATE TEMP TABLE baselines AS
        WITH wanted AS (
            SELECT DISTINCT part, stage, hour FROM dwell_parts WHERE wm > end_t
        ), samples AS (
            SELECT w.part, w.stage, w.hour, CAST(x.dwell AS DOUBLE) AS dwell
            FROM wanted w JOIN dwell_parts x
              ON x.part = w.part AND x.stage = w.stage
             AND x.end_t >= w.hour - {o.history_us} AND x.end_t < w.hour
        ), medians AS (
            SELECT part, stage, hour, median(dwell) AS med, count(*) AS n
            FROM samples GROUP BY ALL
        )
        SELECT m.part, m.stage, m.hour, m.med, m.n, median(abs(s.dwell - m.med)) AS mad
        FROM medians m JOIN samples s USING (part, stage, hour)
        GROUP BY m.part, m.stage, m.hour, m.med, m.n""",
        f"""CREATE TEMP TABLE flags AS
        SELECT order_id, t FROM events WHERE event_type IN ('EXCEPTION', 'REROUTED')
        UNION ALL
        SELECT b.order_id, min(a.stage_t) FROM stages b
        JOIN stages a ON a.order_id = b.order_id AND a.stage_rank < b.stage_rank
                     AND a.stage_t > b.stage_t
        GROUP BY b.order_id, b.stage
        UNION ALL
        SELECT s.order_id, s.stage_t + l.sla_us FROM stages s
        JOIN stage_sla l USING (stage)
        JOIN outcomes o USING (order_id)
        LEFT JOIN (
            SELECT a.order_id, a.stage, min(b.stage_t) AS next_t FROM stages a
            JOIN stages b ON a.order_id = b.order_id AND b.stage_rank > a.stage_rank
                         AND b.stage_t >= a.stage_t
            GROUP BY a.order_id, a.stage
        ) n USING (order_id, stage)
        WHERE s.stage <> 'DELIVERED' AND (
            CASE WHEN least(n.next_t, CASE WHEN o.cancelled_t >= s.stage_t
                                           THEN o.cancelled_t END) IS NOT NULL
                 THEN least(n.next_t, CASE WHEN o.cancelled_t >= s.stage_t
                                           THEN o.cancelled_t END) > s.stage_t + l.sla_us
                 ELSE o.wm > s.stage_t + l.sla_us END)
        UNION ALL
        SELECT d.order_id, d.end_t FROM dwell_parts d
        JOIN baselines b USING (part, stage, hour)
        WHERE d.wm > d.end_t AND b.n >= {o.min_samples} AND b.mad > 0
          AND d.dwell - b.med > {o.scaled_threshold!r} * b.mad""",
    ]


def batch_metric_rows(
    bronze: pa.Table,
    settings: HealthSettings,
    *,
    partitions: int,
    include_late: bool = False,
) -> list[dict[str, Any]]:
    """Metric rows recomputed from bronze events (the batch oracle).

    ``include_late`` also counts events that arrived beyond the allowed lateness
    (restatement); without it the result equals the stream's.  ``partitions``
    is the topic's partition count: rows are final only when every partition
    has events and the minimum watermark passed their end.
    """
    con = duckdb.connect()
    try:
        con.register("bronze", bronze)
        for statement in _views(settings, include_late):
            con.execute(statement)
        return _aggregate(con, settings, partitions)
    finally:
        con.close()


def _dimension_sql(at: str) -> dict[str, str]:
    """Each dimension's value at time ``at`` (SQL), as dataflows.dimensions reads it.

    Expects the order as ``o`` and ASOF joins of ``warehouse_changes`` as ``w``
    and ``carrier_changes`` as ``c`` at ``at``.
    """
    attribute = "CASE WHEN {at} >= o.created_t THEN o.{name} END"
    return {
        "all": "'all'",
        "warehouse_id": "w.warehouse_id",
        "carrier_id": "c.carrier_id",
        **{
            name: attribute.format(at=at, name=name)
            for name in ("region", "channel", "customer_segment", "seller_id")
        },
    }


def order_outcomes(
    bronze: pa.Table, settings: HealthSettings, dimension: str, *, include_late: bool = False
) -> pa.Table:
    """Per order, its promise outcome and delivery, each with ``dimension``'s value then.

    The order-level evidence behind the daily promise-fulfilment facts, from
    the batch oracle's own reading of bronze (not the stream's state).  Rows:
    orders whose promise resolved or was cancelled, and orders delivered.
    ``outcome_subject`` is the dimension value at the resolution time (null
    when the order has no outcome), ``delivery_subject`` at delivery (null
    when the delivery is not a deviation fact).  Times are epoch microseconds.
    """
    if dimension not in settings.dimensions:
        raise ValueError(f"unknown dimension {dimension!r}; enabled: {settings.dimensions}")
    con = duckdb.connect()
    try:
        con.register("bronze", bronze)
        for statement in _outcome_views(settings, include_late):
            con.execute(statement)
        resolved = _dimension_sql("o.resolved_t")[dimension]
        delivered = _dimension_sql("o.delivered_t")[dimension]
        return con.execute(
            f"""WITH outcome AS (
                SELECT o.order_id, {resolved} AS subject FROM outcomes o
                ASOF LEFT JOIN warehouse_changes w
                    ON o.order_id = w.order_id AND o.resolved_t >= w.t
                ASOF LEFT JOIN carrier_changes c
                    ON o.order_id = c.order_id AND o.resolved_t >= c.t
                WHERE o.status IN ('on_time', 'late', 'cancelled')
                  AND o.created_t <= o.resolved_t
            ), delivery AS (
                SELECT o.order_id, {delivered} AS subject FROM outcomes o
                ASOF LEFT JOIN warehouse_changes w
                    ON o.order_id = w.order_id AND o.delivered_t >= w.t
                ASOF LEFT JOIN carrier_changes c
                    ON o.order_id = c.order_id AND o.delivered_t >= c.t
                WHERE o.status <> 'cancelled' AND o.created_t <= o.delivered_t
            )
            SELECT o.order_id, o.created_t, o.promise_t, o.delivered_t, o.cancelled_t,
                   CASE WHEN x.order_id IS NOT NULL THEN o.status END AS status,
                   CASE WHEN x.order_id IS NOT NULL THEN o.resolved_t END AS resolved_t,
                   x.subject AS outcome_subject, d.subject AS delivery_subject
            FROM outcomes o
            LEFT JOIN outcome x USING (order_id)
            LEFT JOIN delivery d USING (order_id)
            WHERE x.order_id IS NOT NULL OR d.order_id IS NOT NULL
            ORDER BY o.order_id"""
        ).to_arrow_table()
    finally:
        con.close()


def _aggregate(
    con: duckdb.DuckDBPyConnection, settings: HealthSettings, partitions: int
) -> list[dict[str, Any]]:
    facts_sql = " UNION ALL ".join(
        f"SELECT '{f.name}' AS fact, order_id, t, value, dims_t FROM ({f.batch_sql})" for f in FACTS
    )
    con.execute(f"CREATE TEMP TABLE facts AS {facts_sql}")
    dims = _dimension_sql("f.dims_t")
    columns = ", ".join(f'{dims[d]} AS "{d}"' for d in settings.dimensions)
    con.execute(
        f"""CREATE TEMP TABLE fact_dims AS
        SELECT f.fact, f.order_id, f.t, f.value, {columns}
        FROM facts f JOIN orders o USING (order_id)
        ASOF LEFT JOIN warehouse_changes w ON f.order_id = w.order_id AND f.dims_t >= w.t
        ASOF LEFT JOIN carrier_changes c ON f.order_id = c.order_id AND f.dims_t >= c.t"""
    )
    unpivot = " UNION ALL ".join(
        f"SELECT fact, order_id, t, value, '{d}' AS dimension, \"{d}\" AS dimension_value "
        f'FROM fact_dims WHERE "{d}" IS NOT NULL'
        for d in settings.dimensions
    )
    sizes = " UNION ALL ".join(
        f"SELECT '{label}' AS window_size, {size} AS size_us"
        for label, size in settings.window_sizes
    )
    aggregates = []
    for fact in FACTS:
        for measure, agg in fact.measures.items():
            expr = {
                Agg.COUNT: "count(*)",
                Agg.SUM: "sum(value)",
                Agg.SUMSQ: "sum(CAST(value AS HUGEINT) * value)",
                Agg.DISTINCT: "count(DISTINCT order_id)",
            }[agg]
            aggregates.append(
                f"coalesce({expr} FILTER (WHERE fact = '{fact.name}'), 0) AS {measure}"
            )
        if fact.keep_values:
            aggregates.append(
                f"list(value ORDER BY value) FILTER (WHERE fact = '{fact.name}') "
                f"AS values_{fact.name}"
            )
    result = con.execute(
        f"""WITH rows AS (SELECT * FROM ({unpivot})), sizes AS ({sizes})
        SELECT window_size, t - t % size_us AS start_us, size_us, dimension, dimension_value,
               {", ".join(aggregates)}
        FROM rows CROSS JOIN sizes
        GROUP BY window_size, start_us, size_us, dimension, dimension_value"""
    ).to_arrow_table()

    watermarks = con.execute("SELECT wm FROM partition_wm").fetchall()
    global_wm = min(w[0] for w in watermarks) if len(watermarks) == partitions else None
    records = result.to_pylist()
    running: dict[tuple[str, str, str], int] = defaultdict(int)
    rows = []
    value_facts = [f.name for f in FACTS if f.keep_values]
    for record in sorted(
        records,
        key=lambda r: (r["window_size"], r["dimension"], r["dimension_value"], r["start_us"]),
    ):
        series = (record["window_size"], record["dimension"], record["dimension_value"])
        running[series] += record["late_open_in"] - record["late_open_out"]
        measures = {m: int(record[m]) for m in MEASURES}
        totals = WindowTotals(
            measures=measures,
            values={f: list(record[f"values_{f}"] or []) for f in value_facts},
            late_open=running[series],
        )
        components = compute_components(totals)
        index, used = health_index(components, settings)
        start, size = record["start_us"], record["size_us"]
        row: dict[str, Any] = {
            "window_size": record["window_size"],
            "window_start": from_us(start),
            "window_end": from_us(start + size),
            "dimension": record["dimension"],
            "dimension_value": record["dimension_value"],
            "is_final": global_wm is not None and start + size <= global_wm,
        }
        row.update(measures)
        row.update(components)
        row["health_index"] = index
        row["health_components"] = used
        rows.append(row)
    return rows
