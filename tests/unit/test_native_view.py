"""The native order view equals ``derive_view``, its definition.

``orderhealth_native.Views`` (``native/src/view.rs``) derives an order's view
in Rust and builds the same Python objects.  On random orders -- skipped
stages, cancellations, reroutes, exceptions, promise updates, contexts,
duplicated times, impossible transitions (handed back to Python), the
creation missing -- at random watermarks and under other settings, both must
give equal views, down to the order of their dicts.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_view
from dataflows.lifecycle import derive_view, sort_events
from dataflows.native_core import native_module
from dataflows.native_view import NATIVE_VIEW_OF, view_fingerprint, view_maker
from dataflows.settings import HealthSettings
from dataflows.timeutil import to_us
from schemas.events import EventType, OrderEvent
from tests.factories import at, event
from tests.strategies import lifecycle
from tests.twin_guard import unchecked_twin

BASE = HealthSettings.load()
#: Other stage orders and SLAs: DELIVERED not a stage, stages without an SLA.
OTHER = msgspec.structs.replace(
    BASE,
    stage_order=tuple(s for s in BASE.stage_order if s is not EventType.DELIVERED),
    stage_sla_us={k: v for i, (k, v) in enumerate(BASE.stage_sla_us.items()) if i % 2},
)
native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="orderhealth_native is not built")

contexts = st.none() | st.dictionaries(
    st.sampled_from(["queue_depth", "latency_ms", "ä"]), st.integers(0, 9) | st.floats(0, 1)
)


@st.composite
def orders(draw: st.DrawFn) -> tuple[list[OrderEvent], int | None]:
    """A random order's events (with contexts) in sort order, and a watermark."""
    events = draw(lifecycle("O1"))
    if len(events) > 1 and draw(st.integers(0, 5)) == 0:
        events = events[1:]  # ORDER_CREATED never arrived
    if draw(st.integers(0, 4)) == 0:  # two events at one time
        twin = events[-1]
        events.append(event("EXCEPTION", "O1", twin.event_time, event_id="O1-same-time"))
    events = [
        msgspec.structs.replace(e, context=draw(contexts)) if draw(st.booleans()) else e
        for e in events
    ]
    watermark = draw(st.one_of(st.none(), st.floats(-10, 120).map(lambda h: to_us(at(h)))))
    return sort_events(events), watermark


@needs_native
@pytest.mark.parametrize("config", [BASE, OTHER], ids=["default", "other-stages"])
@settings(max_examples=400, deadline=None)
@given(case=orders())
def test_the_native_view_equals_the_definition(
    config: HealthSettings, case: tuple[list[OrderEvent], int | None]
) -> None:
    events, watermark = case
    times = [to_us(e.event_time) for e in events]
    expected = derive_view("O1", events, config, watermark, times=times)
    got = view_maker(config, "native")("O1", events, watermark, times)
    assert got == expected
    # The same dict and tuple order too (the rows and JSON read them in order).
    assert msgspec.json.encode(got) == msgspec.json.encode(expected)


def _edge_cases() -> list[tuple[list[OrderEvent], int | None]]:
    """The outcome's and the SLA's boundaries, hour by hour around them."""
    created = event("ORDER_CREATED", "O1", at(0), promised_delivery_at=at(10))
    cases = []
    for delivered_h in (None, 9.0, 10.0, 11.0):
        for cancelled_h in (None, 1.0, 9.0, 10.0, 11.0):
            for watermark_h in (None, 2.0, 10.0, 10.5, 30.0):
                events = [created, event("PICKED", "O1", at(0.5))]
                if delivered_h is not None:
                    events.append(event("DELIVERED", "O1", at(delivered_h)))
                if cancelled_h is not None:
                    events.append(event("CANCELLED", "O1", at(cancelled_h)))
                watermark = None if watermark_h is None else to_us(at(watermark_h))
                cases.append((sort_events(events), watermark))
    return cases


@needs_native
@pytest.mark.parametrize("config", [BASE, OTHER], ids=["default", "other-stages"])
@pytest.mark.parametrize("case", _edge_cases())
def test_the_native_view_equals_the_definition_at_its_boundaries(
    config: HealthSettings, case: tuple[list[OrderEvent], int | None]
) -> None:
    events, watermark = case
    times = [to_us(e.event_time) for e in events]
    expected = derive_view("O1", events, config, watermark, times=times)
    assert view_maker(config, "native")("O1", events, watermark, times) == expected


@needs_native
def test_the_native_views_refuse_what_is_not_an_order() -> None:
    make = view_maker(BASE, "native")
    created = event("ORDER_CREATED", "O1", at(0))
    with pytest.raises(ValueError, match="one time per event"):
        make("O1", [created], None, [])
    with pytest.raises(ValueError, match="at least one event"):
        make("O1", [], None, [])
    with pytest.raises(ValueError, match="not an event of the contract"):
        make("O1", [object()], None, [0])


def test_the_native_view_was_checked_against_this_derivation() -> None:
    """The fingerprint names the derivation the equality tests above passed on."""
    assert view_fingerprint() == NATIVE_VIEW_OF, (
        "the order view's derivation (dataflows/lifecycle.py up to the outlier verdicts, "
        "or dataflows/outcome.py) changed, so the native core now derives views in "
        "Python.  Make native/src/view.rs match it, run this file's equality tests, then "
        f"set dataflows.native_view.NATIVE_VIEW_OF = {view_fingerprint()!r}"
    )


@needs_native
def test_a_changed_derivation_runs_in_python_until_its_twin_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = [event("ORDER_CREATED", "O1", at(0)), event("PICKED", "O1", at(1))]
    times = [to_us(e.event_time) for e in events]
    assert not hasattr(view_maker(BASE, "native"), "__code__")  # the Rust method
    with unchecked_twin(
        monkeypatch, native_view, "NATIVE_VIEW_OF", native_view._native_view_current
    ):
        make = view_maker(BASE, "native")
    assert hasattr(make, "__code__")  # a Python function
    assert make("O1", events, None, times) == derive_view("O1", events, BASE, None, times=times)
