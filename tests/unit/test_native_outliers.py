"""The native outlier verdicts equal ``add_outlier_flags``, their definition.

``orderhealth_native.OutlierFlags`` (``native/src/outliers.rs``) walks an
order's transitions in Rust and hands a dwell beyond its baseline to
``judge_dwell``.  On random orders at random watermarks, against baselines
that flag, do not, lack samples, have no spread or are not a number, and with
verdicts already remembered from earlier touches, both must give equal views
(down to the flags' order) and leave equal verdicts behind, in the same order.
"""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import native_outliers
from dataflows.lifecycle import (
    Baseline,
    Flag,
    FlagKind,
    OrderView,
    OutlierVerdicts,
    Transition,
    add_outlier_flags,
    derive_view,
    sort_events,
)
from dataflows.native_core import native_module
from dataflows.native_dwells import new_history
from dataflows.native_outliers import NATIVE_OUTLIERS_OF, outlier_flagger, outliers_fingerprint
from dataflows.settings import HealthSettings
from dataflows.timeutil import US_PER_HOUR, to_us
from schemas.events import OrderEvent
from tests.factories import at, event
from tests.strategies import lifecycle
from tests.twin_guard import unchecked_twin

BASE = HealthSettings.load()
#: A lower bar: more dwells are flagged.
EAGER = msgspec.structs.replace(
    BASE, outliers=msgspec.structs.replace(BASE.outliers, z_threshold=0.5, min_samples=1)
)
native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="orderhealth_native is not built")

baselines = st.none() | st.builds(
    Baseline,
    median=st.sampled_from([0.0, 0.5 * US_PER_HOUR, 2.0 * US_PER_HOUR, 1e12]),
    mad=st.sampled_from([0.0, -1.0, 1.0, 0.1 * US_PER_HOUR, US_PER_HOUR, math.nan]),
    samples=st.sampled_from([0, 1, 4, 5, 200]),
)


@st.composite
def cases(
    draw: st.DrawFn,
) -> tuple[OrderView, int | None, dict[tuple[str, int], Baseline | None], OutlierVerdicts]:
    """A derived view, a watermark, a baseline per (stage, end), remembered verdicts."""
    events = sort_events(draw(lifecycle("O1")))
    watermark = draw(st.one_of(st.none(), st.floats(-10, 120).map(lambda h: to_us(at(h)))))
    view = derive_view("O1", events, BASE, watermark)
    keys = [(t.stage, t.end_us) for t in view.transitions]
    table = {key: draw(baselines) for key in keys}
    remembered: OutlierVerdicts = {}
    for key in keys:
        if draw(st.integers(0, 3)) == 0:
            remembered[key] = draw(
                st.none() | st.just(Flag(FlagKind.OUTLIER_DWELL, key[1], f"{key[0]} remembered"))
            )
    return view, watermark, table, remembered


@needs_native
@pytest.mark.parametrize("config", [BASE, EAGER], ids=["default", "eager"])
@settings(max_examples=500, deadline=None)
@given(case=cases())
def test_the_native_verdicts_equal_the_definition(
    config: HealthSettings,
    case: tuple[OrderView, int | None, dict[tuple[str, int], Baseline | None], OutlierVerdicts],
) -> None:
    view, watermark, table, remembered = case
    asked: list[tuple[str, int]] = []

    def baseline(stage: str, end_us: int) -> Baseline | None:
        asked.append((stage, end_us))
        return table[(stage, end_us)]

    expected_verdicts, got_verdicts = dict(remembered), dict(remembered)
    expected = add_outlier_flags(view, config, watermark, baseline, expected_verdicts)
    python_asked, asked[:] = list(asked), []
    flagger = outlier_flagger(config, "native")
    assert not hasattr(flagger, "__code__")  # the Rust method
    got = flagger(view, watermark, baseline, got_verdicts)
    assert got == expected
    assert msgspec.json.encode(got) == msgspec.json.encode(expected)
    assert (got is view) == (expected is view)  # an unchanged view is handed back as is
    assert list(got_verdicts.items()) == list(expected_verdicts.items())
    assert asked == python_asked  # the same baselines asked for, in the same order
    # New keys hold the transition's own objects, as the reference's do
    # (kept in hot state for the order's life: no int of their own).
    ends = {(t.stage, t.end_us): t for t in view.transitions}
    for key in got_verdicts.keys() - remembered.keys():
        assert key[0] is ends[key].stage and key[1] is ends[key].end_us


@needs_native
def test_a_flag_is_the_definitions_own() -> None:
    """The text of a flag the Rust walk finds comes from ``judge_dwell``."""
    view = derive_view("O1", sort_events(long_dwells()), BASE, None)
    watermark = to_us(at(500))
    wide = Baseline(0.5 * US_PER_HOUR, 0.1 * US_PER_HOUR, 200)
    verdicts: OutlierVerdicts = {}
    got = outlier_flagger(BASE, "native")(view, watermark, lambda _s, _e: wide, verdicts)
    outliers = [f for f in got.flags if f.kind == FlagKind.OUTLIER_DWELL]
    assert outliers and all("robust z above the trailing median" in f.reason for f in outliers)
    assert got == add_outlier_flags(view, BASE, watermark, lambda _s, _e: wide, {})


def long_dwells() -> list[OrderEvent]:
    """An order with long dwells: created, picked 5 h later, shipped 5 h after that."""
    return [
        event("ORDER_CREATED", "O1", at(0), promised_delivery_at=at(48)),
        event("PICKED", "O1", at(5)),
        event("SHIPPED", "O1", at(10), carrier_id="DHL"),
    ]


def test_the_native_verdicts_were_checked_against_this_definition() -> None:
    """The fingerprint names the definition the equality tests above passed on."""
    assert outliers_fingerprint() == NATIVE_OUTLIERS_OF, (
        "the outlier verdicts (dataflows/lifecycle.py from the outlier verdicts on, or "
        "OutlierSettings) changed, so the native core now walks them in Python.  Make "
        "native/src/outliers.rs match, run this file's equality tests, then set "
        f"dataflows.native_outliers.NATIVE_OUTLIERS_OF = {outliers_fingerprint()!r}"
    )


@needs_native
def test_changed_verdicts_run_in_python_until_their_twin_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not hasattr(outlier_flagger(BASE, "native"), "__code__")  # the Rust method
    with unchecked_twin(
        monkeypatch,
        native_outliers,
        "NATIVE_OUTLIERS_OF",
        native_outliers._native_outliers_current,
    ):
        flagger = outlier_flagger(BASE, "native")
    assert hasattr(flagger, "__code__")  # a Python function
    view = derive_view("O1", sort_events(long_dwells()), BASE, None)

    def nothing(_stage: str, _end: int) -> None:
        return None

    assert flagger(view, None, nothing, {}) == add_outlier_flags(view, BASE, None, nothing, {})


@needs_native
@settings(max_examples=200, deadline=None)
@given(
    case=cases(),
    others=st.lists(st.tuples(st.floats(0, 30), st.floats(0.01, 30)), max_size=12),
    judged=st.booleans(),
)
def test_baselines_from_the_native_history_are_read_in_rust_alike(
    case: tuple[OrderView, int | None, dict[tuple[str, int], Baseline | None], OutlierVerdicts],
    others: list[tuple[float, float]],
    judged: bool,
) -> None:
    """The native history's own ``baseline`` is called in Rust: the same verdicts.

    Other orders' dwells of the view's stages, ending up to 30 hours before
    its transitions (the history's reach and beyond), make the baselines.
    Half the cases put the watermark past every stage, so all are judged.
    """
    view, watermark, _table, remembered = case
    if judged and view.transitions:
        watermark = max(t.end_us for t in view.transitions) + 1
    history = new_history(EAGER.outliers, core="native")
    for t in view.transitions:
        for i, (hours_before, dwell_h) in enumerate(others):
            end = t.end_us - int(hours_before * US_PER_HOUR)
            dwell = Transition(t.stage, end - int(dwell_h * US_PER_HOUR), end, None)
            history.replace(f"{t.stage}-{i}", (), (dwell,))
    expected_verdicts, got_verdicts = dict(remembered), dict(remembered)
    expected = add_outlier_flags(view, EAGER, watermark, history.baseline, expected_verdicts)
    got = outlier_flagger(EAGER, "native")(view, watermark, history.baseline, got_verdicts)
    assert got == expected
    assert msgspec.json.encode(got) == msgspec.json.encode(expected)
    assert list(got_verdicts.items()) == list(expected_verdicts.items())
