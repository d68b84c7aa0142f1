"""The flow's Kafka source on the real broker: one shared consumer, Bytewax's semantics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import Message, Producer

from dataflows.kafka_source import FlowControl, FlowControlledKafkaSource
from orderhealth.kafka import client_config, ensure_topic

from .conftest import Kafka, _run_id

PARTITIONS = 3


def _topic(broker: Kafka, name: str, counts: list[int]) -> str:
    topic = f"source-test-{_run_id}-{name}"
    ensure_topic(broker.bootstrap_servers, topic, len(counts))
    producer = Producer(client_config(broker.bootstrap_servers))
    for partition, count in enumerate(counts):
        for i in range(count):
            producer.produce(topic, value=f"{partition}:{i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    return topic


def _drain(parts: dict[int, StatefulSourcePartition[Message, int]]) -> dict[int, list[str]]:
    """Read every partition to its end, round-robin as a Bytewax worker does."""
    seen: dict[int, list[str]] = {p: [] for p in parts}
    live = dict(parts)
    for _ in range(100_000):
        if not live:
            return seen
        for partition, part in list(live.items()):
            try:
                batch = part.next_batch()
            except StopIteration:
                del live[partition]
                continue
            seen[partition].extend(m.value().decode() for m in batch)  # type: ignore[union-attr]
    raise AssertionError(f"partitions {sorted(live)} never ended")


@pytest.fixture
def source_of(broker: Kafka) -> Iterator[object]:
    built: list[StatefulSourcePartition[Message, int]] = []

    def build(
        topic: str, resume: dict[int, int] | None = None, batch_size: int = 7, tail: bool = False
    ) -> dict[int, StatefulSourcePartition[Message, int]]:
        source = FlowControlledKafkaSource(
            [broker.bootstrap_servers],
            [topic],
            control=FlowControl(None),
            tail=tail,
            batch_size=batch_size,
        )
        parts = {}
        for name in source.list_parts():
            index = int(name.split("-", 1)[0])
            parts[index] = source.build_part("read", name, (resume or {}).get(index))
        built.extend(parts.values())
        return parts

    yield build
    for part in built:
        part.close()


def test_each_partition_gets_its_own_messages_in_order_and_ends(broker: Kafka, source_of) -> None:  # type: ignore[no-untyped-def]
    counts = [50, 0, 23]  # an empty partition ends too
    topic = _topic(broker, "order", counts)
    parts = source_of(topic)
    assert sorted(parts) == list(range(PARTITIONS))
    seen = _drain(parts)
    assert seen == {p: [f"{p}:{i}" for i in range(n)] for p, n in enumerate(counts)}
    # The snapshot is the next offset to read, as with Bytewax's source.
    assert {p: part.snapshot() for p, part in parts.items()} == {0: 50, 1: -2, 2: 23}


def test_a_resumed_partition_reads_from_its_snapshot(broker: Kafka, source_of) -> None:  # type: ignore[no-untyped-def]
    topic = _topic(broker, "resume", [30, 30, 30])
    first = source_of(topic, batch_size=4)
    # Read a few batches of partition 0 only: the shared consumer queues the
    # other partitions' messages meanwhile, but they were not handed on.
    handed: list[str] = []
    for _ in range(100_000):
        handed.extend(m.value().decode() for m in first[0].next_batch())  # type: ignore[union-attr]
        if len(handed) >= 8:
            break
    snapshot = {p: part.snapshot() for p, part in first.items()}
    assert snapshot[0] == len(handed) > 0 and snapshot[1] == snapshot[2] == -2
    seen = _drain(source_of(topic, resume=snapshot))
    assert handed + seen[0] == [f"0:{i}" for i in range(30)]
    assert seen[1] == [f"1:{i}" for i in range(30)] and seen[2] == [f"2:{i}" for i in range(30)]


def test_workers_on_threads_share_a_consumer_each(broker: Kafka, source_of) -> None:  # type: ignore[no-untyped-def]
    """Bytewax builds a worker's partitions on that worker's thread."""
    topic = _topic(broker, "threads", [10, 10, 10])
    source = FlowControlledKafkaSource(
        [broker.bootstrap_servers], [topic], control=FlowControl(None), tail=False
    )
    seen: dict[int, list[str]] = {}

    def worker(indices: list[int]) -> None:
        parts = {i: source.build_part("read", f"{i}-{topic}", None) for i in indices}
        try:
            seen.update(_drain(parts))
        finally:
            for part in parts.values():
                part.close()

    threads = [threading.Thread(target=worker, args=(ix,)) for ix in ([0, 2], [1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(source._shared) == 2
    assert seen == {p: [f"{p}:{i}" for i in range(10)] for p in range(3)}


def test_partitions_not_asked_for_do_not_pile_up(broker: Kafka, source_of) -> None:  # type: ignore[no-untyped-def]
    """One consumer must not queue a whole partition that its worker is not reading yet."""
    topic = _topic(broker, "skew", [0, 0, 0])
    parts = source_of(topic, batch_size=10, tail=True)  # the end is not the end
    rounds, per_round = 100, 20

    def produce() -> None:  # all partitions at once, while partition 0 is read
        producer = Producer(client_config(broker.bootstrap_servers))
        for r in range(rounds):
            for partition in range(PARTITIONS):
                for i in range(per_round):
                    value = f"{partition}:{r * per_round + i}".encode()
                    producer.produce(topic, value=value, partition=partition)
            producer.flush(30)
            time.sleep(0.01)

    writer = threading.Thread(target=produce)
    writer.start()
    got: list[str] = []
    for _ in range(100_000):
        got.extend(m.value().decode() for m in parts[0].next_batch())  # type: ignore[union-attr]
        if len(got) == rounds * per_round:
            break
    writer.join()
    assert got == [f"0:{i}" for i in range(rounds * per_round)]
    queued = parts[0]._shared.queued()
    assert max(queued.values()) <= 10 * 3, queued  # a batch, plus at most one fetch's share
