"""Kafka (embedded Tansu) -> Bytewax -> Delta, end to end, on the outage scenario."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pyarrow.compute as pc
import pytest

from dataflows.fulfilment import fulfilment_facts
from lakehouse.reader import read_log, read_table
from lakehouse.tables import (
    BRONZE_EVENTS,
    DEAD_LETTER,
    FULFILMENT_COLUMNS,
    FULFILMENT_KEYS,
    HEALTH_METRICS,
    HEALTH_METRICS_STAGING,
    METRIC_COLUMNS,
    ORDER_LIFECYCLE,
    PROMISE_FULFILMENT,
    QUARANTINE,
    VALIDATION_RUNS,
)
from orderhealth.generator import GeneratorConfig
from orderhealth.pipeline import run_flow
from tests.integration.conftest import (
    Kafka,
    all_tables,
    flow_config,
    load_topic,
    run_to_end,
    sorted_table,
)

pytestmark = pytest.mark.integration
EVENTS = 40_000


@pytest.fixture(scope="module")
def outage_run(broker: Kafka, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    config = GeneratorConfig(
        events=EVENTS, seed=21, scenario="warehouse_outage", bad_fraction=0.005
    )
    topic = load_topic(broker, config)
    lakehouse = tmp_path_factory.mktemp("lakehouse")
    run_to_end(broker, topic, lakehouse)
    return topic, lakehouse


def test_every_message_is_valid_or_dead_lettered_exactly_once(outage_run: tuple[str, Path]) -> None:
    _, root = outage_run
    bronze = read_table(str(root), BRONZE_EVENTS, ["partition", "offset"])
    dead = read_table(str(root), DEAD_LETTER, ["partition", "offset"])
    assert bronze.num_rows + dead.num_rows == EVENTS
    assert dead.num_rows > 50
    seen = Counter(zip(bronze["partition"].to_pylist(), bronze["offset"].to_pylist(), strict=True))
    seen.update(zip(dead["partition"].to_pylist(), dead["offset"].to_pylist(), strict=True))
    assert max(seen.values()) == 1
    # Offsets are contiguous per partition: nothing in between went missing.
    for partition in range(4):
        offsets = sorted(o for p, o in seen if p == partition)
        assert offsets == list(range(len(offsets)))


def test_dead_letters_keep_raw_bytes_and_a_precise_reason(outage_run: tuple[str, Path]) -> None:
    _, root = outage_run
    dead = read_table(str(root), DEAD_LETTER).to_pylist()
    reasons = Counter(row["reason"] for row in dead)
    assert {
        "malformed_json",
        "unknown_event_type",
        "missing_field",
        "invalid_utf8",
        "missing_key",
        "rule_violation",
    } <= set(reasons)
    dropped = [row for row in dead if row["reason"] == "rule_violation"]
    assert {row["rule"] for row in dropped} == {"promise_after_creation"}
    for row in dead:
        assert row["value"] and row["message"]
        if row["reason"] == "missing_field":
            assert row["field"] and row["got"] == "missing"


def test_duplicates_are_flagged_in_bronze_and_ignored_downstream(
    outage_run: tuple[str, Path],
) -> None:
    _, root = outage_run
    bronze = read_table(
        str(root), BRONZE_EVENTS, ["event_id", "order_id", "is_duplicate", "is_late"]
    )
    duplicates = pc.sum(bronze["is_duplicate"]).as_py()
    unique_ids = pc.count_distinct(bronze["event_id"]).as_py()
    assert duplicates > 100
    assert bronze.num_rows - duplicates == unique_ids
    counted = bronze.filter(
        pc.and_(pc.invert(bronze["is_duplicate"]), pc.invert(bronze["is_late"]))
    )
    lifecycle = read_table(str(root), ORDER_LIFECYCLE, ["order_id", "event_count"])
    assert pc.sum(lifecycle["event_count"]).as_py() == counted.num_rows
    assert lifecycle.num_rows == pc.count_distinct(counted["order_id"]).as_py()


def test_metrics_agree_with_bronze_and_the_lifecycle_table(outage_run: tuple[str, Path]) -> None:
    """Cross-check window counts against two other tables, computed independently."""
    _, root = outage_run
    metrics = read_log(str(root), HEALTH_METRICS_STAGING).to_pylist()
    daily = {
        r["window_start"].date(): r
        for r in metrics
        if r["window_size"] == "1d" and r["dimension"] == "all"
    }

    bronze = read_table(str(root), BRONZE_EVENTS).to_pylist()
    created = Counter(
        r["event_time"].date()
        for r in bronze
        if r["event_type"] == "ORDER_CREATED" and not r["is_duplicate"] and not r["is_late"]
    )
    assert {d: r["orders_created"] for d, r in daily.items() if r["orders_created"]} == dict(
        created
    )

    lifecycle = read_table(str(root), ORDER_LIFECYCLE).to_pylist()
    resolved: dict = defaultdict(lambda: [0, 0])
    for row in lifecycle:
        if row["outcome"] in ("on_time", "late"):
            day = row["resolved_at"].date()
            resolved[day][0] += 1
            resolved[day][1] += row["outcome"] == "on_time"
    for day, (total, on_time) in resolved.items():
        assert (daily[day]["orders_resolved"], daily[day]["orders_on_time"]) == (total, on_time)
        assert daily[day]["on_time_rate"] == pytest.approx(on_time / total, abs=1e-12)


def test_every_metric_row_is_well_formed(outage_run: tuple[str, Path]) -> None:
    _, root = outage_run
    rows = read_log(str(root), HEALTH_METRICS_STAGING).to_pylist()
    assert {r["window_size"] for r in rows} == {"1m", "1h", "1d"}
    assert {r["dimension"] for r in rows} >= {
        "all",
        "warehouse_id",
        "region",
        "channel",
        "carrier_id",
    }
    keys = Counter(
        (r["window_size"], r["window_start"], r["dimension"], r["dimension_value"]) for r in rows
    )
    assert max(keys.values()) == 1
    for r in rows:
        for rate in ("on_time_rate", "anomaly_rate"):
            assert r[rate] is None or 0.0 <= r[rate] <= 1.0
    assert any(r["is_final"] for r in rows) and any(not r["is_final"] for r in rows)


def test_every_batch_passed_the_gate_and_published_equals_staging(
    outage_run: tuple[str, Path],
) -> None:
    _, root = outage_run
    staging = sorted_table(root, HEALTH_METRICS_STAGING)
    published = sorted_table(root, HEALTH_METRICS)
    metrics = list(METRIC_COLUMNS)
    assert published.select(metrics).equals(staging.select(metrics))
    assert read_table(str(root), QUARANTINE).num_rows == 0
    runs = read_table(str(root), VALIDATION_RUNS).to_pylist()
    runs = [r for r in runs if r["suite"] == "health_metrics"]
    assert runs and all(r["success"] for r in runs)
    assert {r["outcome"] for r in runs} <= {"passed", "warning"}
    # Every published row names the gate run that let it through.
    assert set(published["validation_run_id"].to_pylist()) <= {r["run_id"] for r in runs}
    assert sum(r["row_count"] for r in runs) >= published.num_rows


def test_daily_promise_facts_are_the_published_day_rows_and_cite_their_runs(
    outage_run: tuple[str, Path],
) -> None:
    _, root = outage_run
    published = sorted_table(root, HEALTH_METRICS)
    expected = fulfilment_facts(published).sort_by([(k, "ascending") for k in FULFILMENT_KEYS])
    facts = sorted_table(root, PROMISE_FULFILMENT)
    assert facts.num_rows == expected.num_rows > 0
    assert facts.select(list(FULFILMENT_COLUMNS)).equals(expected)
    runs = {
        r["run_id"]: r
        for r in read_table(str(root), VALIDATION_RUNS).to_pylist()
        if r["suite"] == "promise_fulfilment"
    }
    for row in facts.select(["validation_run_id", "batch_id"]).to_pylist():
        run = runs[row["validation_run_id"]]
        assert run["batch_id"] == row["batch_id"] and run["success"]


def test_record_rule_counts_reconcile_with_the_tables(outage_run: tuple[str, Path]) -> None:
    """produced = valid (bronze) + dropped by rules + rejected by the contract."""
    _, root = outage_run
    runs = [
        r
        for r in read_table(str(root), VALIDATION_RUNS).to_pylist()
        if r["suite"] == "record_rules"
    ]
    counts = [json.loads(r["counts"]) for r in runs]
    dropped: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    for c in counts:
        dropped.update(c["dropped"])
        rejected.update(c["rejected_by_contract"])
    messages = sum(c["messages"] for c in counts)
    bronze = read_table(str(root), BRONZE_EVENTS, ["quality_warnings"])
    dead = read_table(str(root), DEAD_LETTER, ["reason", "rule"]).to_pylist()
    assert messages == EVENTS
    assert messages == bronze.num_rows + sum(dropped.values()) + sum(rejected.values())
    assert dropped == Counter(r["rule"] for r in dead if r["rule"])
    assert rejected == Counter(r["reason"] for r in dead if not r["rule"])
    assert sum(c["passed"] for c in counts) == bronze["quality_warnings"].null_count
    # One row per partition per epoch; no message counted twice.
    spans = sorted((r["partition"], r["offset"], r["row_count"]) for r in runs)
    assert {p for p, _, _ in spans} == {0, 1, 2, 3}


def test_lifecycle_rows_carry_the_three_twin_layers(outage_run: tuple[str, Path]) -> None:
    _, root = outage_run
    rows = read_table(str(root), ORDER_LIFECYCLE).to_pylist()
    delivered = [r for r in rows if r["delivered_at"] is not None]
    assert delivered
    sample = delivered[0]
    assert sample["region"] and sample["order_created_at"]  # base + behaviour
    assert (
        sample["context_by_stage"].startswith("{") and "queue_depth" in sample["context_by_stage"]
    )
    flagged = [r for r in rows if r["anomaly_count"]]
    assert any("FACILITY_DOWN" in r["anomaly_flags"] for r in flagged)


def test_warehouse_outage_lowers_that_warehouse_on_time_rate(outage_run: tuple[str, Path]) -> None:
    _, root = outage_run
    assert _worst_gap(root) > 0.08


def test_baseline_shows_no_such_gap(broker: Kafka, tmp_path: Path) -> None:
    topic = load_topic(broker, GeneratorConfig(events=EVENTS, seed=21, scenario="baseline"))
    run_to_end(broker, topic, tmp_path)
    assert _worst_gap(tmp_path) < 0.06  # day-to-day noise between warehouses


def _worst_gap(root: Path) -> float:
    """How far WH-BER's on-time rate falls below the other warehouses' on the worst day."""
    rows = read_log(str(root), HEALTH_METRICS_STAGING).to_pylist()
    by_day: dict = defaultdict(dict)
    for r in rows:
        if (
            r["window_size"] == "1d"
            and r["dimension"] == "warehouse_id"
            and r["orders_resolved"] >= 100
        ):
            by_day[r["window_start"]][r["dimension_value"]] = r["on_time_rate"]
    gaps = []
    for rates in by_day.values():
        if "WH-BER" in rates and len(rates) == 5:
            others = [v for k, v in rates.items() if k != "WH-BER"]
            gaps.append(min(others) - rates["WH-BER"])
    assert gaps, "no comparable days"
    return max(gaps)


def test_two_workers_write_the_same_tables_as_one(broker: Kafka, tmp_path: Path) -> None:
    """Two workers with their partitions kept together in event time (as ``run -w 2``)."""
    config = GeneratorConfig(
        events=15_000, seed=9, scenario="finance_bottleneck", bad_fraction=0.005
    )
    topic = load_topic(broker, config)
    run_to_end(broker, topic, tmp_path / "one", workers=1)
    aligned = msgspec.structs.replace(
        flow_config(broker, topic, tmp_path / "two"),
        align_partitions=True,
        max_in_flight=2_000,  # many reads per partition, so that alignment pauses some
    )
    run_flow(aligned, workers=2)
    one, two = all_tables(tmp_path / "one"), all_tables(tmp_path / "two")
    for name, table in one.items():
        assert table.num_rows > 0, name
        assert two[name].equals(table), name


def test_a_low_latency_run_writes_the_same_tables(broker: Kafka, tmp_path: Path) -> None:
    """Short epochs, a gate run per staging commit, side tables committed every second."""
    config = GeneratorConfig(
        events=15_000, seed=12, scenario="warehouse_outage", bad_fraction=0.005
    )
    topic = load_topic(broker, config)
    run_to_end(broker, topic, tmp_path / "default")
    fast = msgspec.structs.replace(
        flow_config(broker, topic, tmp_path / "fast"),
        gate_interval_s=0.0,
        side_commit_interval_s=1.0,
        max_in_flight=2_000,  # many small epochs
    )
    run_flow(fast, snapshot_interval_s=0.1)
    default, low_latency = all_tables(tmp_path / "default"), all_tables(tmp_path / "fast")
    for name, table in default.items():
        assert table.num_rows > 0, name
        assert low_latency[name].equals(table), name
