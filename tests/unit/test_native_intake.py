"""``orderhealth_native.Intake`` takes a batch in as ``PartitionProcessor.take_in`` does.

Two processors, one per intake, read the same random partition log in the
same random batches (whole ``process`` calls, so hot state, evictions and
the watermark carry from batch to batch).  Short lateness and retention make
late, retired and evicted events common; redeliveries come with the same or a
different payload, out of order, with record-rule warnings and produce times.
After every batch both must hold the same bronze rows, the same orders (every
slot), the same evicted ids and watermark, and hand on the same batch.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_intake
from dataflows.native_core import native_module
from dataflows.native_intake import NATIVE_INTAKE_OF, intake_fingerprint, intake_maker
from dataflows.partition_processor import PartitionProcessor, SourcedEvent, _Order
from dataflows.settings import HealthSettings
from tests.factories import at, event
from tests.twin_guard import unchecked_twin

native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="orderhealth_native is not built")

BASE = HealthSettings.load()
HOUR = 3_600_000_000
SHORT = msgspec.structs.replace(
    BASE,
    allowed_lateness_us=2 * HOUR,
    finished_retention_us=3 * HOUR,
    evicted_memory_us=6 * HOUR,
)
KINDS = ["ORDER_CREATED", "FINANCE_APPROVED", "PICKED", "SHIPPED", "DELIVERED", "CANCELLED"]


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[SourcedEvent], list[int]]:
    """A partition log of a few orders' events, and where it is cut into batches."""
    log: list[SourcedEvent] = []
    for offset in range(draw(st.integers(0, 60))):
        order = f"O{draw(st.integers(0, 5))}"
        kind = draw(st.sampled_from(KINDS))
        # Ids repeat (redeliveries); a repeated id may carry another payload.
        number = draw(st.integers(0, 12))
        extra: dict[str, Any] = {}
        if kind == "ORDER_CREATED":
            extra["promised_delivery_at"] = at(80)
        if kind == "SHIPPED":
            extra["carrier_id"] = draw(st.sampled_from(["DHL", "UPS"]))
        # Time moves on with the log, give or take (some events beyond the
        # lateness, some before their order's newest, some at equal times).
        when = at(round(offset * 0.4 + draw(st.floats(-2.5, 1.0)), 1))
        warnings = tuple(draw(st.lists(st.sampled_from(["w1", "w2"]), max_size=2)))
        produced = draw(st.none() | st.integers(0, 10**6))
        log.append(
            SourcedEvent(
                event(kind, order, when, event_id=f"{order}-{number}", **extra),
                "t",
                0,
                offset,
                warnings,
                produced,
            )
        )
    cuts = sorted(draw(st.lists(st.integers(0, len(log)), max_size=5)))
    return log, cuts


def _order_state(order: _Order) -> tuple[Any, ...]:
    return tuple(getattr(order, name) for name in _Order.__slots__ if name != "items")


def _state(p: PartitionProcessor) -> tuple[Any, ...]:
    return (
        {k: _order_state(o) for k, o in p.orders.items()},
        p.evicted,
        p.max_event_us,
        p.newest_produced_us,
        sorted(p._timers),
        sorted(p._evictions),
    )


@needs_native
@settings(max_examples=300, deadline=None)
@given(case=logs())
def test_the_native_intake_equals_the_definition(
    case: tuple[list[SourcedEvent], list[int]],
) -> None:
    log, cuts = case
    python = PartitionProcessor("t", 0, SHORT)
    python._take_in = intake_maker(python, "python")
    fast = PartitionProcessor("t", 0, SHORT)
    fast._take_in = intake_maker(fast, "native")
    assert fast._take_in is not PartitionProcessor.take_in
    for first, last in zip([0, *cuts], [*cuts, len(log)], strict=True):
        batch = log[first:last]
        a, b = python.process(batch), fast.process(batch)
        assert b.bronze.table().equals(a.bronze.table())
        assert (b.bronze.offsets, b.bronze.duplicate, b.bronze.late, b.bronze.warnings) == (
            a.bronze.offsets,
            a.bronze.duplicate,
            a.bronze.late,
            a.bronze.warnings,
        )
        assert b.bronze.times == a.bronze.times
        assert (b.last_offset, b.watermark_us, b.produced_us) == (
            a.last_offset,
            a.watermark_us,
            a.produced_us,
        )
        assert b.lifecycle == a.lifecycle
        assert _state(fast) == _state(python)


def test_the_native_intake_was_checked_against_this_definition() -> None:
    """The fingerprint names the definition the equality test above passed on."""
    assert intake_fingerprint() == NATIVE_INTAKE_OF, (
        "the partition step's intake (PartitionProcessor.take_in and its helpers, or "
        "BronzeRows.add) changed, so events are now taken in by Python.  Make "
        "native/src/intake.rs match, run this file's equality test, then set "
        f"dataflows.native_intake.NATIVE_INTAKE_OF = {intake_fingerprint()!r}"
    )


@needs_native
def test_a_changed_intake_runs_in_python_until_its_twin_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    processor = PartitionProcessor("t", 0, SHORT)
    assert intake_maker(processor, "python") is PartitionProcessor.take_in
    assert intake_maker(processor, "native") is not PartitionProcessor.take_in
    with unchecked_twin(
        monkeypatch, native_intake, "NATIVE_INTAKE_OF", native_intake._native_intake_current
    ):
        assert intake_maker(processor, "native") is PartitionProcessor.take_in
