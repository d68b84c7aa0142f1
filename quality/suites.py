"""Batch-level expectation suites, derived from the metric catalogue.

The suite is *code* so that it follows the catalogue: a new rate component
gets its [0, 1] check without anyone remembering to add it.  ``make schema``
writes it to ``quality/expectations/<suite>.json``, the reviewable file the
gate actually loads, and a test fails when the two drift apart -- so a
change to what is checked always shows up in review as a diff of that file.

Severity follows GX's own field: ``critical`` failures quarantine a batch,
``warning`` failures publish it with a flag.  Row volume and freshness bounds
depend on recent history and configuration, so they are suite *parameters*
(``{"$PARAMETER": ...}``) filled in per batch by :mod:`quality.gate`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dataflows.metrics import COMPONENTS, MEASURES
from dataflows.settings import KNOWN_DIMENSIONS
from lakehouse.tables import FULFILMENT_KEYS, HEALTH_METRICS_STAGING

__all__ = [
    "EXPECTATIONS_DIR",
    "HEALTH_METRICS_SUITE",
    "PROMISE_FULFILMENT_SUITE",
    "health_metrics_suite",
    "promise_fulfilment_suite",
    "write_suites",
]

EXPECTATIONS_DIR = Path(__file__).with_name("expectations")
HEALTH_METRICS_SUITE = "health_metrics"
PROMISE_FULFILMENT_SUITE = "promise_fulfilment"

CRITICAL = "critical"
WARNING = "warning"

#: Pairs (a, b) of measures where a count of a subset can never exceed its set.
_SUBSET_COUNTS = (
    ("orders_on_time", "orders_resolved"),
    ("orders_anomalous", "orders_active"),
    ("shipped_from_first_warehouse", "orders_shipped"),
    ("stage_sla_breaches", "stage_transitions"),
)


def _expectation(kind: str, severity: str, why: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "kwargs": kwargs,
        "severity": severity,
        "meta": {"notes": {"format": "markdown", "content": [why]}},
    }


def _key_expectations(keys: list[str], null_why: str, unique_why: str) -> list[dict[str, Any]]:
    """Every key column present, and the key unique (both critical)."""
    out = [
        _expectation(
            "expect_column_values_to_not_be_null",
            CRITICAL,
            f"`{key}` is part of the {null_why}",
            column=key,
        )
        for key in keys
    ]
    out.append(
        _expectation("expect_compound_columns_to_be_unique", CRITICAL, unique_why, column_list=keys)
    )
    return out


def health_metrics_suite() -> dict[str, Any]:
    """The suite every ``gold/health_metrics_staging`` batch must pass."""
    keys = list(HEALTH_METRICS_STAGING.merge_keys or ())
    out = _key_expectations(
        keys,
        "row key; a null key cannot be published or joined.",
        "One row per window and dimension value; a duplicate would double-count "
        "in every dashboard aggregate.",
    )
    out.append(
        _expectation(
            "expect_column_pair_values_a_to_be_greater_than_b",
            CRITICAL,
            "A window ends after it starts.",
            column_A="window_end",
            column_B="window_start",
            or_equal=False,
        )
    )
    for component in COMPONENTS:
        low, high = component.valid_range
        if low is None and high is None:
            continue
        bounds = {k: v for k, v in (("min_value", low), ("max_value", high)) if v is not None}
        out.append(
            _expectation(
                "expect_column_values_to_be_between",
                CRITICAL,
                f"`{component.name}` ({component.unit}) outside {component.valid_range} "
                "is impossible: the batch was computed wrongly.",
                column=component.name,
                **bounds,
            )
        )
    out.append(
        _expectation(
            "expect_column_values_to_be_between",
            CRITICAL,
            "The health index is a weighted mean of scores in [0, 1], times 100.",
            column="health_index",
            min_value=0.0,
            max_value=100.0,
        )
    )
    for part, whole in _SUBSET_COUNTS:
        if part in MEASURES and whole in MEASURES:
            out.append(
                _expectation(
                    "expect_column_pair_values_a_to_be_greater_than_b",
                    CRITICAL,
                    f"`{part}` counts a subset of `{whole}`.",
                    column_A=whole,
                    column_B=part,
                    or_equal=True,
                )
            )
    out.append(
        _expectation(
            "expect_table_row_count_to_be_between",
            WARNING,
            "Row volume plausible against recent batches: bounds are a ratio of the "
            "median row count of the last batches (quality/gate.toml).",
            min_value={"$PARAMETER": "min_rows"},
            max_value={"$PARAMETER": "max_rows"},
        )
    )
    out.append(
        _expectation(
            "expect_column_values_to_be_between",
            WARNING,
            "Freshness: how far (in Kafka produce time) the partition holding the "
            "watermark back trails the newest one; an idle or stuck partition delays "
            "final windows.",
            column="watermark_lag_seconds",
            min_value=0.0,
            max_value={"$PARAMETER": "max_watermark_lag_seconds"},
        )
    )
    return {"name": HEALTH_METRICS_SUITE, "expectations": out}


def promise_fulfilment_suite() -> dict[str, Any]:
    """The suite the daily promise-fulfilment facts of every batch must pass.

    These facts are what finance signs and hands to a bank, so anything that
    cannot be true of a day's promises quarantines the whole batch.
    """
    out = _key_expectations(
        list(FULFILMENT_KEYS),
        "fact's key.",
        "One fact per subject and day; a duplicate would be counted twice in a report.",
    )
    out.append(
        _expectation(
            "expect_column_values_to_be_in_set",
            CRITICAL,
            "A subject type is a known dimension (dataflows/dimensions.py).",
            column="subject_type",
            value_set=list(KNOWN_DIMENSIONS),
        )
    )
    for column in ("promised", "kept", "late", "cancelled", "delivered"):
        out.append(
            _expectation(
                "expect_column_values_to_be_between",
                CRITICAL,
                f"`{column}` counts orders: never negative.",
                column=column,
                min_value=0,
            )
        )
    for part in ("kept", "late", "cancelled"):
        out.append(
            _expectation(
                "expect_column_pair_values_a_to_be_greater_than_b",
                CRITICAL,
                f"`{part}` promises are a subset of the promises that came due.",
                column_A="promised",
                column_B=part,
                or_equal=True,
            )
        )
    out.append(
        _expectation(
            "expect_column_values_to_be_between",
            CRITICAL,
            "The kept rate is kept / (kept + late).",
            column="kept_rate",
            min_value=0.0,
            max_value=1.0,
        )
    )
    for low, high in (("p50", "p90"), ("p90", "p99")):
        out.append(
            _expectation(
                "expect_column_pair_values_a_to_be_greater_than_b",
                CRITICAL,
                f"Percentiles of one distribution are ordered: {low} <= {high}.",
                column_A=f"deviation_hours_{high}",
                column_B=f"deviation_hours_{low}",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            )
        )
    return {"name": PROMISE_FULFILMENT_SUITE, "expectations": out}


SUITES = {
    HEALTH_METRICS_SUITE: health_metrics_suite,
    PROMISE_FULFILMENT_SUITE: promise_fulfilment_suite,
}


def suite_path(name: str) -> Path:
    return EXPECTATIONS_DIR / f"{name}.json"


def render(name: str) -> str:
    return json.dumps(SUITES[name](), indent=2) + "\n"


def write_suites() -> list[Path]:
    """Regenerate the reviewable suite files (``make schema``)."""
    EXPECTATIONS_DIR.mkdir(exist_ok=True)
    paths = []
    for name in SUITES:
        path = suite_path(name)
        path.write_text(render(name))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_suites():
        print(f"wrote {written}")
