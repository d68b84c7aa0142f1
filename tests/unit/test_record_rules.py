"""Record-level rules: warn keeps and counts, drop dead-letters with the rule, fail stops."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from dataflows.settings import SettingsError
from dataflows.timeutil import to_us
from quality.record_rules import DEFAULT_RULES_PATH, RecordRuleFailure, RuleBook
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
    from quality.record_rules import tally_rows

    tallies = [
        ("orders/0", 0, "ok", None),
        ("orders/0", 1, "warn", "order_value_plausible,reroute_has_reason"),
        ("orders/0", 2, "drop", "promise_after_creation"),
        ("orders/0", 3, "reject", "malformed_json"),
        ("orders/1", 0, "ok", None),
    ]
    rows = {r["partition"]: r for r in tally_rows(tallies, {})}
    first = json.loads(rows[0]["counts"])
    assert first == {
        "messages": 4,
        "passed": 1,
        "warned": {"order_value_plausible": 1, "reroute_has_reason": 1},
        "dropped": {"promise_after_creation": 1},
        "rejected_by_contract": {"malformed_json": 1},
    }
    assert rows[0]["offset"] == 3 and not rows[0]["success"]
    assert rows[1]["success"] and rows[1]["outcome"] == "passed"
    # A replay cut differently: offsets 0..2 of partition 0 were committed already.
    (replayed,) = tally_rows(tallies[:4], {"orders/0": 2})
    assert json.loads(replayed["counts"])["messages"] == 1
    assert replayed["batch_id"] == "orders/0@3-3"
