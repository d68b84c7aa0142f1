"""The native twin of an order's view: derived in Rust, built as the same Python objects.

:func:`~dataflows.lifecycle.derive_view` stays the definition (and derives
the rare order whose stages contradict each other); :data:`NATIVE_VIEW_OF`
guards the twin against a changed derivation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from dataflows import lifecycle, outcome
from dataflows.lifecycle import (
    SPECIAL_ROLES,
    Flag,
    FlagKind,
    OrderView,
    Transition,
    derive_view,
    sla_breach_reason,
)
from dataflows.native_core import core_name, fingerprint, installed, still_checked
from dataflows.native_times import to_us_of
from dataflows.outcome import Outcome, OutcomeStatus
from dataflows.settings import HealthSettings

__all__ = ["NATIVE_VIEW_OF", "ViewMaker", "view_fingerprint", "view_maker"]

#: An order's view from its events in ``sort_events`` order, the watermark
#: and the events' times: ``(order_id, events, watermark_us, times) -> view``.
ViewMaker = Callable[[str, list[Any], int | None, list[int]], OrderView]

#: The fingerprint (:func:`view_fingerprint`) of the derivation that
#: ``native/src/view.rs`` was checked against; as for the facts
#: (:data:`~dataflows.native_facts.NATIVE_FACTS_OF`), a change puts the
#: derivation back in Python until ``tests/unit/test_native_view.py`` checks
#: the twin and names the new value.
NATIVE_VIEW_OF = "08da7f195d043ee7"


def view_fingerprint() -> str:
    """A hash of the derivation: ``dataflows/lifecycle.py`` up to the outlier
    verdicts (the view, its parts and ``derive_view``) and ``dataflows/outcome.py``."""
    source = inspect.getsource(lifecycle)
    section = source[: source.index("#: (stage, dwell end time) -> the outlier verdict")]
    return fingerprint(section + inspect.getsource(outcome))


@cache
def _native_view_current() -> bool:
    return still_checked(
        view_fingerprint,
        NATIVE_VIEW_OF,
        "the order view's derivation in dataflows/lifecycle.py or outcome.py changed since "
        "native/src/view.rs was checked against it: views are derived in Python (slower) "
        "until tests/unit/test_native_view.py passes and NATIVE_VIEW_OF is updated",
    )


def view_maker(settings: HealthSettings, core: str | None = None) -> ViewMaker:
    """A maker of order views (:func:`~dataflows.lifecycle.derive_view`), of the chosen core.

    The native one derives in Rust and builds the same Python view; an order
    whose stages contradict each other is still derived in Python.  The
    Python definition runs with the Python core, or when the derivation
    changed since its twin was checked (:data:`NATIVE_VIEW_OF`).
    """

    def python(
        order_id: str, events: Sequence[Any], watermark_us: int | None, times: Sequence[int]
    ) -> OrderView:
        return derive_view(order_id, events, settings, watermark_us, times=times)

    core = core or core_name()
    if core == "python" or not _native_view_current():
        return python
    stages = lifecycle._stages(settings)
    index = {name: i for i, name in enumerate(stages.order)}
    roles = {
        cls: (name, index.get(name), moves, SPECIAL_ROLES.get(cls, ""))
        for cls, (name, _is_stage, moves) in stages.roles.items()
    }
    slas = [stages.sla_us.get(stage) for stage in stages.order]
    reasons = [
        None if sla is None else sla_breach_reason(stage, sla)
        for stage, sla in zip(stages.order, slas, strict=True)
    ]
    kernel = installed().Views(
        roles,
        list(stages.order),
        slas,
        reasons,
        index.get(lifecycle._DELIVERED),
        list(lifecycle._BASE_ATTRIBUTES),
        (OrderView, Transition, Flag, Outcome),
        (OutcomeStatus.OPEN, OutcomeStatus.ON_TIME, OutcomeStatus.LATE, OutcomeStatus.CANCELLED),
        (FlagKind.EXCEPTION, FlagKind.REROUTE, FlagKind.STAGE_SLA_BREACH),
        to_us_of(core),
        python,
    )
    maker: ViewMaker = kernel.derive
    return maker
