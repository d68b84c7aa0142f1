"""JSON text columns: sorted keys, equal values give equal text, never an error."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from dataflows.json_text import json_text


def test_keys_are_sorted_at_every_level_and_the_text_parses_back() -> None:
    value = {"b": 1, "a": {"z": 1.5, "c": [1, "é"]}, "n": 2**70}
    text = json_text(value)
    assert text == '{"a":{"c":[1,"é"],"z":1.5},"b":1,"n":1180591620717411303424}'
    assert json.loads(text) == value
    assert json_text(dict(reversed(list(value.items())))) == text


def test_a_value_json_has_no_type_for_is_written_as_its_string() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    text = json_text({"x": Odd(), "at": datetime(2026, 1, 1, tzinfo=UTC)})
    assert json.loads(text) == {"at": "2026-01-01T00:00:00Z", "x": "odd"}
