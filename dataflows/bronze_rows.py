"""One partition batch's ``bronze/order_events`` rows, built a column at a time.

Every consumed event becomes a bronze row.  Built as a dict per event and
then read back out of the dicts a column at a time for Arrow, they cost ~13%
of the event thread (docs/scaling.md, "Rows as columns, commits that
coalesce").  Events of
one type share their fields, so a batch is grouped by type: msgspec hands out
each event's values as a tuple, ``zip`` turns a type's tuples into columns in
C, and Arrow converts each column in one call.  The rows keep their offset
order.

This class is the reference.  The native core builds the same table from the
same lists straight into Arrow buffers, in offset order
(``orderhealth_native.BronzePlan``, :func:`dataflows.native_bronze.bronze_maker`);
the tests hold the two equal.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from dataflows.json_text import json_text
from dataflows.lifecycle import WIRE
from lakehouse.tables import BRONZE_EVENTS
from schemas.events import OrderEvent

__all__ = ["JSON_FIELDS", "BronzeRows"]

#: Contract fields holding free-form maps, stored as JSON text.
JSON_FIELDS = frozenset({"attributes", "context"})
_SCHEMA = BRONZE_EVENTS.schema
#: The columns that come from the event itself (the contract), in schema order.
_CONTRACT = pa.schema(list(_SCHEMA)[: _SCHEMA.get_field_index("topic")])
_astuple = msgspec.structs.astuple


class BronzeRows:
    """The bronze rows of one batch: the events and what the partition decided."""

    __slots__ = (
        "_events",
        "duplicate",
        "late",
        "offsets",
        "partition",
        "times",
        "topic",
        "warnings",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._events: list[OrderEvent] = []
        self.offsets: list[int] = []
        self.duplicate: list[bool] = []
        self.late: list[bool] = []
        #: Comma-joined names of the record rules (action "warn") each broke.
        self.warnings: list[str | None] = []
        #: The events' times in us (the native table writes ``event_time``
        #: from them; this reference reads the events' own field).
        self.times: list[int] = []

    def add(
        self,
        event: OrderEvent,
        offset: int,
        duplicate: bool,
        late: bool,
        warnings: str | None,
        at_us: int,
    ) -> None:
        self._events.append(event)
        self.offsets.append(offset)
        self.duplicate.append(duplicate)
        self.late.append(late)
        self.warnings.append(warnings)
        self.times.append(at_us)

    def __len__(self) -> int:
        return len(self._events)

    def table(self) -> pa.Table:
        """The rows in the ``bronze/order_events`` schema, in offset order."""
        by_type: dict[type[OrderEvent], list[int]] = {}
        for position, event in enumerate(self._events):
            by_type.setdefault(type(event), []).append(position)
        parts = [self._of_type(kind, positions) for kind, positions in by_type.items()]
        contract = pa.concat_tables(parts) if parts else _CONTRACT.empty_table()
        if len(parts) > 1:  # back into offset order
            placed = [p for positions in by_type.values() for p in positions]
            contract = contract.take(pc.sort_indices(pa.array(placed, pa.int64())))
        size = len(self._events)
        columns = [
            *contract.columns,
            pa.repeat(pa.scalar(self.topic, pa.string()), size),
            pa.repeat(pa.scalar(self.partition, pa.int32()), size),
            pa.array(self.offsets, pa.int64()),
            pa.array(self.duplicate, pa.bool_()),
            pa.array(self.late, pa.bool_()),
            pa.array(self.warnings, pa.string()),
        ]
        return pa.Table.from_arrays(columns, schema=_SCHEMA)

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts (tests and small tools)."""
        rows: list[dict[str, Any]] = self.table().to_pylist()
        return rows

    def _of_type(self, kind: type[OrderEvent], positions: list[int]) -> pa.Table:
        events = self._events
        size = len(positions)
        tuples = [_astuple(events[p]) for p in positions]
        # Every tuple of a type has one value per field.
        values = dict(zip(kind.__struct_fields__, zip(*tuples, strict=True), strict=True))
        arrays = []
        for field in _CONTRACT:
            name = field.name
            column = values.get(name)
            if name == "event_type":
                arrays.append(pa.repeat(pa.scalar(WIRE[kind.event_type], pa.string()), size))
            elif column is None:
                arrays.append(pa.nulls(size, field.type))
            elif name in JSON_FIELDS:
                arrays.append(
                    pa.array([None if v is None else json_text(v) for v in column], field.type)
                )
            else:
                arrays.append(pa.array(column, field.type))
        return pa.Table.from_arrays(arrays, schema=_CONTRACT)
