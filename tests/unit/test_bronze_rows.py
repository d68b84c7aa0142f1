"""Bronze rows built a column at a time equal the same rows built one dict per event."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from typing import Any

import msgspec
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.bronze_rows import JSON_FIELDS, BronzeRows
from dataflows.json_text import json_text
from lakehouse.tables import BRONZE_EVENTS
from schemas.events import EventType, OrderEvent
from tests.factories import at, event

_ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30))]
_CONTEXT = st.dictionaries(
    st.sampled_from(["latency_ms", "queue_depth", "note"]),
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(0, 1e3), st.text()),
    max_size=3,
)
_ATTRIBUTES = st.dictionaries(
    st.text(min_size=1, max_size=5), st.recursive(st.integers() | st.text(), st.lists), max_size=3
)


@st.composite
def _events(draw: st.DrawFn) -> OrderEvent:
    kind = draw(st.sampled_from(list(EventType)))
    when = at(draw(st.floats(-100, 100))).astimezone(draw(st.sampled_from(_ZONES)))
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["attributes"] = draw(st.one_of(st.none(), _ATTRIBUTES))
    if draw(st.booleans()):
        fields["context"] = draw(st.one_of(st.none(), _CONTEXT))
    if draw(st.booleans()):
        fields["signature"] = draw(st.text(max_size=8))
    if kind is EventType.ORDER_CREATED and draw(st.booleans()):
        fields.update(region="DE", order_value=draw(st.floats(0, 1e6)), line_count=3)
    return event(kind, draw(st.sampled_from(["A", "B"])), when, **fields)


def _reference_row(event: OrderEvent) -> dict[str, Any]:
    """One dict per event: how bronze rows were built before they were columns."""
    row = msgspec.structs.asdict(event)
    row["event_type"] = event.event_type.value
    for name in JSON_FIELDS:
        if row.get(name) is not None:
            row[name] = json_text(row[name])
    return row


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(_events(), st.booleans(), st.booleans(), st.sampled_from([None, "a", "a,b"])),
        max_size=25,
    )
)
def test_columns_equal_rows(batch: list[tuple[OrderEvent, bool, bool, str | None]]) -> None:
    rows = BronzeRows("orders", 3)
    reference = []
    for offset, (e, duplicate, late, warnings) in enumerate(batch, start=100):
        rows.add(e, offset, duplicate=duplicate, late=late, warnings=warnings)
        reference.append(
            {
                **_reference_row(e),
                "topic": "orders",
                "partition": 3,
                "offset": offset,
                "is_duplicate": duplicate,
                "is_late": late,
                "quality_warnings": warnings,
            }
        )
    expected = pa.Table.from_pylist(reference, schema=BRONZE_EVENTS.schema)
    got = rows.table()
    assert got.schema == BRONZE_EVENTS.schema
    assert got.equals(expected), (got.to_pylist(), reference)
    assert len(rows) == len(batch)
    assert rows.offsets == [100 + i for i in range(len(batch))]
