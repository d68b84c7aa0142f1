"""The whole benchmark, as ``orderhealth bench`` runs it: one table, one JSON file.

Every figure that matters is a ratio or a distribution measured in the same
run on the same machine:

* **throughput** (:mod:`bench.throughput`): the ceiling (bare consume +
  decode) and the full pipeline per worker count on the same pre-produced
  messages, the ratio pipeline ÷ ceiling, peak RSS of each pipeline process,
  and from each pipeline's lakehouse the gate's cost per batch, Delta commits
  per minute and the resulting file counts;
* **freshness** (:mod:`bench.freshness`): produce -> readable in
  ``gold/health_metrics`` at a steady rate, p50/p95/p99: the bench's replay
  at 10k events/s and at a fraction of the 1-worker rate, and a live stream
  (event time at the wall clock's pace) at 10k events/s;
* **memory** (:mod:`bench.state_memory`): hot state per open order at growing
  numbers of open orders.

The result is saved as JSON with a top-level ``ratio`` (pipeline on 1 worker
÷ ceiling).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from rich.console import Console
from rich.table import Table

from bench import freshness, state_memory, throughput
from dataflows.allocator import active_allocator
from dataflows.interpreter_tuning import interpreter_build
from lakehouse.publication import SUITE
from lakehouse.reader import read_table
from lakehouse.tables import TABLES, VALIDATION_RUNS, table_uri
from orderhealth.broker import EmbeddedBroker
from orderhealth.generator import generate_messages
from orderhealth.kafka import ensure_topic, produce

__all__ = ["BenchConfig", "lakehouse_figures", "run_bench"]

RESULTS = Path(__file__).parent / "results" / "bench.json"


class BenchConfig(msgspec.Struct, frozen=True):
    events: int = 1_000_000
    partitions: int = 8
    workers: tuple[int, ...] = (1, 2)
    rate: float = 10_000.0
    seconds: float = 60.0
    open_orders: tuple[int, ...] = (100_000, 500_000, 1_000_000)
    out: str = str(RESULTS)
    #: `orderhealth run` options for the freshness runs: the low-latency
    #: profile (1 s epochs, a gate run as soon as staging commits -- one at
    #: a time -- and the tables publication does not wait for committed
    #: every 5 s).
    fresh_options: tuple[str, ...] = (
        "--snapshot-interval=1",
        "--gate-interval=0",
        "--side-commit-interval=5",
    )
    #: Also measure below saturation, at this fraction of the measured
    #: 1-worker throughput (0 = skip).
    fresh_fraction: float = 0.6
    #: Also measure a live stream at ``rate`` (event time at the wall
    #: clock's pace; ~1 min and ~4 GB to generate).
    fresh_live: bool = True


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def lakehouse_figures(root: str, seconds: float) -> dict[str, Any]:
    """Commits per minute and files per table, and the gate's cost per batch."""
    tables = {}
    for spec in TABLES:
        try:
            table = DeltaTable(table_uri(root, spec))
        except TableNotFoundError:  # e.g. no quarantine ever happened
            continue
        commits = sum(1 for entry in table.history() if entry.get("operation") != "CREATE TABLE")
        tables[spec.path] = {
            "commits": commits,
            "commits_per_min": commits / (seconds / 60),
            "files": len(table.file_uris()),
            "rows": table.to_pyarrow_dataset().count_rows(),
        }
    runs = read_table(root, VALIDATION_RUNS, ["suite", "duration_ms", "row_count"])
    gate = runs.filter(pc.equal(runs["suite"], SUITE))
    durations = gate["duration_ms"].to_pylist()
    rows = gate["row_count"].to_pylist()
    return {
        "tables": tables,
        "gate": {
            "batches": len(durations),
            "ms_per_batch_mean": sum(durations) / len(durations) if durations else None,
            "ms_per_batch_p95": _percentile(durations, 0.95),
            "rows_per_batch_mean": sum(rows) / len(rows) if rows else None,
            "ms_per_1k_rows": 1000 * sum(durations) / sum(rows) if sum(rows) else None,
        },
    }


def run_bench(config: BenchConfig, say: Callable[[str], None]) -> dict[str, Any]:
    """Run every measurement; return (and save) the result."""
    started = time.perf_counter()
    generator = throughput.bench_generator(config.events)
    runs = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = "bench"
        ensure_topic(broker.bootstrap_servers, topic, config.partitions)
        say(f"producing {config.events:,} events into {config.partitions} partitions")
        produce(broker.bootstrap_servers, topic, generate_messages(generator))
        say("ceiling: bare confluent-kafka consume + JSON decode, single process")
        top = throughput.ceiling(broker.bootstrap_servers, topic, config.partitions)
        for workers in config.workers:
            say(f"pipeline: orderhealth run --once, {workers} worker(s)")
            lakehouse = Path(tmp) / f"w{workers}"
            run = throughput.pipeline(broker.bootstrap_servers, topic, workers, lakehouse)
            run.update(lakehouse_figures(str(lakehouse), run["seconds"]))
            runs.append(run)
    one = next((r for r in runs if r["workers"] == 1), runs[0])
    rates = [config.rate]
    if config.fresh_fraction > 0:
        rates.append(round(one["events_per_s"] * config.fresh_fraction, -2))
    workloads = [(rate, False) for rate in rates]
    if config.fresh_live:
        workloads.append((config.rate, True))
    fresh = []
    for rate, live in workloads:
        kind = "a live stream" if live else "the replay"
        say(f"freshness: {kind} at a steady {rate:,.0f} events/s for {config.seconds:.0f} s")
        fresh.append(
            freshness.measure(
                rate,
                config.seconds,
                config.partitions,
                run_options=config.fresh_options,
                live=live,
            )
        )
    say(f"memory: hot state at {', '.join(f'{n:,}' for n in config.open_orders)} open orders")
    # Apart: this process holds the generated topics (a live one is ~4 GB).
    memory = state_memory.measure_apart(list(config.open_orders))
    result = {
        "ratio": one["events_per_s"] / top["events_per_s"],
        "events": config.events,
        "partitions": config.partitions,
        "ceiling": top,
        # The ceiling ran in this process, the pipeline in children that
        # inherit its allocator (dataflows.allocator): the same for both.
        "allocator": active_allocator(),
        # The same for both, too: the pipeline runs this process's interpreter.
        "interpreter": interpreter_build(),
        "pipeline": runs,
        "freshness": fresh,
        "memory": memory,
        "bench_seconds": time.perf_counter() - started,
    }
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _s(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def result_table(result: dict[str, Any]) -> Table:
    """The bench table (what ``orderhealth bench`` prints)."""
    table = Table("measure", "value", "÷ ceiling / note", title="orderhealth bench")
    top = result["ceiling"]
    table.add_row(
        "ceiling: consume + decode",
        f"{top['events_per_s']:,.0f} ev/s",
        f"1; allocator {result.get('allocator', 'system')}, as the pipeline's",
        end_section=True,
    )
    for run in result["pipeline"]:
        w = run["workers"]
        table.add_row(
            f"pipeline, {w} worker(s)",
            f"{run['events_per_s']:,.0f} ev/s",
            f"{run['events_per_s'] / top['events_per_s']:.4f}",
        )
        table.add_row(
            f"  valid / dead-lettered, {w} worker(s)",
            f"{run['valid']:,} / {run['dead_lettered']:,}",
            "0.2% malformed by design",
        )
        table.add_row(f"  peak RSS, {w} worker(s)", f"{run['peak_rss_mb']:,.0f} MB", "flow process")
        gate = run["gate"]
        table.add_row(
            f"  gate per batch, {w} worker(s)",
            f"{_s(gate['ms_per_batch_mean'], ',.0f')} ms",
            f"p95 {_s(gate['ms_per_batch_p95'], ',.0f')} ms, "
            f"{_s(gate['rows_per_batch_mean'], ',.0f')} rows/batch, {gate['batches']} batches",
        )
        commits = sum(t["commits"] for t in run["tables"].values())
        files = sum(t["files"] for t in run["tables"].values())
        table.add_row(
            f"  Delta commits, {w} worker(s)",
            f"{commits / (run['seconds'] / 60):,.1f} /min",
            f"{commits} commits, {files} files in {len(run['tables'])} tables",
            end_section=True,
        )
    table.add_row("ratio (1 worker ÷ ceiling)", f"{result['ratio']:.4f}", "goal ≥ 0.5")
    for fresh in result["freshness"]:
        table.add_row(
            f"freshness, {fresh.get('workload', 'replay')} at {fresh['rate']:,.0f} ev/s",
            f"p50 {_s(fresh['p50_s'], '.1f')} s, p95 {_s(fresh['p95_s'], '.1f')} s, "
            f"p99 {_s(fresh['p99_s'], '.1f')} s",
            f"goal p95 ≤ 2 s (at 10k ev/s); {fresh['measured']:,} of "
            f"{fresh['produced'] - fresh.get('dead_lettered', 0):,} valid events published "
            f"({fresh.get('dead_lettered', 0):,} dead letters apart); p95 to staging "
            f"{_s(fresh.get('staged_p95_s'), '.1f')} s, in the gate "
            f"{_s(fresh.get('gate_p95_s'), '.1f')} s",
        )
    table.add_section()
    for point in result["memory"]:
        table.add_row(
            f"hot state, {point['open_orders']:,} open orders",
            f"{point['rss_bytes_per_order']:,.0f} B/order RSS",
            f"{point['snapshot_bytes_per_order']:,.0f} B/order snapshot, "
            f"peak RSS {point['peak_rss_mb']:,.0f} MB",
        )
    if "interpreter" in result:
        table.add_section()
        table.add_row("interpreter", result["interpreter"], "the ceiling's and the pipeline's")
    return table


def main(config: BenchConfig | None = None) -> dict[str, Any]:
    console = Console()
    result = run_bench(config or BenchConfig(), lambda text: console.print(f"[bold]{text}"))
    console.print(result_table(result))
    return result
