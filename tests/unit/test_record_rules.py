"""Record-level rules: warn keeps and counts, drop dead-letters with the rule, fail stops."""

from __future__ import annotations

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
    ],
)
def test_invalid_rule_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        RuleBook.load(path)


def test_rules_file_is_the_packaged_default() -> None:
    assert DEFAULT_RULES_PATH.name == "record_rules.toml" and DEFAULT_RULES_PATH.exists()
