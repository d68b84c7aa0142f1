"""Daily promise-fulfilment facts for finance, derived from the 1-day metric windows.

Finance needs per subject per day: how many promises came due, how many were
kept, late or cancelled, and how far deliveries deviated from the promise.
Every one of those is already a measure or component of the day-long metric
rows (same outcome rule, same dimensions, same stream), so the facts are a
*projection* of those rows, not a second computation that could drift:

=========================  ==============================================
fact                       from the 1-day metric row
=========================  ==============================================
kept                       ``orders_on_time``
late                       ``orders_resolved - orders_on_time``
cancelled                  ``orders_cancelled``
promised                   ``kept + late + cancelled``
kept_rate                  ``on_time_rate``
delivered                  ``deviation_count``
deviation_us_sum           ``deviation_us_sum``
deviation_hours_avg/pNN    ``promise_deviation_hours_avg`` / ``_pNN``
=========================  ==============================================

A "subject" is a dimension (``subject_type``) and its value (``subject_id``);
``all``/``all`` is the whole company.  The gate derives the facts from each
staged batch and validates them with their own suite before publishing
(:mod:`lakehouse.publication`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.tables import FULFILMENT_COLUMNS, PROMISE_FULFILMENT

__all__ = ["DAY_US", "fulfilment_facts"]

DAY_US = 86_400_000_000

_SCHEMA = pa.schema([PROMISE_FULFILMENT.schema.field(c) for c in FULFILMENT_COLUMNS])


def _int(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.fill_null(column.cast(pa.int64()), 0)


def fulfilment_facts(metrics: pa.Table, carry: Sequence[str] = ()) -> pa.Table:
    """The promise-fulfilment facts of the day-long rows in a metric batch.

    ``metrics`` has the metric columns of ``gold/health_metrics_staging``.  A
    row is day-long when ``window_end - window_start`` is exactly one day (the
    window's label is configuration).  Rows with a null key are left out: the
    metric suite quarantines their batch anyway.  ``carry`` names input
    columns to keep alongside (e.g. ``staging_version``).
    """
    schema = pa.schema([*_SCHEMA, *(metrics.schema.field(c) for c in carry)])
    if metrics.num_rows == 0:
        return schema.empty_table()
    start = metrics["window_start"].cast(pa.int64())
    end = metrics["window_end"].cast(pa.int64())
    mask = pc.and_(
        pc.equal(pc.subtract(end, start), DAY_US),
        pc.and_(pc.is_valid(metrics["dimension"]), pc.is_valid(metrics["dimension_value"])),
    )
    days = metrics.filter(pc.fill_null(mask, False))
    resolved, on_time = _int(days["orders_resolved"]), _int(days["orders_on_time"])
    cancelled = _int(days["orders_cancelled"])
    late = pc.subtract(resolved, on_time)
    columns = {
        "day": days["window_start"].cast(pa.date32()),
        "subject_type": days["dimension"],
        "subject_id": days["dimension_value"],
        "is_final": pc.fill_null(days["is_final"], False),
        "promised": pc.add(resolved, cancelled),
        "kept": on_time,
        "late": late,
        "cancelled": cancelled,
        "kept_rate": days["on_time_rate"],
        "delivered": _int(days["deviation_count"]),
        "deviation_us_sum": _int(days["deviation_us_sum"]),
        "deviation_hours_avg": days["promise_deviation_hours_avg"],
        "deviation_hours_p50": days["promise_deviation_hours_p50"],
        "deviation_hours_p90": days["promise_deviation_hours_p90"],
        "deviation_hours_p99": days["promise_deviation_hours_p99"],
    }
    for name in carry:
        columns[name] = days[name]
    return pa.table([columns[f.name].cast(f.type) for f in schema], schema=schema)
