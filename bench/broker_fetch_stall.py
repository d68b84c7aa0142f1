"""Reproduces the embedded broker's fetch stalls, without the flow.

    .venv/bin/python -m bench.broker_fetch_stall [--rate 10000] [--seconds 60]

A producer writes at a steady rate into Tansu (the embedded broker) while one
plain confluent-kafka consumer per partition (``assign``, like Bytewax) reads
at a bounded pace; every few seconds the consumers' positions are printed.
On Tansu 0.6 the consumers stop receiving for tens of seconds at a time while
the log grows (e.g. all 8 partitions held at offset 499 while 100,000
messages were produced, then caught up), and after production stops a
consumer can stay short of the log end.  That is what limits the freshness
bench at 10k events/s on this broker; see docs/scaling.md.
"""

from __future__ import annotations

import argparse
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.throughput import bench_generator
from orderhealth.broker import EmbeddedBroker
from orderhealth.generator import generate_messages
from orderhealth.kafka import client_config, ensure_topic

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args(argv)
    with EmbeddedBroker() as broker:
        servers = broker.bootstrap_servers
        ensure_topic(servers, "stall", args.partitions)
        consumers = []
        for partition in range(args.partitions):
            consumer = Consumer(
                {**client_config(servers), "group.id": "stall", "enable.auto.commit": False}
            )
            consumer.assign([TopicPartition("stall", partition, 0)])
            consumers.append(consumer)
        positions = [-1] * args.partitions
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                for partition, consumer in enumerate(consumers):
                    for message in consumer.consume(500, 0.001):
                        if message.error() is None:
                            positions[partition] = message.offset() or 0
                time.sleep(0.1)  # a busy reader, like a flow behind its input

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        producer = Producer(
            {
                **client_config(servers),
                "linger.ms": "5",
                "queue.buffering.max.messages": "1000000",
            }
        )
        events = int(args.rate * args.seconds)
        started = time.monotonic()
        sent = 0
        for key, value in generate_messages(bench_generator(events + 1000, seed=11)):
            due = started + sent / args.rate
            if sent >= events:
                break
            while time.monotonic() < due:
                time.sleep(0.0005)
            producer.produce("stall", value=value, key=key)
            producer.poll(0)
            sent += 1
            if sent % 50_000 == 0:
                print(f"produced {sent:,}; consumer positions {positions}", flush=True)
        producer.flush(60)
        print(f"produced {sent:,}", flush=True)
        for _ in range(12):
            time.sleep(5)
            print(f"positions {positions}, read ~{sum(p + 1 for p in positions):,}", flush=True)
        stop.set()
        reader.join()


if __name__ == "__main__":
    main()
