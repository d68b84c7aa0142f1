"""Memory per open order in the flow's hot state, and how it grows.

    .venv/bin/python -m bench.state_memory [--orders 100000 500000 1000000]

Feeds one :class:`~dataflows.partition_processor.PartitionProcessor` (the
per-partition state the flow keeps) with realistic ``ORDER_CREATED`` +
``ROUTED`` events of orders that stay open, in batches like the flow's, and
reports at each checkpoint: resident memory above the empty processor's
(``/proc/self/statm``, after a GC) per open order, the recovery snapshot
(pickle) per open order, and the process's peak resident memory -- which is
the hot state's only in a process of its own, as ``orderhealth bench`` runs
it (:func:`measure_apart`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from dataflows.allocator import reexec_with_allocator
from dataflows.partition_processor import PartitionProcessor, SourcedEvent
from dataflows.settings import HealthSettings
from schemas.events import SCHEMA_VERSION, OrderCreated, Routed

__all__ = ["measure", "measure_apart"]

_PAGE = os.sysconf("SC_PAGE_SIZE")
START = datetime(2026, 11, 2, tzinfo=UTC)


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE


def _peak_rss() -> int:
    """VmHWM: the process's peak resident memory, in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _events(first: int, count: int, offset: int) -> list[SourcedEvent]:
    out = []
    for i in range(first, first + count):
        created = START + timedelta(seconds=i * 0.05)
        order = f"ORD-{i:08d}"
        events: list[Any] = [
            OrderCreated(
                event_id=f"{order}-c",
                order_id=order,
                event_time=created,
                source_system="OMS",
                schema_version=SCHEMA_VERSION,
                promised_delivery_at=created + timedelta(days=3),
                customer_id=f"C{i % 50_000:05d}",
                customer_segment="B2C",
                channel="web",
                region="DE",
                seller_id=f"S{i % 40:03d}",
                order_value=59.9,
                currency="EUR",
                line_count=2,
            ),
            Routed(
                event_id=f"{order}-r",
                order_id=order,
                event_time=created + timedelta(minutes=5),
                source_system="OMS",
                schema_version=SCHEMA_VERSION,
                warehouse_id="WH-BER",
            ),
        ]
        for event in events:
            out.append(SourcedEvent(event, "bench", 0, offset))
            offset += 1
    return out


def measure(checkpoints: list[int], batch: int = 2500) -> list[dict[str, float]]:
    settings = HealthSettings.load()
    processor = PartitionProcessor("bench", 0, settings)
    base = _rss()
    results = []
    orders = offset = 0
    started = time.perf_counter()
    for target in sorted(checkpoints):
        while orders < target:
            count = min(batch, target - orders)
            processor.process(_events(orders, count, offset))
            orders += count
            offset += 2 * count
        rss = _rss() - base
        snapshot = len(pickle.dumps(processor, protocol=pickle.HIGHEST_PROTOCOL))
        results.append(
            {
                "open_orders": orders,
                "rss_bytes_per_order": rss / orders,
                "snapshot_bytes_per_order": snapshot / orders,
                "peak_rss_mb": _peak_rss() / 2**20,
                "elapsed_s": time.perf_counter() - started,
            }
        )
        print(results[-1], flush=True)
    return results


def measure_apart(checkpoints: list[int]) -> list[dict[str, float]]:
    """:func:`measure` in a fresh process, so that its peak RSS is not the caller's."""
    command = [sys.executable, "-m", "bench.state_memory", "--json", "--orders"]
    done = subprocess.run(
        [*command, *map(str, checkpoints)], capture_output=True, text=True, check=True
    )
    results: list[dict[str, float]] = json.loads(done.stdout.splitlines()[-1])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[100_000, 500_000, 1_000_000])
    parser.add_argument("--json", action="store_true", help="end with the results as one JSON line")
    args = parser.parse_args(argv)
    results = measure(args.orders)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    # The flow's allocator (dataflows.allocator), so figures compare alike.
    reexec_with_allocator()
    main()
