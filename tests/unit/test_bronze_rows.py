"""Bronze rows built a column at a time equal the same rows built one dict per event.

Both cores: the Python reference (``BronzeRows``) and the native rows
(``native/src/bronze.rs``) that write Arrow buffers in offset order.
"""

from __future__ import annotations

import pickle
from datetime import UTC, timedelta, timezone
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_bronze
from dataflows.bronze_rows import JSON_FIELDS, BronzeRows
from dataflows.json_text import json_text
from dataflows.native_bronze import NATIVE_BRONZE_OF, bronze_fingerprint, bronze_maker
from dataflows.native_core import native_module
from dataflows.timeutil import to_us
from lakehouse.tables import BRONZE_EVENTS
from schemas.events import EventType, OrderEvent
from tests.factories import at, event
from tests.twin_guard import unchecked_twin

_ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30))]
_CONTEXT = st.dictionaries(
    st.sampled_from(["latency_ms", "queue_depth", "note"]),
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(0, 1e3), st.text()),
    max_size=3,
)
CORES = ["python"] + (["native"] if native_module() is not None else [])
needs_native = pytest.mark.skipif(native_module() is None, reason="orderhealth_native is not built")
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


@pytest.mark.parametrize("core", CORES)
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(_events(), st.booleans(), st.booleans(), st.sampled_from([None, "a", "a,b"])),
        max_size=25,
    )
)
def test_columns_equal_rows(
    core: str, batch: list[tuple[OrderEvent, bool, bool, str | None]]
) -> None:
    rows = bronze_maker(core)("orders", 3)
    reference = []
    for offset, (e, duplicate, late, warnings) in enumerate(batch, start=100):
        rows.add(e, offset, duplicate, late, warnings, to_us(e.event_time))
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
    assert rows.warnings == [warnings for _e, _d, _l, warnings in batch]
    # A batch crossing Bytewax processes is pickled: the same rows arrive.
    assert pickle.loads(pickle.dumps(rows)).table().equals(expected)
    assert rows.table().equals(expected)  # built again, the same


@needs_native
def test_the_native_rows_are_the_native_core_s() -> None:
    assert type(bronze_maker("native")("orders", 3)) is not BronzeRows


def test_the_native_rows_were_checked_against_this_reference() -> None:
    """The fingerprint names the reference the equality test above passed on."""
    assert bronze_fingerprint() == NATIVE_BRONZE_OF, (
        "dataflows/bronze_rows.py or json_text.py changed, so the native core now builds "
        "bronze rows in Python.  Make native/src/bronze.rs match, run this file's "
        f"equality test, then set dataflows.native_bronze.NATIVE_BRONZE_OF = "
        f"{bronze_fingerprint()!r}"
    )


@needs_native
def test_changed_rows_are_built_in_python_until_their_twin_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with unchecked_twin(
        monkeypatch, native_bronze, "NATIVE_BRONZE_OF", native_bronze._native_bronze_current
    ):
        maker = bronze_maker("native")
    assert maker is BronzeRows


@needs_native
def test_native_rows_refuse_what_is_not_an_event() -> None:
    rows = bronze_maker("native")("orders", 3)
    rows.add(object(), 1, False, False, None, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an event of the contract"):
        rows.table()
    # A value of the wrong type (the decoder never lets one through).
    rows = bronze_maker("native")("orders", 3)
    bad = msgspec.structs.replace(event("ORDER_CREATED", "A", at(1)), region=7)
    rows.add(bad, 1, False, False, None, to_us(at(1)))
    with pytest.raises(TypeError):
        rows.table()
