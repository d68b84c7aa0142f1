"""The native lifecycle rows equal the reference: ``orderhealth_native.LifecycleRows`` against
``lifecycle_values``.

``dataflows/twin.py`` defines the row of ``silver/order_lifecycle``; the
native core writes it in Rust straight into Arrow buffers
(``native/src/lifecycle.rs``).  On random orders -- skipped stages,
cancellations, reroutes, outlier flags, no ORDER_CREATED, and random
attributes, contexts (any text, floats of every magnitude, NaN) and flags --
both must give the same Arrow table, and what the Rust JSON writer does not
handle must still come out as Python writes it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_lifecycle
from dataflows.json_text import json_text
from dataflows.lifecycle import Flag, OrderView
from dataflows.native_core import native_module
from dataflows.native_lifecycle import NATIVE_TWIN_OF, lifecycle_maker, twin_fingerprint
from dataflows.timeutil import to_us
from dataflows.twin import LifecycleRows, PyLifecycleRows, lifecycle_rows, lifecycle_texts
from lakehouse.tables import ORDER_LIFECYCLE
from lakehouse.writer import DeltaWriter
from tests.twin_guard import unchecked_twin
from tests.unit.test_native_facts import views

native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="orderhealth_native is not built")
WRITER = DeltaWriter("/nonexistent", ORDER_LIFECYCLE)  # to_arrow only: no table is opened
FIRST_US = to_us(datetime(1, 1, 1, tzinfo=UTC))
LAST_US = to_us(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))

texts = st.text(st.characters(codec="utf-8"), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.sampled_from([1e16, 1e-5, 1e-6, 123456789012345.6, 9999999999999998.0, -0.0, 5e-324])
    # Two shortest texts read back as each: msgspec rounds the tie to even.
    | st.sampled_from([-1267860061485775.2, 1156983321958482.2, -196790152217186.12])
    | texts
)
contexts = st.dictionaries(
    st.sampled_from(["ORDER_CREATED", "ROUTED", "SHIPPED", "DELIVERED", "CANCELLED"]),
    st.dictionaries(texts, scalars, max_size=4),
    max_size=5,
)
flags = st.lists(
    st.builds(
        Flag,
        st.sampled_from(["exception", "reroute", "stage_sla_breach", "outlier_dwell"]),
        st.integers(FIRST_US, LAST_US) | st.integers(-(10**12), 10**12),
        texts,
    ),
    max_size=4,
)
attributes = st.fixed_dictionaries(
    {},
    optional={
        "customer_id": st.none() | texts,
        "customer_segment": st.sampled_from(["B2B", "B2C"]),
        "channel": texts,
        "region": texts,
        "seller_id": texts,
        "order_value": st.none() | st.floats(0, 1e9) | st.integers(0, 10**6),
        "currency": st.sampled_from(["EUR", "USD"]),
        "line_count": st.none() | st.integers(1, 1000),
        "promise_confidence": st.floats(0, 1),
    },
)


@st.composite
def varied_views(draw: st.DrawFn) -> OrderView:
    """A random order's view, with random attributes, contexts and flags half the time."""
    view: OrderView = draw(views())
    if draw(st.booleans()):
        view = msgspec.structs.replace(
            view,
            attributes=draw(attributes),
            context_by_stage=draw(contexts),
            flags=tuple(draw(flags)),
            order_id=draw(texts.filter(bool)),
            cancel_reason=draw(st.none() | texts),
        )
    return view


def _table(rows: LifecycleRows, batch: list[tuple[OrderView, int, int, int]]) -> pa.Table:
    for view, partition, offset, first_seen in batch:
        rows.add(view, "orders", partition, offset, first_seen)
    columns = rows.columns()
    for column in columns.values():
        if isinstance(column, pa.Array):
            column.validate(full=True)
    return WRITER.to_arrow(columns)


batches = st.lists(
    st.tuples(
        varied_views(),
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**62),
        st.integers(-(10**15), 10**16),
    ),
    min_size=1,
    max_size=5,
)


@needs_native
@settings(max_examples=300, deadline=None)
@given(batch=batches, again=batches)
def test_native_rows_equal_the_reference(
    batch: list[tuple[OrderView, int, int, int]], again: list[tuple[OrderView, int, int, int]]
) -> None:
    native_rows = lifecycle_maker("native")()
    reference = _table(PyLifecycleRows(), batch)
    assert _table(native_rows, batch).equals(reference)
    # A collector is empty once its columns are taken, and can be used again.
    assert native_rows.columns() == {}
    assert _table(native_rows, again).equals(_table(PyLifecycleRows(), again))


@needs_native
def test_what_the_rust_json_writer_leaves_is_written_by_python() -> None:
    """Ints beyond 64 bits, other types: the whole text comes from Python."""
    (view, *_rest) = _examples()
    odd = msgspec.structs.replace(
        view,
        context_by_stage={
            "ROUTED": {"big": 2**70},
            "SHIPPED": {"when": datetime(2026, 1, 1, tzinfo=UTC)},
        },
    )
    table = _table(lifecycle_maker("native")(), [(odd, 0, 1, 2)])
    text = json_text(odd.context_by_stage)
    assert '"big":1180591620717411303424' in text and '"when":"2026-01-01' in text
    assert table["context_by_stage"].to_pylist() == [text]
    assert table.equals(_table(PyLifecycleRows(), [(odd, 0, 1, 2)]))
    assert lifecycle_texts(odd)[1] == json_text(odd.context_by_stage)


def test_rows_read_back_as_lifecycle_values_give_them() -> None:
    rows = PyLifecycleRows()
    view = _examples()[0]
    rows.add(view, "orders", 3, 17, view.last_event_us)
    (row,) = lifecycle_rows(rows.columns())
    assert (row["order_id"], row["partition"], row["last_event_offset"]) == ("O1", 3, 17)
    assert row["first_seen_at"] == view.last_event_us


def test_the_native_rows_were_checked_against_this_twin() -> None:
    """The fingerprint names the definition of the row the equality tests above passed on."""
    assert twin_fingerprint() == NATIVE_TWIN_OF, (
        "dataflows/twin.py changed, so the native core now writes lifecycle rows in "
        "Python.  Make native/src/lifecycle.rs match it, run this file's equality "
        f"tests, then set dataflows.native_lifecycle.NATIVE_TWIN_OF = {twin_fingerprint()!r}"
    )


@needs_native
def test_a_changed_twin_writes_its_rows_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lifecycle_maker("native") is not PyLifecycleRows
    with unchecked_twin(
        monkeypatch, native_lifecycle, "NATIVE_TWIN_OF", native_lifecycle._native_twin_current
    ):
        maker = lifecycle_maker("native")
    assert maker is PyLifecycleRows


def _examples() -> list[OrderView]:
    found: list[OrderView] = []

    @settings(max_examples=5, deadline=None, database=None)
    @given(view=views())
    def collect(view: OrderView) -> None:
        found.append(view)

    collect()
    return found
