"""Record-level rules: warn keeps and counts, drop dead-letters with the rule, fail stops."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from dataflows.settings import SettingsError
from dataflows.timeutil import to_us
from orderhealth.generator import SCENARIOS, GeneratorConfig, generate_messages
from quality.record_rules import (
    CHECKS,
    DEFAULT_RULES_PATH,
    Action,
    RecordRuleFailure,
    RuleBook,
    RuleVerdict,
)
from schemas.decode import EventDecoder
from schemas.events import Event, OrderEvent
from tests.factories import at, event

RULES = RuleBook.load()


def test_default_rules_load_with_their_actions() -> None:
    actions = {rule.name: rule.action.value for rule in RULES.rules}
    assert actions == {
        "event_time_not_in_future": "drop",
        "promise_after_creation": "drop",
        "order_value_plausible": "warn",
        "reroute_has_reason": "warn",
    }


def test_clean_event_passes() -> None:
    verdict = RULES.check(event("ORDER_CREATED", when=at(0)), to_us(at(1)))
    assert verdict.dropped_by is None and verdict.warnings == ()


def test_event_far_ahead_of_its_kafka_timestamp_is_dropped() -> None:
    produced = to_us(at(0))
    ok = RULES.check(event("PICKED", when=at(0, 9)), produced)
    assert ok.dropped_by is None  # inside the 10 minute clock-skew tolerance
    late = RULES.check(event("PICKED", when=at(0, 30)), produced)
    assert late.dropped_by == "event_time_not_in_future"
    assert "30.0 min" in (late.message or "")


def test_promise_before_creation_is_dropped() -> None:
    created = event("ORDER_CREATED", when=at(5), promised_delivery_at=at(4))
    assert RULES.check(created, None).dropped_by == "promise_after_creation"


def test_warn_rules_keep_the_event_and_name_the_rule() -> None:
    big = event("ORDER_CREATED", when=at(0), order_value=2_000_000.0)
    verdict = RULES.check(big, None)
    assert verdict.dropped_by is None
    assert verdict.warnings == ("order_value_plausible",)


def test_fail_rules_stop_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[promise_after_creation]\naction = "fail"\n')
    book = RuleBook.load(path)
    bad = event("ORDER_CREATED", "O9", when=at(5), promised_delivery_at=at(5) - timedelta(hours=1))
    with pytest.raises(RecordRuleFailure, match=r"promise_after_creation.*O9"):
        book.check(bad, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[no_such_rule]\naction = "warn"\n', "unknown rule 'no_such_rule'"),
        ('[promise_after_creation]\naction = "explode"\n', "needs action"),
        ("not toml [", "record rules"),
        (
            '[event_time_not_in_future]\naction = "drop"\nclock_skew_tolerance = "ten minutes"\n',
            "'event_time_not_in_future': clock_skew_tolerance: 'ten minutes' is not a duration",
        ),
        (
            '[event_time_not_in_future]\naction = "drop"\n',
            "rule 'event_time_not_in_future' needs 'clock_skew_tolerance'",
        ),
        (
            '[order_value_plausible]\naction = "warn"\nmax_order_value = "lots"\n',
            "rule 'order_value_plausible': max_order_value: 'lots' is no number",
        ),
    ],
)
def test_invalid_rule_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        RuleBook.load(path)


def test_rules_file_is_the_packaged_default() -> None:
    assert DEFAULT_RULES_PATH.name == "record_rules.toml" and DEFAULT_RULES_PATH.exists()


def test_tallies_count_each_message_once_across_a_replay() -> None:
    from quality.record_rules import DROP, REJECT, VALID, Tallies, tally_rows

    warned = "order_value_plausible,reroute_has_reason"
    tallies = [
        Tallies("orders/0", [0, 1, 4], VALID, [None, warned, None]),
        Tallies("orders/0", [2], DROP, ["promise_after_creation"]),
        Tallies("orders/0", [3], REJECT, ["malformed_json"]),
        Tallies("orders/1", [0], VALID, [None]),
    ]
    rows = {r["partition"]: r for r in tally_rows(tallies, {})}
    first = json.loads(rows[0]["counts"])
    assert first == {
        "messages": 5,
        "passed": 2,
        "warned": {"order_value_plausible": 1, "reroute_has_reason": 1},
        "dropped": {"promise_after_creation": 1},
        "rejected_by_contract": {"malformed_json": 1},
    }
    assert rows[0]["offset"] == 4 and rows[0]["batch_id"] == "orders/0@0-4"
    assert not rows[0]["success"] and rows[0]["row_count"] == 5
    assert rows[1]["success"] and rows[1]["outcome"] == "passed"
    # A replay cut differently: offsets 0..2 of partition 0 were committed
    # already, so of the batch of valid events only offset 4 counts.
    (replayed,) = tally_rows(tallies[:3], {"orders/0": 2})
    assert json.loads(replayed["counts"]) == {
        "messages": 2,
        "passed": 1,
        "warned": {},
        "dropped": {},
        "rejected_by_contract": {"malformed_json": 1},
    }
    assert replayed["batch_id"] == "orders/0@3-4"
    assert tally_rows(tallies[:3], {"orders/0": 4}) == []


def _every_rule_on_every_event(event: OrderEvent, received_us: int | None) -> RuleVerdict:
    """The reference: each configured rule's check on the event, in file order."""
    warnings: list[str] = []
    for rule in RULES.rules:
        message = CHECKS[rule.name](event, received_us, rule.params)
        if message is not None and rule.action is Action.DROP:
            return RuleVerdict(rule.name, message, tuple(warnings))
        if message is not None:
            warnings.append(rule.name)
    return RuleVerdict(warnings=tuple(warnings))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_checking_only_the_rules_of_an_event_type_changes_no_verdict(scenario: str) -> None:
    """APPLIES_TO skips checks by event type: the verdicts are those of every check."""
    decoder = EventDecoder()
    messages = generate_messages(GeneratorConfig(events=3000, scenario=scenario))
    decoded = [e for key, value in messages if isinstance(e := decoder.decode(value, key), Event)]
    # Produced as they happened; and then events that break each rule.
    cases: list[tuple[OrderEvent, int]] = [(e, to_us(e.event_time)) for e in decoded]
    cases += [
        (e, to_us(at(2)))
        for e in (
            event("ORDER_CREATED", when=at(2), promised_delivery_at=at(1)),
            event("ORDER_CREATED", when=at(0), order_value=5e6),
            event("REROUTED", when=at(0), reason="  "),
            event("PICKED", when=at(3)),
        )
    ]
    verdicts = [RULES.check(e, received) for e, received in cases]
    assert verdicts == [_every_rule_on_every_event(e, received) for e, received in cases]
    assert {v.dropped_by for v in verdicts} >= {
        "promise_after_creation",
        "event_time_not_in_future",
    }
    assert {w for v in verdicts for w in v.warnings} == {
        "order_value_plausible",
        "reroute_has_reason",
    }
