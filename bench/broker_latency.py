"""How long the embedded broker holds a message between produce and consume, without the flow.

    .venv/bin/python -m bench.broker_latency [--consumers per-partition|one]
        [--fetch-wait-ms 500] [--rate 10000] [--seconds 15]

A producer writes stamped messages at a steady rate into 8 partitions of
Tansu while consumers (one per partition, as the flow's source has, or one
for all of them) read as fast as they can.  It prints produce -> consumed
p50 / p95 / p99 (the first sixth of the run dropped as warm-up) and the
broker's CPU in cores over the producing span.  On Tansu 0.6 a fetch is
answered late even when data is there, and shorter fetch waits cost the
broker CPU (docs/scaling.md, "The gate's fixed costs, and what the broker
holds back").
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from orderhealth.broker import EmbeddedBroker
from orderhealth.kafka import client_config, ensure_topic

__all__ = ["main"]

_STAMP = 20  # bytes of the produce time at the head of each message


def _cpu_seconds(name: str) -> float:
    """CPU seconds so far of the first process whose command line holds ``name``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline") as handle:
                if name not in handle.read():
                    continue
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--consumers", choices=["per-partition", "one"], default="per-partition")
    parser.add_argument("--fetch-wait-ms", type=int, default=500)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args(argv)
    with EmbeddedBroker() as broker:
        servers = broker.bootstrap_servers
        ensure_topic(servers, "latency", args.partitions)
        config = {
            **client_config(servers),
            "group.id": "latency",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": args.fetch_wait_ms,
        }
        groups = (
            [list(range(args.partitions))]
            if args.consumers == "one"
            else [[p] for p in range(args.partitions)]
        )
        consumers = []
        for group in groups:
            consumer = Consumer(config)
            consumer.assign([TopicPartition("latency", p, 0) for p in group])
            consumers.append(consumer)
        delays: list[float] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                for consumer in consumers:
                    for message in consumer.consume(1000, 0.001):
                        if message.error() is None:
                            delays.append(time.time() - float((message.value() or b"")[:_STAMP]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        producer = Producer({**client_config(servers), "linger.ms": "5"})
        padding = b"x" * 300  # about an event's size
        cpu_before, started = _cpu_seconds("tansu"), time.monotonic()
        total = int(args.rate * args.seconds)
        for sent in range(total):
            due = started + sent / args.rate
            while (wait := due - time.monotonic()) > 0:
                time.sleep(min(wait, 0.002))
            stamp = f"{time.time():{_STAMP}.6f}".encode()
            producer.produce("latency", value=stamp + padding, partition=sent % args.partitions)
            producer.poll(0)
        producer.flush(30)
        broker_cores = (_cpu_seconds("tansu") - cpu_before) / (time.monotonic() - started)
        time.sleep(3)
        stop.set()
        reader.join()
        for consumer in consumers:
            consumer.close()
    kept = sorted(delays[len(delays) // 6 :])

    def pct(q: float) -> float:
        return kept[min(len(kept) - 1, int(q * len(kept)))] * 1000

    print(
        f"{'one consumer' if args.consumers == 'one' else 'a consumer per partition'}, "
        f"fetch.wait.max.ms={args.fetch_wait_ms}: "
        f"{len(delays):,} of {total:,} consumed; produce -> consumed "
        f"p50 {pct(0.5):.0f} ms, p95 {pct(0.95):.0f} ms, p99 {pct(0.99):.0f} ms; "
        f"broker {broker_cores:.2f} cores"
    )


if __name__ == "__main__":
    main()
