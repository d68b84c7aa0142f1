"""The native twin of a partition batch's intake: each event into bronze and its order.

:meth:`~dataflows.partition_processor.PartitionProcessor.take_in` stays the
definition; ``orderhealth_native.Intake`` (``native/src/intake.rs``) does the
same per event with the container operations alone, and calls the
definition's helpers for the rare cases (a redelivered id, an event older
than its order's newest, a new order).  :data:`NATIVE_INTAKE_OF` guards the
twin against a changed definition.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from dataflows import bronze_rows
from dataflows.native_core import core_name, fingerprint, installed, still_checked
from dataflows.native_times import native_times_current

if TYPE_CHECKING:
    from dataflows.partition_processor import PartitionProcessor

__all__ = ["NATIVE_INTAKE_OF", "Intake", "intake_fingerprint", "intake_maker"]

#: ``(processor, batch, bronze rows, touched order ids) -> last offset``: what
#: :meth:`~dataflows.partition_processor.PartitionProcessor.take_in` does.
Intake = Callable[[Any, list[Any], Any, set[str]], int]

#: The fingerprint (:func:`intake_fingerprint`) of the intake that
#: ``native/src/intake.rs`` was checked against; as for the facts
#: (:data:`~dataflows.native_facts.NATIVE_FACTS_OF`), a change puts the
#: intake back in Python until ``tests/unit/test_native_intake.py`` checks
#: the twin and names the new value.
NATIVE_INTAKE_OF = "dde56de3675385c8"


def intake_fingerprint() -> str:
    """A hash of the intake: ``PartitionProcessor.take_in`` and ``_retired``, the
    helpers it calls (``_insert``, ``_conflicts``), the order's slots and
    ``BronzeRows.add``."""
    from dataflows import partition_processor as pp

    parts: list[Callable[..., Any] | type] = [
        pp.PartitionProcessor.take_in,
        pp.PartitionProcessor._retired,
        pp._insert,
        pp._conflicts,
        pp._Order,
        bronze_rows.BronzeRows.add,
    ]
    return fingerprint("\n".join(inspect.getsource(p) for p in parts))


@cache
def _native_intake_current() -> bool:
    return still_checked(
        intake_fingerprint,
        NATIVE_INTAKE_OF,
        "the partition step's intake (PartitionProcessor.take_in and its helpers in "
        "dataflows/partition_processor.py, or BronzeRows.add) changed since "
        "native/src/intake.rs was checked against it: events are taken in by Python "
        "(slower) until tests/unit/test_native_intake.py passes and NATIVE_INTAKE_OF "
        "is updated",
    )


def intake_maker(processor: PartitionProcessor, core: str | None = None) -> Intake:
    """The processor's intake, of the chosen core.

    The native one converts event times in Rust, so it also needs the time
    conversion's twin to be current (:mod:`dataflows.native_times`).
    """
    from dataflows import partition_processor as pp

    python: Intake = pp.PartitionProcessor.take_in
    core = core or core_name()
    if core == "python" or not (_native_intake_current() and native_times_current()):
        return python
    settings = processor.settings
    native: Intake = (
        installed()
        .Intake(
            pp._Order,
            pp._insert,
            pp._conflicts,
            list(pp._TERMINAL),
            pp.ORDER_EVICTED,
            pp.EVENT_ID_CONFLICT,
            settings.allowed_lateness_us,
            settings.finished_retention_us,
        )
        .take_in
    )
    return native
