"""``orderhealth status``: where the pipeline stands, read from the tables (and Kafka for lag).

Everything comes from what the flow and the gate committed -- no process to
ask, so it works the same against a running flow, a stopped one, or a
lakehouse copied elsewhere.  Consumer lag needs the broker's high watermarks;
without a reachable broker it is reported as unknown, not guessed.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaError

from lakehouse.publication import list_quarantined
from lakehouse.reader import read_table
from lakehouse.tables import (
    BRONZE_EVENTS,
    DEAD_LETTER,
    HEALTH_METRICS,
    HEALTH_METRICS_STAGING,
    VALIDATION_RUNS,
)

__all__ = ["PartitionLag", "PipelineStatus", "WindowStatus", "pipeline_status"]


class PartitionLag(msgspec.Struct, frozen=True):
    topic: str
    partition: int
    #: Highest offset written to bronze or the dead letter (-1: none yet).
    processed_offset: int
    #: The offset after the partition's last message; None when the broker
    #: was not asked or not reachable.
    high_watermark: int | None = None

    @property
    def lag(self) -> int | None:
        if self.high_watermark is None:
            return None
        return max(0, self.high_watermark - self.processed_offset - 1)


class WindowStatus(msgspec.Struct, frozen=True):
    window_size: str
    last_final_end: datetime | None
    latest_provisional_end: datetime | None


class PipelineStatus(msgspec.Struct, frozen=True):
    lakehouse: str
    watermark: datetime | None
    published_watermark: datetime | None
    windows: list[WindowStatus]
    partitions: list[PartitionLag]
    lag_error: str | None
    events_in_bronze: int
    dead_letters: dict[str, int]
    quarantined_batches: int
    quarantined_rows: int
    last_gate_run_id: str | None
    last_gate_outcome: str | None
    last_gate_at: datetime | None


def _max(table: pa.Table, column: str) -> datetime | None:
    if table.num_rows == 0:
        return None
    value = pc.max(table[column]).as_py()
    return value if isinstance(value, datetime) else None


def _processed(root: str) -> tuple[dict[tuple[str, int], int], int]:
    """Highest offset written per (topic, partition), and the number of bronze events."""
    out: dict[tuple[str, int], int] = {}
    bronze_rows = 0
    for spec in (BRONZE_EVENTS, DEAD_LETTER):
        rows = read_table(root, spec, ["topic", "partition", "offset"])
        if spec is BRONZE_EVENTS:
            bronze_rows = rows.num_rows
        if rows.num_rows == 0:
            continue
        grouped = rows.group_by(["topic", "partition"]).aggregate([("offset", "max")])
        for row in grouped.to_pylist():
            key = (row["topic"], row["partition"])
            out[key] = max(out.get(key, -1), row["offset_max"])
    return out, bronze_rows


def _log_end(consumer: Any, topic: str, partition: int, timeout: float) -> int:
    """The offset after the partition's last message.

    The high watermark, checked by reading from just below it to the end:
    Tansu 0.6 reports the base offset of the last record batch + 1 as its high
    watermark (100 messages produced in one batch: 1), which would hide lag.
    On a conforming broker the read finds nothing beyond the watermark.
    """
    from confluent_kafka import TopicPartition

    high = int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1])
    if high <= 0:
        return high
    consumer.assign([TopicPartition(topic, partition, high - 1)])
    end = high
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = consumer.consume(10_000, timeout=min(1.0, timeout))
        if not messages:
            break
        eof = False
        for message in messages:
            if message.error() is None:
                end = max(end, message.offset() + 1)
            elif message.error().code() == KafkaError._PARTITION_EOF:
                eof = True
        if eof:
            break
    consumer.unassign()
    return end


def _log_ends(
    bootstrap_servers: str, partitions: list[tuple[str, int]], timeout: float
) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, KafkaException

    from orderhealth.kafka import client_config

    consumer = Consumer(
        {
            **client_config(bootstrap_servers),
            "group.id": "orderhealth-status",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        return {(t, p): _log_end(consumer, t, p, timeout) for t, p in partitions}
    except KafkaException as err:
        raise ConnectionError(
            f"cannot read offsets from Kafka at {bootstrap_servers}: {err.args[0].str()}"
        ) from err
    finally:
        consumer.close()


def pipeline_status(
    root: str,
    *,
    bootstrap_servers: str | None = None,
    topic: str | None = None,
    partitions: int | None = None,
    timeout: float = 5.0,
) -> PipelineStatus:
    """Read the lakehouse (and, given a broker, its high watermarks) into one status."""
    processed, bronze_rows = _processed(root)
    if topic is not None and partitions is not None:
        for p in range(partitions):
            processed.setdefault((topic, p), -1)
    keys = sorted(k for k in processed if topic is None or k[0] == topic)
    high: dict[tuple[str, int], int] = {}
    lag_error = None if bootstrap_servers else "no broker given (--bootstrap-servers)"
    if bootstrap_servers and keys:
        try:
            high = _log_ends(bootstrap_servers, keys, timeout)
        except ConnectionError as err:
            lag_error = str(err)
    staging = read_table(root, HEALTH_METRICS_STAGING, ["watermark_at"])
    published = read_table(
        root, HEALTH_METRICS, ["window_size", "window_end", "is_final", "watermark_at"]
    )
    windows = []
    for size in sorted(set(published["window_size"].to_pylist())):
        of_size = published.filter(pc.equal(published["window_size"], size))
        final = of_size.filter(of_size["is_final"])
        provisional = of_size.filter(pc.invert(of_size["is_final"]))
        windows.append(
            WindowStatus(size, _max(final, "window_end"), _max(provisional, "window_end"))
        )
    dead = read_table(root, DEAD_LETTER, ["reason", "rule"]).to_pylist()
    reasons = Counter(f"{r['reason']} ({r['rule']})" if r["rule"] else r["reason"] for r in dead)
    quarantined = list_quarantined(root)
    runs = read_table(root, VALIDATION_RUNS, ["run_id", "suite", "outcome", "validated_at"])
    gate_runs = [r for r in runs.to_pylist() if r["suite"] == "health_metrics"]
    last_run = max(gate_runs, key=lambda r: r["validated_at"]) if gate_runs else None
    return PipelineStatus(
        lakehouse=root,
        watermark=_max(staging, "watermark_at"),
        published_watermark=_max(published, "watermark_at"),
        windows=windows,
        partitions=[PartitionLag(t, p, processed[(t, p)], high.get((t, p))) for t, p in keys],
        lag_error=lag_error,
        events_in_bronze=bronze_rows,
        dead_letters=dict(reasons.most_common()),
        quarantined_batches=len(quarantined),
        quarantined_rows=sum(b.rows for b in quarantined),
        last_gate_run_id=last_run["run_id"] if last_run else None,
        last_gate_outcome=last_run["outcome"] if last_run else None,
        last_gate_at=last_run["validated_at"] if last_run else None,
    )
