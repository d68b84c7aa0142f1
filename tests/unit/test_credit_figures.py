"""The credit report's figures, signatures and the daily fact projection, without servers."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from dataflows.fulfilment import fulfilment_facts
from dataflows.metrics import nearest_rank
from lakehouse.tables import HEALTH_METRICS_STAGING, METRIC_COLUMNS
from orderhealth.credit.figures import (
    EVIDENCE_SCHEMA,
    daily_figures,
    headline,
    monthly_figures,
    wilson_interval,
)
from orderhealth.credit.signing import (
    SigningKeyError,
    canonical_manifest,
    generate_key,
    load_private_key,
    pseudonymiser,
    sign_manifest,
    verify_manifest,
)

H = 3_600_000_000


def _evidence(rows: list[dict[str, Any]]) -> pa.Table:
    full = [{f.name: r.get(f.name) for f in EVIDENCE_SCHEMA} for r in rows]
    return pa.Table.from_pylist(full, schema=EVIDENCE_SCHEMA)


def _order(
    i: int, outcome: str | None, day: date | None, deviation_h: float | None
) -> dict[str, Any]:
    deviation = None if deviation_h is None else int(deviation_h * H)
    return {
        "order_ref": f"O{i}",
        "outcome": outcome,
        "outcome_day": day if outcome else None,
        "deviation_us": deviation,
        "deviation_hours": None if deviation is None else deviation / H,
        "delivery_day": day if deviation is not None else None,
    }


def test_wilson_interval_matches_the_textbook_value() -> None:
    # 81 of 263, the usual worked example: 95% interval (0.2553, 0.3662).
    low, high = wilson_interval(81, 263) or (0, 0)
    assert math.isclose(low, 0.2553, abs_tol=5e-5)
    assert math.isclose(high, 0.3662, abs_tol=5e-5)
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 10) or (0, 0)
    assert high == 1.0 and 0.69 < low < 0.73


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_interval_contains_the_rate(kept: int, n: int) -> None:
    kept = min(kept, n)
    low, high = wilson_interval(kept, n) or (0, 0)
    assert 0.0 <= low <= kept / n <= high <= 1.0


def test_nearest_rank_returns_an_observed_value() -> None:
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert nearest_rank(values, 0.5) == 5
    assert nearest_rank(values, 0.9) == 9
    assert nearest_rank(values, 0.99) == 10
    assert nearest_rank([], 0.5) is None


def test_headline_counts_rates_percentiles_and_stability() -> None:
    d1, d2 = date(2026, 1, 30), date(2026, 2, 2)
    rows = [
        _order(1, "kept", d1, -2.0),
        _order(2, "kept", d1, -1.0),
        _order(3, "late", d1, 5.0),
        _order(4, "cancelled", d1, None),
        _order(5, "kept", d2, 0.0),
        _order(6, "late", d2, None),  # late, not delivered yet
        _order(7, None, d2, 7.0),  # only its (late) delivery falls in the period
    ]
    h = headline(_evidence(rows))
    assert (h.promised, h.kept, h.late, h.cancelled) == (6, 3, 2, 1)
    assert h.kept_rate == 3 / 5
    assert (h.kept_rate_ci_low, h.kept_rate_ci_high) == wilson_interval(3, 5)
    assert h.delivered == 5
    assert h.deviation_hours_p50 == 0.0 and h.deviation_hours_p99 == 7.0
    assert h.deviation_hours_avg == (-2 - 1 + 5 + 0 + 7) / 5
    rates = [2 / 3, 1 / 2]
    mean = sum(rates) / 2
    cv = math.sqrt(sum((r - mean) ** 2 for r in rates) / 2) / mean
    assert h.stability_cv == pytest.approx(cv, rel=1e-12)
    months = monthly_figures(_evidence(rows))
    assert [(m.month, m.kept, m.late, m.cancelled) for m in months] == [
        ("2026-01", 2, 1, 1),
        ("2026-02", 1, 1, 0),
    ]
    days = daily_figures(_evidence(rows))
    assert days[d2].delivered == 2 and days[d2].deviation_us_sum == 7 * H


def _metric_row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(METRIC_COLUMNS)
    row.update(values)
    return row


def test_daily_facts_are_the_day_long_metric_rows() -> None:
    day = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        _metric_row(
            window_size="1d",
            window_start=day,
            window_end=datetime(2026, 3, 2, tzinfo=UTC),
            dimension="seller_id",
            dimension_value="S001",
            is_final=True,
            orders_resolved=10,
            orders_on_time=8,
            orders_cancelled=1,
            deviation_count=9,
            deviation_us_sum=-9 * H,
            on_time_rate=0.8,
            promise_deviation_hours_p50=-1.0,
            promise_deviation_hours_p90=2.0,
            promise_deviation_hours_p99=3.0,
        ),
        _metric_row(
            window_size="1h",
            window_start=day,
            window_end=datetime(2026, 3, 1, 1, tzinfo=UTC),
            dimension="all",
            dimension_value="all",
        ),
    ]
    table = pa.Table.from_pylist(rows, schema=HEALTH_METRICS_STAGING.schema)
    facts = fulfilment_facts(table).to_pylist()
    assert len(facts) == 1
    fact = facts[0]
    assert fact["day"] == date(2026, 3, 1)
    assert (fact["subject_type"], fact["subject_id"]) == ("seller_id", "S001")
    assert (fact["promised"], fact["kept"], fact["late"], fact["cancelled"]) == (11, 8, 2, 1)
    assert (fact["delivered"], fact["deviation_us_sum"]) == (9, -9 * H)


def test_signed_manifest_verifies_and_any_change_breaks_it() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_manifest({"format": "x", "figures": {"kept": 3}}, key)
    assert verify_manifest(signed) is not None
    assert verify_manifest(signed, key.public_key()) is not None
    tampered = json.loads(canonical_manifest(signed))
    tampered["figures"]["kept"] = 4
    with pytest.raises(ValueError, match="does not match"):
        verify_manifest(tampered)
    with pytest.raises(ValueError, match="expected key"):
        verify_manifest(signed, Ed25519PrivateKey.generate().public_key())


def test_private_key_files_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    generate_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert load_private_key(path=path) is not None
    os.chmod(path, 0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_private_key(path=path)


def test_pseudonyms_are_keyed_and_stable() -> None:
    one, fingerprint = pseudonymiser(b"0123456789abcdef")
    two, other = pseudonymiser(b"fedcba9876543210")
    assert one("ORD-1") == one("ORD-1") != two("ORD-1")
    assert len(one("ORD-1")) == 64 and fingerprint != other
    with pytest.raises(SigningKeyError):
        pseudonymiser(b"short")
