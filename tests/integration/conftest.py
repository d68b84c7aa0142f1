"""Integration fixtures: a real embedded Kafka broker and real Delta tables."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from dataflows.flow import FlowConfig
from dataflows.settings import HealthSettings
from lakehouse.reader import read_table
from lakehouse.tables import (
    BRONZE_EVENTS,
    DEAD_LETTER,
    HEALTH_METRICS,
    HEALTH_METRICS_STAGING,
    METRIC_COLUMNS,
    ORDER_LIFECYCLE,
    QUARANTINE,
    TableSpec,
)
from orderhealth.broker import EmbeddedBroker
from orderhealth.generator import GeneratorConfig, generate_messages
from orderhealth.kafka import ensure_topic, produce
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
    table = read_table(str(root), spec)
    keys = list(spec.merge_keys or ("topic", "partition", "offset"))
    return table.sort_by([(k, "ascending") for k in keys])


TIMING_COLUMNS = ("watermark_at", "watermark_lag_seconds")


def all_tables(root: Path) -> dict[str, pa.Table]:
    """The tables whose content must not depend on timing (epochs, gate cadence).

    Gate bookkeeping (run ids, staging versions, validation runs) depends on
    how commits were grouped, so the published table is compared on its
    metric columns; so do the freshness columns (the watermark when a row
    was emitted), which are left out.
    """
    tables = {
        spec.path: sorted_table(root, spec)
        for spec in (BRONZE_EVENTS, DEAD_LETTER, ORDER_LIFECYCLE)
    }
    metrics = [c for c in METRIC_COLUMNS if c not in TIMING_COLUMNS]
    for spec in (HEALTH_METRICS_STAGING, HEALTH_METRICS):
        tables[spec.path] = sorted_table(root, spec).select(metrics)
    assert read_table(str(root), QUARANTINE).num_rows == 0, "a batch was quarantined"
    return tables


def run_command(broker: Kafka, topic: str, lakehouse: Path, *extra: str) -> list[str]:
    """``orderhealth run --once`` as a real process (for kill and plugin tests)."""
    return [
        sys.executable,
        "-m",
        "orderhealth",
        "run",
        "--once",
        "--bootstrap-servers",
        broker.bootstrap_servers,
        "--topic",
        topic,
        "--lakehouse",
        str(lakehouse),
        *extra,
    ]
