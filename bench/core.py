"""CPU cost per event of the streaming core alone: no Kafka, no Delta, no Bytewax.

    .venv/bin/python -m bench.core [--events 200000] [--partitions 8] [--batch 5000]

The end-to-end bench (``orderhealth bench``) runs real processes against a
real broker; its wall times move by +-10% from run to run on this 2-core box
(time-driven epochs and the gate child share the cores), which hides a lever
worth 5%.  This measures the same work deterministically, in one process and
in CPU time, stage by stage:

* **decode**: the flow's decode step (:class:`~dataflows.decode_step.DecodeStep`:
  the validating msgspec decode, the record rules, the events' Kafka lineage);
* **partition**: :class:`~dataflows.partition_processor.PartitionProcessor`
  (dedupe, lateness, lifecycle views, fact changes, bronze/lifecycle rows);
* **windows**: :class:`~dataflows.window_metrics.MetricWindows` (window totals,
  components, health index), one call per round of partition batches, as the
  flow's window step sees them;
* **to Arrow**: the writers' conversion of each round's rows to Arrow tables.

Messages are those of the bench (:func:`bench.throughput.bench_generator`),
partitioned by key as a producer would.  Results go to
``bench/results/core.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from rich.console import Console
from rich.table import Table

from bench.throughput import bench_generator
from dataflows.allocator import reexec_with_allocator
from dataflows.decode_step import DecodeStep, is_event
from dataflows.interpreter_tuning import tune_garbage_collector
from dataflows.kafka_source import FlowControl
from dataflows.partition_processor import PartitionBatch, PartitionProcessor
from dataflows.settings import HealthSettings
from dataflows.window_metrics import MetricColumns, MetricWindows
from lakehouse.tables import BRONZE_EVENTS, HEALTH_METRICS_STAGING, ORDER_LIFECYCLE
from lakehouse.writer import DeltaWriter
from orderhealth.generator import generate_messages
from quality.record_rules import RuleBook
from schemas.decode import EventDecoder

__all__ = ["arrow_writers", "kafka_messages", "measure", "partitioned", "rows_to_arrow"]

RESULTS = Path(__file__).parent / "results" / "core.json"
STAGES = ("decode", "partition", "windows", "to_arrow")
#: A fixed clock: the same messages, so the same window boundaries, every run.
START = datetime(2026, 1, 1, tzinfo=UTC)


def partitioned(
    events: int, partitions: int, orders_per_minute: float | None
) -> list[list[tuple[bytes | None, bytes]]]:
    out: list[list[tuple[bytes | None, bytes]]] = [[] for _ in range(partitions)]
    config = msgspec.structs.replace(bench_generator(events), start=START)
    if orders_per_minute is not None:
        config = msgspec.structs.replace(config, orders_per_minute=orders_per_minute)
    for key, value in generate_messages(config):
        out[zlib.crc32(key or b"") % partitions].append((key, value))
    return out


def kafka_messages(
    partition: int, chunk: list[tuple[bytes | None, bytes]], first_offset: int, produced_ms: int
) -> list[Message]:
    """A chunk of a partition's log as the broker hands it out (offsets, produce time)."""
    return [
        Message(
            topic="bench",
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            timestamp=(TIMESTAMP_CREATE_TIME, produced_ms),
        )
        for offset, (key, value) in enumerate(chunk, start=first_offset)
    ]


def arrow_writers() -> dict[str, DeltaWriter]:
    """The writers of the three tables the core makes rows for (only to convert them)."""
    return {
        spec.path: DeltaWriter("/nonexistent", spec)
        for spec in (BRONZE_EVENTS, ORDER_LIFECYCLE, HEALTH_METRICS_STAGING)
    }


def rows_to_arrow(
    writers: dict[str, DeltaWriter], columns: MetricColumns, batches: list[PartitionBatch]
) -> None:
    """One round's rows to Arrow tables, as the flow's sinks convert them."""
    if columns:
        writers[HEALTH_METRICS_STAGING.path].to_arrow(columns)
    for b in batches:
        if b.bronze:
            writers[BRONZE_EVENTS.path].to_arrow(b.bronze.table())
        if b.lifecycle:
            writers[ORDER_LIFECYCLE.path].to_arrow(b.lifecycle)


def measure(
    events: int,
    partitions: int,
    batch: int,
    config: Path | None = None,
    orders_per_minute: float | None = None,
) -> dict[str, Any]:
    """CPU seconds per stage over ``events`` messages (see module docstring)."""
    logs = partitioned(events, partitions, orders_per_minute)
    tune_garbage_collector()  # as the flow does (dataflows.interpreter_tuning)
    settings = HealthSettings.load(config)
    # The flow's own decode step; the messages as the broker hands them out,
    # produced now (long after their event times: no clock-skew drops).
    decode = DecodeStep(EventDecoder(), RuleBook.load(), FlowControl(None))
    produced_ms = int(time.time() * 1000)
    processors = [PartitionProcessor("bench", p, settings) for p in range(partitions)]
    windows = MetricWindows(settings, [f"bench/{p}" for p in range(partitions)])
    writers = arrow_writers()
    spent = dict.fromkeys(STAGES, 0.0)
    valid = rows = 0
    cursor = 0
    clock = time.process_time
    while any(cursor < len(log) for log in logs):
        round_batches: list[PartitionBatch] = []
        for p, log in enumerate(logs):
            chunk = log[cursor : cursor + batch]
            if not chunk:
                continue
            messages = kafka_messages(p, chunk, cursor, produced_ms)
            started = clock()
            decoded = [item for item in decode(messages) if is_event(item)]
            valid += len(decoded)
            spent["decode"] += clock() - started
            started = clock()
            round_batches.append(processors[p].process(decoded))
            spent["partition"] += clock() - started
        cursor += batch
        started = clock()
        columns = windows.apply_all(round_batches)
        spent["windows"] += clock() - started
        rows += len(columns.get("window_size", ()))
        started = clock()
        rows_to_arrow(writers, columns, round_batches)
        spent["to_arrow"] += clock() - started
    total = sum(spent.values())
    return {
        "events": events,
        "valid": valid,
        "partitions": partitions,
        "batch": batch,
        "orders_per_minute": orders_per_minute,
        "metric_rows": rows,
        "cpu_s": spent,
        "us_per_event": {k: 1e6 * v / events for k, v in spent.items()},
        "total_us_per_event": 1e6 * total / events,
        "events_per_cpu_s": events / total,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--batch", type=int, default=5000, help="events per partition batch (the flow's read size)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--config", type=Path, help="health config TOML (default: dataflows/health.toml)"
    )
    parser.add_argument(
        "--orders-per-minute",
        type=float,
        help="event-time density (default: the bench's 2 orders, ~10 events, a minute)",
    )
    args = parser.parse_args(argv)
    console = Console()
    with console.status(f"Running the core over {args.events:,} events ..."):
        result = measure(
            args.events, args.partitions, args.batch, args.config, args.orders_per_minute
        )
    table = Table(title=f"Streaming core, {args.events:,} events, CPU time")
    table.add_column("stage")
    table.add_column("us / event", justify="right")
    table.add_column("share", justify="right")
    total = result["total_us_per_event"]
    for stage in STAGES:
        us = result["us_per_event"][stage]
        table.add_row(stage, f"{us:.1f}", f"{100 * us / total:.0f}%")
    table.add_row("total", f"{total:.1f}", f"{result['events_per_cpu_s']:,.0f} ev/CPU-s")
    console.print(table)
    rows, valid = result["metric_rows"], result["valid"]
    console.print(f"{rows:,} metric rows emitted ({valid:,} valid events)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    # The flow's allocator (dataflows.allocator), so figures compare alike.
    reexec_with_allocator()
    main()
