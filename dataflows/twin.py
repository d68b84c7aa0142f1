"""The digital-twin row of ``silver/order_lifecycle``, built from an order view.

Three layers (SPEC §5): *base* (ids and order attributes), *behaviour*
(per-stage timestamps and dwell, current stage, outcome, anomaly flags) and
*environment* (the last ``context`` per stage).  The Arrow schema of the
table is declared next to the other tables in :mod:`lakehouse.tables`; a unit
test keeps the two aligned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pyarrow as pa

from dataflows.json_text import json_text
from dataflows.lifecycle import OrderView
from dataflows.timeutil import US_PER_HOUR, from_us
from schemas.events import EventType

__all__ = [
    "STAGE_COLUMNS",
    "LifecycleColumns",
    "LifecycleRows",
    "PyLifecycleRows",
    "lifecycle_columns",
    "lifecycle_rows",
    "lifecycle_texts",
    "lifecycle_values",
]

#: Lifecycle stages (wire tag) that get their own timestamp and dwell columns.
STAGE_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (stage.value, stage.value.lower())
    for stage in (
        EventType.ORDER_CREATED,
        EventType.FINANCE_APPROVED,
        EventType.ROUTED,
        EventType.WAREHOUSE_ACCEPTED,
        EventType.PICKED,
        EventType.PACKED,
        EventType.SHIPPED,
        EventType.DELIVERED,
    )
)


#: (stage, timestamp column, dwell column) per stage column pair.
STAGE_COLUMN_NAMES = tuple((s, f"{c}_at", f"{c}_dwell_hours") for s, c in STAGE_COLUMNS)
#: A batch's lifecycle rows as columns: name -> values (a sequence, or an
#: Arrow array from the native core), times as us since the epoch.
LifecycleColumns = dict[str, Any]


def lifecycle_texts(view: OrderView) -> tuple[str, str]:
    """The row's JSON texts: its anomaly flags and its context by stage."""
    flags = json_text(
        [
            {"kind": f.kind, "at": from_us(f.at_us).isoformat(), "reason": f.reason}
            for f in view.flags
        ]
    )
    return flags, json_text(view.context_by_stage)


def lifecycle_values(
    view: OrderView, *, topic: str, partition: int, last_offset: int, first_seen_us: int
) -> dict[str, Any]:
    """Row values for one order (column name -> value).

    Times stay integer microseconds since the epoch: Arrow takes ints for a
    ``timestamp("us", "UTC")`` column as they are, while a ``datetime`` per
    time column (14 a row), built here and taken apart again by Arrow, was
    ~6% of the streaming core.

    ``first_seen_us``: event time of the first event the stream accepted for
    the order; its day partitions the table (the writer derives it).
    """
    attrs = view.attributes
    flags, context = lifecycle_texts(view)
    row: dict[str, Any] = {
        # base layer
        "order_id": view.order_id,
        "customer_id": attrs.get("customer_id"),
        "customer_segment": attrs.get("customer_segment"),
        "channel": attrs.get("channel"),
        "region": attrs.get("region"),
        "seller_id": attrs.get("seller_id"),
        "order_value": attrs.get("order_value"),
        "currency": attrs.get("currency"),
        "line_count": attrs.get("line_count"),
        "promise_confidence": attrs.get("promise_confidence"),
        "first_warehouse_id": view.first_warehouse,
        "warehouse_id": view.warehouse,
        "carrier_id": view.carrier,
        # behaviour layer
        "first_promised_at": view.first_promise_us,
        "latest_promised_at": view.latest_promise_us,
        "current_stage": view.current_stage,
        "outcome": view.outcome.status.value,
        "resolved_at": view.outcome.resolved_at_us,
        "cancelled_at": view.cancelled_us,
        "cancel_reason": view.cancel_reason,
        "anomaly_count": len(view.flags),
        "anomaly_kinds": ",".join(sorted({f.kind for f in view.flags})) or None,
        "anomaly_flags": flags,
        "event_count": view.event_count,
        "last_event_at": view.last_event_us,
        # environment layer
        "context_by_stage": context,
        # lineage
        "topic": topic,
        "partition": partition,
        "last_event_offset": last_offset,
        "first_seen_at": first_seen_us,
    }
    for stage, at_column, dwell_column in STAGE_COLUMN_NAMES:
        row[at_column] = view.stage_us.get(stage)
        dwell = view.dwell_us.get(stage)
        row[dwell_column] = None if dwell is None else dwell / US_PER_HOUR
    return row


def lifecycle_columns(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Rows of :func:`lifecycle_values` as columns (column name -> values).

    Every row has the same keys in the same order (one dict literal builds
    them), so the values transpose with ``zip`` in C.  Reading each column
    back out of the dicts by name was ~3% of the event thread.
    """
    if not rows:
        return {}
    return dict(zip(rows[0], zip(*(row.values() for row in rows), strict=True), strict=True))


class LifecycleRows(Protocol):
    """Collects a batch's lifecycle rows (:func:`lifecycle_values`) as columns.

    Two implementations: :class:`PyLifecycleRows` (the reference) and the
    native one (:func:`dataflows.native_lifecycle.lifecycle_maker`).
    """

    def add(
        self, view: OrderView, topic: str, partition: int, last_offset: int, first_seen_us: int
    ) -> None: ...

    def columns(self) -> LifecycleColumns:
        """The rows added so far as columns (``{}`` for none); the collector is then empty."""
        ...


class PyLifecycleRows:
    """The Python :class:`LifecycleRows`: :func:`lifecycle_values` per view."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []

    def add(
        self, view: OrderView, topic: str, partition: int, last_offset: int, first_seen_us: int
    ) -> None:
        self._rows.append(
            lifecycle_values(
                view,
                topic=topic,
                partition=partition,
                last_offset=last_offset,
                first_seen_us=first_seen_us,
            )
        )

    def columns(self) -> LifecycleColumns:
        rows, self._rows = self._rows, []
        return lifecycle_columns(rows)


def lifecycle_rows(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Columns of either collector -> one dict per row, times as us (tests, small callers)."""
    lists = []
    for column in columns.values():
        if isinstance(column, pa.Array):
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.int64())
            column = column.to_pylist()
        lists.append(column)
    return [dict(zip(columns, values, strict=True)) for values in zip(*lists, strict=True)]
