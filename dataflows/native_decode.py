"""The native twin of the decode step: Kafka messages to events, a batch at a time.

:meth:`~dataflows.decode_step.DecodeStep.decode_all` stays the definition.
``orderhealth_native.Decode`` (``native/src/decode.rs``) runs the same loop
for a message that is plainly valid -- msgspec's typed decode of the
contract, then the version, range and key checks of
:meth:`~schemas.decode.EventDecoder.decode` and the record rules of
:meth:`~quality.record_rules.RuleBook.check` -- without a Python frame per
message, check and rule.  Whatever it does not decide (a rejection, a rule
that a message breaks, a value of a type its tests do not cover) it hands,
that message alone, to the definition, so a dead letter, a warning or a
``fail`` rule's error is always Python's own.  :data:`NATIVE_DECODE_OF`
guards the twin against a changed definition.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from dataflows.native_core import core_name, fingerprint, installed, still_checked
from dataflows.native_times import native_times_current

if TYPE_CHECKING:
    from dataflows.decode_step import DecodeStep

__all__ = ["NATIVE_DECODE_OF", "DecodeAll", "decode_fingerprint", "decode_maker"]

#: ``(messages) -> events and dead-letter rows``: what
#: :meth:`~dataflows.decode_step.DecodeStep.decode_all` does.
DecodeAll = Callable[[list[Any]], list[Any]]

#: The fingerprint (:func:`decode_fingerprint`) of the decode step that
#: ``native/src/decode.rs`` was checked against; as for the facts
#: (:data:`~dataflows.native_facts.NATIVE_FACTS_OF`), a change puts the step
#: back in Python until ``tests/unit/test_native_decode.py`` checks the twin
#: and names the new value.
NATIVE_DECODE_OF = "7d71dea6a2c76f5c"


def decode_fingerprint() -> str:
    """A hash of the decode step: ``DecodeStep.decode_all``, ``EventDecoder.decode``
    and its range check, ``RuleBook.check`` and the built-in rules, and the
    event the step hands on (``SourcedEvent``)."""
    from dataflows import decode_step
    from dataflows.partition_processor import SourcedEvent
    from quality import record_rules as rr
    from schemas import decode as sd
    from schemas.signing import KeyRing

    parts: list[Callable[..., Any] | type] = [
        decode_step.DecodeStep.decode_all,
        sd.EventDecoder.decode,
        sd._out_of_range,
        sd._range_checked_fields,
        rr.RuleBook.__init__,
        rr.RuleBook.check,
        *_built_in_rules(),
        SourcedEvent,
        KeyRing.requires,
    ]
    return fingerprint("\n".join(inspect.getsource(p) for p in parts))


def _built_in_rules() -> tuple[Callable[..., Any], ...]:
    """The rules the twin runs itself (imported late: the record rules import the core)."""
    from quality import record_rules as rr

    return (
        rr._event_time_not_in_future,
        rr._promise_after_creation,
        rr._order_value_plausible,
        rr._reroute_has_reason,
    )


@cache
def _native_decode_current() -> bool:
    return still_checked(
        decode_fingerprint,
        NATIVE_DECODE_OF,
        "the decode step (DecodeStep.decode_all, EventDecoder.decode and its range check, "
        "RuleBook.check or a built-in record rule) changed since native/src/decode.rs was "
        "checked against it: messages are decoded by Python (slower) until "
        "tests/unit/test_native_decode.py passes and NATIVE_DECODE_OF is updated",
    )


def _rule_plan(cls: type, rule_checks: list[tuple[Any, Any]]) -> list[tuple[str, Any]]:
    """One event type's rules as the twin runs them, in the book's order.

    A built-in rule becomes its kind and parameter; a rule whose own type test
    rules the class out is left out (it passes every event of it); any other
    rule is called as it is, ``("python", (check, params))``.
    """
    from quality import record_rules as rr
    from schemas.events import OrderCreated, Rerouted

    plan: list[tuple[str, Any]] = []
    for rule, check in rule_checks:
        if check is rr._event_time_not_in_future:
            plan.append(("future", int(rule.params["clock_skew_tolerance_us"])))
        elif check is rr._promise_after_creation:
            if issubclass(cls, OrderCreated):
                plan.append(("promise", None))
        elif check is rr._order_value_plausible:
            if issubclass(cls, OrderCreated):
                plan.append(("value", float(rule.params["max_order_value"])))
        elif check is rr._reroute_has_reason:
            if issubclass(cls, Rerouted):
                plan.append(("reroute", None))
        else:
            plan.append(("python", (check, rule.params)))
    return plan


def decode_maker(step: DecodeStep, core: str | None = None) -> DecodeAll:
    """The step's decode of a batch, of the chosen core.

    The native one converts event times in Rust, so it also needs the time
    conversion's twin to be current (:mod:`dataflows.native_times`).
    """
    from dataflows.partition_processor import SourcedEvent
    from schemas import decode as sd
    from schemas.events import SCHEMA_VERSION

    python: DecodeAll = step.decode_all
    core = core or core_name()
    if core == "python" or not (_native_decode_current() and native_times_current()):
        return python
    decoder, rules = step.decoder, step.rules
    per_type = [
        (cls, list(names), _rule_plan(cls, rules.checks_of(cls)))
        for cls, names in sd._RANGE_CHECKED.items()
    ]
    native: DecodeAll = (
        installed()
        .Decode(
            decoder.parse,
            decoder.max_message_bytes,
            SCHEMA_VERSION,
            sd._SAFE_YEARS,
            decoder.keyring.sources,
            decoder.signature_problem,
            per_type,
            SourcedEvent,
            TIMESTAMP_NOT_AVAILABLE,
            python,
        )
        .decode_all
    )
    return native
