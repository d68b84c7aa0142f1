"""Integration fixtures: a real embedded Kafka broker and real Delta tables."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dataflows.flow import FlowConfig
from dataflows.settings import HealthSettings
from lakehouse.reader import read_log, read_table
from lakehouse.tables import (
    BRONZE_EVENTS,
    DEAD_LETTER,
    FULFILMENT_COLUMNS,
    HEALTH_METRICS,
    HEALTH_METRICS_STAGING,
    METRIC_COLUMNS,
    ORDER_LIFECYCLE,
    PROMISE_FULFILMENT,
    QUARANTINE,
    VALIDATION_RUNS,
    TableSpec,
    table_uri,
)
from orderhealth.broker import EmbeddedBroker
from orderhealth.generator import GeneratorConfig, generate_messages
from orderhealth.kafka import ensure_topic, produce
from orderhealth.pipeline import run_command as pipeline_command
from orderhealth.pipeline import run_flow

pytestmark = pytest.mark.integration
_topic_ids = itertools.count()
_run_id = os.getpid()


class ExternalKafka:
    """A cluster named by ``KAFKA_BOOTSTRAP_SERVERS`` (topics get unique names)."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers


Kafka = EmbeddedBroker | ExternalKafka


@pytest.fixture(scope="session")
def broker() -> Iterator[Kafka]:
    """Tansu on a free loopback port for the whole session (always stopped),
    or the real cluster in ``KAFKA_BOOTSTRAP_SERVERS`` when it is set."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield ExternalKafka(external)
        return
    with EmbeddedBroker() as embedded:
        yield embedded


def load_topic(broker: Kafka, config: GeneratorConfig, partitions: int = 4) -> str:
    """A fresh topic holding the generated messages."""
    topic = f"orders-test-{_run_id}-{config.scenario}-{config.seed}-{next(_topic_ids)}"
    ensure_topic(broker.bootstrap_servers, topic, partitions)
    assert produce(broker.bootstrap_servers, topic, generate_messages(config)) == config.events
    return topic


def flow_config(broker: Kafka, topic: str, lakehouse: Path, partitions: int = 4) -> FlowConfig:
    return FlowConfig(
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic,
        partitions=partitions,
        lakehouse=str(lakehouse),
        settings=HealthSettings.load(),
        tail=False,
    )


def run_to_end(broker: Kafka, topic: str, lakehouse: Path, **kwargs: object) -> None:
    run_flow(flow_config(broker, topic, lakehouse), **kwargs)  # type: ignore[arg-type]


def sorted_table(root: Path, spec: TableSpec) -> pa.Table:
    """A table as a canonically ordered row set (for equality checks)."""
    table = read_log(str(root), spec) if spec.log_segment_commits else read_table(str(root), spec)
    keys = list(spec.merge_keys or ("topic", "partition", "offset"))
    return table.sort_by([(k, "ascending") for k in keys])


TIMING_COLUMNS = ("watermark_at", "watermark_lag_seconds")


def _assert_tiles(ranges: list[tuple[int, int]], first: int, last: int, what: str) -> None:
    """``ranges`` cover ``first..last`` exactly once: no gap, no overlap."""
    expected = first
    for start, end in sorted(ranges):
        assert start == expected, f"{what}: range {start}-{end} after {expected - 1}"
        assert end >= start, f"{what}: empty range {start}-{end}"
        expected = end + 1
    assert expected == last + 1, f"{what}: covered up to {expected - 1}, expected {last}"


def validation_run_totals(root: Path) -> pa.Table:
    """``quality/validation_runs`` reduced to what must not depend on timing.

    How messages and staging commits were grouped into runs depends on epochs
    and the gate's cadence, so runs are checked for coverage here -- record
    rule runs tile each partition's offsets exactly once, gate runs tile the
    staging table's versions exactly once -- and compared as per-partition
    totals of every count.
    """
    runs = read_table(str(root), VALIDATION_RUNS).to_pylist()
    rules = [r for r in runs if r["suite"] == "record_rules"]
    totals: dict[tuple[str, int], Counter[str]] = {}
    ranges: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for run in rules:
        key = (run["topic"], run["partition"])
        ranges.setdefault(key, []).append(_range(run["batch_id"]))
        counts = json.loads(run["counts"])
        total = totals.setdefault(key, Counter())
        total.update(messages=counts["messages"], passed=counts["passed"])
        for kind in ("warned", "dropped", "rejected_by_contract"):
            total.update({f"{kind}:{name}": n for name, n in counts[kind].items()})
    for key, spans in ranges.items():
        _assert_tiles(spans, 0, max(end for _, end in spans), f"record rules {key}")
    gate_runs = [r for r in runs if r["suite"] == "health_metrics"]
    if gate_runs:
        spans = [_range(r["batch_id"]) for r in gate_runs]
        _assert_tiles(spans, 1, max(end for _, end in spans), "gate runs")
    return pa.Table.from_pylist(
        [
            {"topic": t, "partition": p, "totals": json.dumps(v, sort_keys=True)}
            for (t, p), v in sorted(totals.items())
        ]
    )


def _range(batch_id: str) -> tuple[int, int]:
    """``name@first-last`` -> (first, last)."""
    first, _, last = batch_id.rpartition("@")[2].partition("-")
    return int(first), int(last)


def all_tables(root: Path) -> dict[str, pa.Table]:
    """The tables whose content must not depend on timing (epochs, gate cadence).

    Gate bookkeeping (run ids, staging versions) depends on how commits were
    grouped, so the published tables are compared on their metric and fact
    columns, and validation runs on coverage and totals
    (:func:`validation_run_totals`); the freshness columns (the watermark
    when a row was emitted) are left out.  The staging log is compared on its
    current rows, which hold every key only while the gate has dropped none
    of its segments (runs under ``LOG_SEGMENT_COMMITS`` staging commits).
    """
    staging = DeltaTable(table_uri(str(root), HEALTH_METRICS_STAGING))
    pruned = [h["version"] for h in staging.history() if h["operation"] == "DELETE"]
    assert not pruned, f"staging segments were pruned ({pruned}): compare published tables"
    tables = {
        spec.path: sorted_table(root, spec)
        for spec in (BRONZE_EVENTS, DEAD_LETTER, ORDER_LIFECYCLE)
    }
    metrics = [c for c in METRIC_COLUMNS if c not in TIMING_COLUMNS]
    for spec in (HEALTH_METRICS_STAGING, HEALTH_METRICS):
        tables[spec.path] = sorted_table(root, spec).select(metrics)
    tables[PROMISE_FULFILMENT.path] = sorted_table(root, PROMISE_FULFILMENT).select(
        list(FULFILMENT_COLUMNS)
    )
    tables[VALIDATION_RUNS.path] = validation_run_totals(root)
    assert read_table(str(root), QUARANTINE).num_rows == 0, "a batch was quarantined"
    return tables


def run_command(broker: Kafka, topic: str, lakehouse: Path, *extra: str) -> list[str]:
    """``orderhealth run --once`` as a real process (for kill and plugin tests)."""
    return pipeline_command(broker.bootstrap_servers, topic, lakehouse, *extra)
