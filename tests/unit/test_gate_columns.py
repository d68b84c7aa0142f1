"""The columns a quality suite reads: only those go to GX, unless that cannot be told."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lakehouse.tables import (
    FULFILMENT_KEYS,
    HEALTH_METRICS_STAGING,
    METRIC_COLUMNS,
    PROMISE_FULFILMENT,
)
from quality.gate import referenced_columns
from quality.suites import suite_path


def _suite(*expectations: dict[str, Any]) -> dict[str, Any]:
    return {"name": "s", "expectations": list(expectations)}


@pytest.mark.parametrize(
    ("suite", "columns", "keys"),
    [
        ("health_metrics", set(METRIC_COLUMNS), set(HEALTH_METRICS_STAGING.merge_keys or ())),
        ("promise_fulfilment", {f.name for f in PROMISE_FULFILMENT.schema}, set(FULFILMENT_KEYS)),
    ],
)
def test_the_shipped_suites_read_columns_their_batches_have(
    suite: str, columns: set[str], keys: set[str]
) -> None:
    read = referenced_columns(json.loads(suite_path(suite).read_text()))
    assert read is not None
    assert keys <= read <= columns  # the keys (unique, not null) among them
    assert len(read) < len(columns)  # so narrowing the frame saves something


def test_every_way_of_naming_a_column_counts() -> None:
    suite = _suite(
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {
            "type": "expect_column_pair_values_a_to_be_greater_than_b",
            "kwargs": {"column_A": "b", "column_B": "c"},
        },
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["d", "e"]}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    )
    assert referenced_columns(suite) == {"a", "b", "c", "d", "e"}


@pytest.mark.parametrize(
    "expectation",
    [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "a", "min_value": 0, "row_condition": "is_final==True"},
        },
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["a"]}},
        {"type": "expect_table_column_count_to_equal", "kwargs": {"value": 3}},
    ],
    ids=["row-condition", "column-set", "column-count"],
)
def test_a_suite_that_reads_more_than_it_names_gets_every_column(
    expectation: dict[str, Any],
) -> None:
    suite = _suite(
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}, expectation
    )
    assert referenced_columns(suite) is None
