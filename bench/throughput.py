"""End-to-end throughput against the physical ceiling, measured in the same run.

    .venv/bin/python -m bench.throughput [--events 1000000] [--partitions 8] [--workers 1 2]

One embedded broker, one topic of pre-produced, identical messages (the
demo's scenario mix), then:

* **ceiling**: a bare confluent-kafka consumer (``assign`` + ``consume``) plus
  a JSON decode (msgspec, schemaless) of every message, single process;
* **pipeline**: ``orderhealth run --once`` as a real process -- Kafka to
  published Delta with every component, dimension and window and the quality
  gate -- per worker count, timed from start to exit (set-up included, so a
  small run understates steady-state speed);
* **ratio** = pipeline (1 worker) / ceiling.

Figures are ratios within one run on one machine: absolute events/s on a
shared 2-core box are noise, the ratio is not.  Results go to
``bench/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, TopicPartition
from rich.console import Console
from rich.table import Table

from dataflows.allocator import reexec_with_allocator
from orderhealth.broker import EmbeddedBroker
from orderhealth.generator import GeneratorConfig, generate_messages
from orderhealth.kafka import client_config, ensure_topic, produce
from orderhealth.pipeline import run_command

__all__ = ["ceiling", "main", "pipeline"]

RESULTS = Path(__file__).parent / "results" / "throughput.json"


def bench_generator(events: int, seed: int = 7) -> GeneratorConfig:
    """The demo's scenario mix, ending days before now.

    The generator's clock starts on a fixed date at the demo's order rate; a
    million events span ~70 days, and event times after the moment a message
    is produced break the record rule ``event_time_not_in_future`` -- half
    the stream would take the cheap dead-letter path.  Starting far enough in
    the past keeps every generated event valid (bar the 0.2% malformed).
    """
    # ~5 events per order at 2 orders a minute: 10 events a minute; count 8.
    span = timedelta(minutes=events / 8)
    start = (datetime.now(UTC) - span - timedelta(days=2)).replace(microsecond=0)
    return GeneratorConfig(
        events=events, seed=seed, scenario="warehouse_outage", bad_fraction=0.002, start=start
    )


def ceiling(bootstrap_servers: str, topic: str, partitions: int) -> dict[str, float]:
    """Consume every message of ``topic`` and decode it; events/s."""
    consumer = Consumer(
        {
            **client_config(bootstrap_servers),
            "group.id": "bench-ceiling",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    decode = msgspec.json.Decoder().decode
    done: set[int] = set()
    events = errors = 0
    started = time.perf_counter()
    while len(done) < partitions:
        for message in consumer.consume(10_000, timeout=1.0):
            error = message.error()
            if error is None:
                events += 1
                try:
                    decode(message.value() or b"")
                except msgspec.DecodeError:
                    errors += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                done.add(message.partition() or 0)
    seconds = time.perf_counter() - started
    consumer.close()
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def pipeline(bootstrap_servers: str, topic: str, workers: int, lakehouse: Path) -> dict[str, Any]:
    """``orderhealth run --once`` to the end of the topic; events/s and its run summary."""
    command = run_command(
        bootstrap_servers,
        topic,
        lakehouse,
        "--workers",
        str(workers),
        "--log-format",
        "json",
    )
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        # wait4: this child's own peak RSS (the flow process, its largest).
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"pipeline run failed: {stdout[-2000:]}{stderr[-2000:]}")
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    end = next(r for r in records if r["event"] == "run_end")
    return {
        "workers": workers,
        "core": end.get("core"),
        "allocator": end.get("allocator"),
        "interpreter": end.get("interpreter"),
        "events": end["consumed"],
        "seconds": seconds,
        "events_per_s": end["consumed"] / seconds,
        "epochs": end["epochs"],
        "gate_runs": end["gate_runs"],
        "valid": end["valid"],
        "dead_lettered": end["dead_lettered"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    console = Console()
    config = bench_generator(args.events)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = "bench"
        ensure_topic(broker.bootstrap_servers, topic, args.partitions)
        console.print(f"producing {args.events:,} events into {args.partitions} partitions")
        produce(broker.bootstrap_servers, topic, generate_messages(config))
        console.print("ceiling: bare consume + JSON decode")
        top = ceiling(broker.bootstrap_servers, topic, args.partitions)
        runs = []
        for workers in args.workers:
            console.print(f"pipeline: {workers} worker(s)")
            runs.append(
                pipeline(broker.bootstrap_servers, topic, workers, Path(tmp) / f"w{workers}")
            )
    one = next((r for r in runs if r["workers"] == 1), runs[0])
    result = {
        "events": args.events,
        "partitions": args.partitions,
        "ceiling": top,
        "pipeline": runs,
        "ratio": one["events_per_s"] / top["events_per_s"],
    }
    table = Table("measure", "events/s", "seconds", "÷ ceiling")
    table.add_row(
        "ceiling (consume + decode)", f"{top['events_per_s']:,.0f}", f"{top['seconds']:.1f}", "1"
    )
    for run in runs:
        table.add_row(
            f"pipeline, {run['workers']} worker(s)",
            f"{run['events_per_s']:,.0f}",
            f"{run['seconds']:.1f}",
            f"{run['events_per_s'] / top['events_per_s']:.4f}",
        )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    # The flow's allocator (dataflows.allocator), so figures compare alike.
    reexec_with_allocator()
    main()
