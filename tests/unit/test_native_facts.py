"""The native facts equal the catalogue's: ``orderhealth_native.Facts`` against ``order_items``.

The Python catalogue (``dataflows/metrics.py``) defines every fact; the
native core evaluates the built-in ones in Rust (``native/src/facts.rs``).
On random orders -- skipped stages, cancellations, reroutes, impossible
transitions, outlier flags, no ORDER_CREATED at all, any watermark -- both
must give the same items in the same order, and a fact the native side does
not know must still be evaluated in Python and land in its place.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_facts as native_facts_module
from dataflows.contributions import Delta, OrderItems, as_tuples, order_items
from dataflows.dimensions import DIMENSION_READERS
from dataflows.lifecycle import Baseline, OrderView, add_outlier_flags, derive_view, sort_events
from dataflows.metrics import FACTS
from dataflows.native_core import delta_factory, native_module
from dataflows.native_facts import (
    NATIVE_FACTS_OF,
    facts_fingerprint,
    items_maker,
    native_facts,
    native_readers,
)
from dataflows.outcome import OutcomeStatus
from dataflows.settings import HealthSettings
from dataflows.timeutil import to_us
from schemas.events import OrderEvent
from tests.factories import at, event
from tests.strategies import lifecycle
from tests.twin_guard import unchecked_twin

SETTINGS = HealthSettings.load()
native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="orderhealth_native is not built")
STATUSES = (OutcomeStatus.ON_TIME, OutcomeStatus.LATE, OutcomeStatus.CANCELLED)


@st.composite
def views(draw: st.DrawFn) -> OrderView:
    """A random order's view at a random watermark, outlier flags included."""
    events = draw(lifecycle("O1"))
    if len(events) > 1 and draw(st.integers(0, 5)) == 0:
        events = events[1:]  # ORDER_CREATED never arrived: no attributes, no outcome facts
    events = sort_events(events)
    watermark = draw(st.one_of(st.none(), st.floats(-10, 120).map(lambda h: to_us(at(h)))))
    view = derive_view("O1", events, SETTINGS, watermark)
    median_h = draw(st.floats(0.1, 5))
    baseline = Baseline(median_h * 3.6e9, median_h * 0.3e9, draw(st.integers(0, 40)))
    return add_outlier_flags(view, SETTINGS, watermark, lambda _stage, _end: baseline)


@needs_native
@settings(max_examples=400, deadline=None)
@given(view=views())
def test_native_items_equal_the_catalogues(view: OrderView) -> None:
    kernel = native_facts(SETTINGS)
    assert kernel is not None and kernel.python_facts() == []
    native_items = kernel.items(view)
    assert native_items.as_tuples() == order_items(view, SETTINGS)
    assert len(native_items) == len(order_items(view, SETTINGS))


def test_the_native_facts_were_checked_against_this_catalogue() -> None:
    """The fingerprint names the facts' definitions the equality tests above passed on."""
    assert facts_fingerprint() == NATIVE_FACTS_OF, (
        "the facts section of dataflows/metrics.py changed, so the native core now "
        "evaluates every fact in Python.  Make native/src/facts.rs match it (or leave a "
        "new fact to Python: it needs no Rust), run this file's equality tests, then set "
        f"dataflows.native_facts.NATIVE_FACTS_OF = {facts_fingerprint()!r}"
    )


@needs_native
def test_changed_facts_run_in_python_until_their_twin_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view = derive_view("O1", sort_events(_delivered_order()), SETTINGS, None)
    assert not isinstance(items_maker(SETTINGS, "native")(view), tuple)
    with unchecked_twin(
        monkeypatch,
        native_facts_module,
        "NATIVE_FACTS_OF",
        native_facts_module._native_facts_current,
    ):
        items = items_maker(SETTINGS, "native")(view)
    assert isinstance(items, tuple) and items == order_items(view, SETTINGS)


@needs_native
@settings(max_examples=200, deadline=None)
@given(view=views(), in_python=st.sets(st.integers(0, len(FACTS) - 1), min_size=1))
def test_a_fact_the_native_side_does_not_know_is_evaluated_in_python(
    view: OrderView, in_python: set[int]
) -> None:
    """As for a plugin's fact: its items come from Python, in their place among the others."""
    assert native is not None
    names = [f"plugin_{f.name}" if i in in_python else f.name for i, f in enumerate(FACTS)]
    kernel = native.Facts(names, native_readers(SETTINGS), STATUSES)
    python_facts = kernel.python_facts()
    assert python_facts == sorted(in_python)
    extra = order_items(view, SETTINGS, python_facts)
    assert kernel.items(view, extra).as_tuples() == order_items(view, SETTINGS)


@needs_native
def test_extra_items_must_be_of_the_python_facts_in_order() -> None:
    assert native is not None
    view = derive_view("O1", sort_events(_delivered_order()), SETTINGS, None)
    kernel = native.Facts([f.name for f in FACTS], native_readers(SETTINGS), STATUSES)
    created = order_items(view, SETTINGS, [0])  # "created" is evaluated natively
    with pytest.raises(ValueError, match="facts evaluated in Python"):
        kernel.items(view, created)


@needs_native
@settings(max_examples=200, deadline=None)
@given(before=views(), after=views(), native_old=st.booleans())
def test_a_delta_takes_native_items_as_it_takes_tuples(
    before: OrderView, after: OrderView, native_old: bool
) -> None:
    """Both deltas, fed native items or tuples (or one of each), make the same changes."""
    make = items_maker(SETTINGS, "native")
    old: OrderItems = make(before) if native_old else order_items(before, SETTINGS)
    new = make(after)
    reference = Delta(SETTINGS)
    reference.apply(as_tuples(old), as_tuples(new))
    reference.drop_unchanged()
    for delta in (delta_factory(SETTINGS, "native")(), Delta(SETTINGS)):
        delta.apply(old, new)
        delta.drop_unchanged()
        assert dict(delta.vectors) == dict(reference.vectors)
        assert {k: sorted(v) for k, v in delta.kept.items()} == {
            k: sorted(v) for k, v in reference.kept.items()
        }


def test_the_python_core_and_customnative_readers_keep_facts_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view = derive_view("O1", sort_events(_delivered_order()), SETTINGS, None)
    assert items_maker(SETTINGS, "python")(view) == order_items(view, SETTINGS)

    def region_upper(v: OrderView, at_us: int) -> str | None:
        return None if v.created_us is None or at_us < v.created_us else "EU"

    monkeypatch.setitem(DIMENSION_READERS, "region", region_upper)
    items = items_maker(SETTINGS, "native" if native is not None else "python")(view)
    assert isinstance(items, tuple)
    assert items == order_items(view, SETTINGS)
    assert {values[SETTINGS.dimensions.index("region")] for _f, _at, values, _v in items} == {"EU"}


def _delivered_order() -> list[OrderEvent]:
    return [
        event("ORDER_CREATED", "O1", at(0), region="DE"),
        event("ROUTED", "O1", at(1)),
        event("SHIPPED", "O1", at(5)),
        event("DELIVERED", "O1", at(20)),
    ]


@needs_native
def test_a_delta_refuses_items_read_with_other_dimensions() -> None:
    assert native is not None
    view = derive_view("O1", sort_events(_delivered_order()), SETTINGS, None)
    kernel = native.Facts([f.name for f in FACTS], [("constant", "all")], STATUSES)
    with pytest.raises(ValueError, match="one dimension value per dimension"):
        delta_factory(SETTINGS, "native")().apply((), kernel.items(view))
