"""Record-level quality rules with DLT-like actions (warn, drop, fail).

Each rule is a pure check of one decoded event; ``quality/record_rules.toml``
chooses its action and parameters.  Checks compare times with the Kafka
message timestamp rather than the wall clock, so that replaying a partition
after a crash decides exactly as the first run did.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from dataflows.native_times import to_us_of
from dataflows.settings import SettingsError, parse_duration_us
from schemas.events import ALL_EVENT_TYPES, OrderCreated, OrderEvent, Rerouted

__all__ = [
    "APPLIES_TO",
    "CHECKS",
    "DEFAULT_RULES_PATH",
    "DROP",
    "REJECT",
    "VALID",
    "Action",
    "Fates",
    "RecordRule",
    "RecordRuleFailure",
    "RuleBook",
    "RuleVerdict",
    "Tallies",
    "count_fates",
    "tally_rows",
]

DEFAULT_RULES_PATH = Path(__file__).with_name("record_rules.toml")


class Action(StrEnum):
    WARN = "warn"
    DROP = "drop"
    FAIL = "fail"


class RecordRuleFailure(RuntimeError):
    """A ``fail`` rule was violated: the flow stops, as configured."""


#: (event, Kafka timestamp in us or None, parameters) -> violation message or None
Check = Callable[[OrderEvent, int | None, dict[str, Any]], str | None]


@cache
def _to_us() -> Callable[[datetime], int]:
    """``dataflows.timeutil.to_us`` of the process's core (its native twin by default)."""
    return to_us_of()


def _event_time_not_in_future(
    event: OrderEvent, received_us: int | None, params: dict[str, Any]
) -> str | None:
    if received_us is None:
        return None
    ahead = _to_us()(event.event_time) - received_us
    if ahead > params["clock_skew_tolerance_us"]:
        return f"event_time is {ahead / 60_000_000:.1f} min after the message was produced"
    return None


def _promise_after_creation(
    event: OrderEvent, _received: int | None, _params: dict[str, Any]
) -> str | None:
    if isinstance(event, OrderCreated) and event.promised_delivery_at <= event.event_time:
        return "promised_delivery_at is not after the order's creation time"
    return None


def _order_value_plausible(
    event: OrderEvent, _received: int | None, params: dict[str, Any]
) -> str | None:
    limit = params["max_order_value"]
    if isinstance(event, OrderCreated) and (event.order_value or 0.0) > limit:
        return f"order_value {event.order_value} exceeds {limit:g}"
    return None


def _reroute_has_reason(
    event: OrderEvent, _received: int | None, _params: dict[str, Any]
) -> str | None:
    if isinstance(event, Rerouted) and not event.reason.strip():
        return "reroute without a reason"
    return None


#: The rule catalogue: name -> check.  Add a rule here and in the TOML file.
CHECKS: dict[str, Check] = {
    "event_time_not_in_future": _event_time_not_in_future,
    "promise_after_creation": _promise_after_creation,
    "order_value_plausible": _order_value_plausible,
    "reroute_has_reason": _reroute_has_reason,
}
#: Rules that only concern some event types: rule -> those event classes.  A
#: rule not named here is checked on every event.  Only a saving (each check
#: still tests the type itself): most rules do not apply to most events, and
#: calling every check on every event was 3% of the flow.
APPLIES_TO: dict[str, tuple[type[OrderEvent], ...]] = {
    "promise_after_creation": (OrderCreated,),
    "order_value_plausible": (OrderCreated,),
    "reroute_has_reason": (Rerouted,),
}


def _skew_params(params: dict[str, Any]) -> dict[str, Any]:
    text = str(params["clock_skew_tolerance"])
    return {"clock_skew_tolerance_us": parse_duration_us(text, what="clock_skew_tolerance")}


def _value_params(params: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"max_order_value": float(params["max_order_value"])}
    except (TypeError, ValueError) as err:
        raise SettingsError(f"max_order_value: {params['max_order_value']!r} is no number") from err


#: Rule -> its parameters as the check reads them, converted and checked once
#: at load (not per event: parsing a duration per event was 2% of the flow).
PARAMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "event_time_not_in_future": _skew_params,
    "order_value_plausible": _value_params,
}


class RecordRule(msgspec.Struct, frozen=True):
    name: str
    action: Action
    params: dict[str, Any]


class RuleVerdict(msgspec.Struct, frozen=True):
    """What the rules say about one event."""

    dropped_by: str | None = None
    message: str | None = None
    warnings: tuple[str, ...] = ()


#: The verdict on almost every event, shared (verdicts are immutable).
_PASSED = RuleVerdict()


class RuleBook:
    """The configured rules, evaluated in file order."""

    def __init__(self, rules: list[RecordRule], source: Path | None = None) -> None:
        self.rules = rules
        self.source = source or DEFAULT_RULES_PATH
        #: The checks looked up once, not per event and rule; per event class,
        #: only those that apply to it, in file order.
        self._checks: dict[type, list[tuple[RecordRule, Check]]] = {
            cls: [
                (rule, CHECKS[rule.name])
                for rule in rules
                if issubclass(cls, APPLIES_TO.get(rule.name, OrderEvent))
            ]
            for cls in ALL_EVENT_TYPES.values()
        }

    @classmethod
    def load(cls, path: Path | None = None) -> RuleBook:
        path = path or DEFAULT_RULES_PATH
        try:
            raw = msgspec.toml.decode(path.read_bytes(), type=dict[str, dict[str, Any]])
        except (OSError, msgspec.DecodeError) as err:
            raise SettingsError(f"record rules {path}: {err}") from err
        rules = []
        for name, table in raw.items():
            if name not in CHECKS:
                raise SettingsError(f"record rules {path}: unknown rule {name!r}")
            params = dict(table)
            try:
                action = Action(params.pop("action"))
            except (KeyError, ValueError) as err:
                raise SettingsError(
                    f"record rules {path}: rule {name!r} needs action = warn | drop | fail"
                ) from err
            try:
                params = PARAMS.get(name, dict)(params)
            except KeyError as err:
                raise SettingsError(f"record rules {path}: rule {name!r} needs {err}") from err
            except SettingsError as err:
                raise SettingsError(f"record rules {path}: rule {name!r}: {err}") from err
            rules.append(RecordRule(name, action, params))
        return cls(rules, path)

    def checks_of(self, cls: type) -> list[tuple[RecordRule, Check]]:
        """The rules checked on events of ``cls``, in file order, with their checks."""
        return self._checks[cls]

    def check(self, event: OrderEvent, received_us: int | None) -> RuleVerdict:
        """Apply every rule; raises :class:`RecordRuleFailure` for a ``fail`` rule."""
        warnings: list[str] = []
        for rule, check in self._checks[type(event)]:
            message = check(event, received_us, rule.params)
            if message is None:
                continue
            if rule.action is Action.FAIL:
                raise RecordRuleFailure(
                    f"record rule {rule.name!r} failed for event {event.event_id!r} "
                    f"of order {event.order_id!r}: {message}. The flow stopped before "
                    f"committing this epoch (action 'fail' in {self.source})"
                )
            if rule.action is Action.DROP:
                return RuleVerdict(rule.name, message, tuple(warnings))
            warnings.append(rule.name)
        return RuleVerdict(warnings=tuple(warnings)) if warnings else _PASSED


# -- per-rule counts for quality/validation_runs ------------------------------------

#: Tallies.kind of a partition batch's valid events: each passed (name None)
#: or warned (the rules it broke, comma-separated).
VALID = "valid"
#: Tallies.kind of messages a rule dropped (name: the rule) or the contract
#: rejected (name: the decoder's reason).
DROP, REJECT = "drop", "reject"


class Tallies(msgspec.Struct, frozen=True, gc=False):
    """The record-rule fates of some messages of one Kafka partition, in offset order.

    One per partition batch of valid events (and one per dead letter), not a
    tuple per message: counting a tuple per message, in the flow and again
    in the commit thread, was ~2.5% of the event thread.
    """

    stream: str
    #: Ascending.
    offsets: list[int]
    kind: str
    #: Per message, in offset order: see :data:`VALID`, :data:`DROP`, :data:`REJECT`.
    names: list[str | None]

    def after(self, committed: int) -> Tallies | None:
        """Only the messages past ``committed`` (None if there are none)."""
        if self.offsets[0] > committed:
            return self
        cut = bisect_right(self.offsets, committed)
        if cut == len(self.offsets):
            return None
        return Tallies(self.stream, self.offsets[cut:], self.kind, self.names[cut:])


class Fates(msgspec.Struct):
    """Messages by fate: passed, warned (by rule), dropped (by rule) and rejected (by reason)."""

    messages: int = 0
    passed: int = 0
    warned_messages: int = 0
    warned: dict[str, int] = {}
    dropped: dict[str, int] = {}
    rejected: dict[str, int] = {}

    def add(self, tallies: Tallies) -> None:
        names = tallies.names
        self.messages += len(names)
        if tallies.kind == VALID:
            passed = names.count(None)
            self.passed += passed
            self.warned_messages += len(names) - passed
            for joined in filter(None, names):
                for name in joined.split(","):
                    self.warned[name] = self.warned.get(name, 0) + 1
            return
        counts = self.dropped if tallies.kind == DROP else self.rejected
        for name in filter(None, names):
            counts[name] = counts.get(name, 0) + 1


def count_fates(tallies: Iterable[Tallies]) -> Fates:
    fates = Fates()
    for t in tallies:
        fates.add(t)
    return fates


def tally_rows(tallies: list[Tallies], committed: dict[str, int]) -> list[dict[str, Any]]:
    """One ``quality/validation_runs`` row per Kafka partition, for fresh messages.

    Messages at or below the partition's committed offset were counted by an
    earlier incarnation (a replay after a crash) and are skipped one by one,
    so the counts are exactly-once however the replay cuts its batches.
    """
    by_stream: dict[str, list[Tallies]] = {}
    for tally in tallies:
        fresh = tally.after(committed.get(tally.stream, -1))
        if fresh is not None:
            by_stream.setdefault(tally.stream, []).append(fresh)
    rows = []
    for stream, items in sorted(by_stream.items()):
        topic, _, partition = stream.rpartition("/")
        first, last = min(t.offsets[0] for t in items), max(t.offsets[-1] for t in items)
        fates = count_fates(items)
        failing = [
            {"rule": name, "action": action, "count": count}
            for action, counts in (("warn", fates.warned), ("drop", fates.dropped))
            for name, count in sorted(counts.items())
        ]
        batch_id = f"{stream}@{first}-{last}"
        rows.append(
            {
                "run_id": f"vr-record_rules@{batch_id}",
                "batch_id": batch_id,
                "suite": "record_rules",
                "source_table": "kafka",
                "source_version": None,
                "topic": topic,
                "partition": int(partition),
                "offset": last,
                "success": not failing,
                "outcome": "violations" if failing else "passed",
                "row_count": fates.messages,
                "failing_expectations": msgspec.json.encode(failing).decode(),
                "counts": msgspec.json.encode(
                    {
                        "messages": fates.messages,
                        "passed": fates.passed,
                        "warned": fates.warned,
                        "dropped": fates.dropped,
                        "rejected_by_contract": fates.rejected,
                    }
                ).decode(),
            }
        )
    return rows
