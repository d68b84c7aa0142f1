"""Our Kafka source for Bytewax: one consumer per worker, with flow control.

It replaces Bytewax's ``KafkaSource`` (whose partitions, names and snapshots
it keeps, so a recovery store of either resumes with the other) for three
reasons:

* **One consumer for a worker's partitions** (:class:`_SharedConsumer`):
  Bytewax opens a consumer per partition, and on the embedded broker eight
  of them, long-polling each on its own, held a message ~140 ms at the
  median before the flow saw it.
* **Flow control.**  Bytewax (timely) has no backpressure between an input
  and slower downstream steps: on a backlog the source reads the whole topic
  into the first epoch, so nothing is committed until the end and a crash
  replays everything.  The source has a per-process credit: a partition
  pauses (returns an empty batch, which Bytewax asks again for at once)
  while more than ``max_in_flight`` consumed messages are not yet
  processed.  Epochs then stay short on a backlog, commits stay regular and
  memory stays bounded.
* **confluent-kafka's messages, unwrapped** (see :class:`_Partition`).

Guarantee: as ``KafkaSource``'s -- offsets are snapshotted per epoch, so it
"can support exactly-once processing" together with our Delta sinks.

Credit is per process.  With several processes (``-i/-a``) a partition's
messages may be processed in another process, so pass ``max_in_flight=None``
there (no flow control).

The source is also how a run stops cleanly (:func:`request_stop`, from a
signal handler): every partition reports end-of-input at its next read, so
Bytewax finishes the flow as at the end of a topic -- the last epoch is
committed, the gate publishes it, the offsets are snapshotted.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

__all__ = ["FlowControl", "FlowControlledKafkaSource", "request_stop", "stop_requested"]

_STOP = threading.Event()


def request_stop() -> None:
    """Ask every source partition in this process to end its input (signal-safe)."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


class FlowControl:
    """Counts messages consumed but not yet processed, in this process."""

    def __init__(self, max_in_flight: int | None) -> None:
        self.max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._consumed = 0
        self._completed = 0

    @property
    def in_flight(self) -> int:
        return self._consumed - self._completed

    def may_consume(self) -> bool:
        return self.max_in_flight is None or self.in_flight < self.max_in_flight

    def consumed(self, count: int) -> None:
        with self._lock:
            self._consumed += count

    def completed(self, count: int) -> None:
        with self._lock:
            self._completed += count


class _SharedConsumer:
    """One confluent-kafka consumer for all the partitions a worker reads.

    Why: Bytewax's ``KafkaSource`` gives every partition a consumer of its
    own, so 8 partitions make 8 librdkafka clients, each long-polling the
    broker on its own.  On the embedded broker (Tansu) that put ~140 ms at
    the median and ~250 ms at p95 between a message's produce and its
    arrival (a bare probe at 10k messages/s, 8 partitions); one consumer for
    all of them, fetching with a 50 ms wait, receives in 15 / 33 ms.  (With 8
    consumers a short wait overloads the broker: p95 0.8 s.)  It also means
    one prefetch queue and one set of librdkafka threads instead of 8.

    A partition's messages wait in its own queue until its Bytewax partition
    asks for them; what a partition has handed on is its snapshot, so the
    queued ones are read again after a restart, as with Bytewax's source.
    A partition whose queue holds a batch is paused until it is asked for
    it: one consumer's fetches otherwise run ahead on whichever partition
    the broker answers first, while the others starve (a crash test's
    replay queued most of one partition and emitted 17M window rows).
    """

    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self._consumer = Consumer(config)
        self._batch_size = batch_size
        self._queues: dict[tuple[str, int], deque[Message]] = {}
        self._ended: set[tuple[str, int]] = set()
        self._paused: set[tuple[str, int]] = set()
        self._users = 0

    def add(self, topic: str, partition: int, offset: int) -> None:
        """Start reading a partition at ``offset`` (an offset or OFFSET_BEGINNING/END)."""
        self._queues[(topic, partition)] = deque()
        self._consumer.incremental_assign([TopicPartition(topic, partition, offset)])
        self._users += 1

    def take(self, key: tuple[str, int]) -> tuple[list[Message], bool]:
        """Up to a batch of the partition's messages, and whether it reached its end."""
        queue = self._queues[key]
        if not queue and key not in self._ended:
            self._fetch()
        batch = [queue.popleft() for _ in range(min(len(queue), self._batch_size))]
        if key in self._paused and len(queue) < self._batch_size:
            # librdkafka fetches again from after the last message it handed us.
            self._paused.discard(key)
            self._consumer.resume([TopicPartition(*key)])
        return batch, not queue and key in self._ended

    def _fetch(self) -> None:
        # A batch for every partition at once, as one consumer per partition
        # would read in a round of Bytewax's: a batch per fetch made each
        # round (and the window rows emitted per round) ~6x smaller, and the
        # flow 40% slower.
        full = []
        for msg in self._consumer.consume(self._batch_size * len(self._queues), 0.001):
            key: Any = (msg.topic(), msg.partition())
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._ended.add(key)
                    continue
                raise RuntimeError(f"error consuming from Kafka topic {key[0]!r}: {error}")
            if key in self._ended:  # past an end that already stopped the partition
                continue
            queue = self._queues[key]
            queue.append(msg)
            if len(queue) == self._batch_size and key not in self._paused:
                full.append(key)
        if full:
            self._paused.update(full)
            self._consumer.pause([TopicPartition(*key) for key in full])

    def queued(self) -> dict[tuple[str, int], int]:
        """Messages waiting per partition (for tests)."""
        return {key: len(queue) for key, queue in self._queues.items()}

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._consumer.close()


class _Partition(StatefulSourcePartition[Message, int]):
    """One Kafka partition, read through its worker's shared consumer, with flow control.

    Same semantics as Bytewax 0.21.1's partition (``raise_on_errors=True``):
    the snapshot is the next offset to hand on, the end of the partition
    (without ``tail``) ends its input at the next read, and any other error
    stops the flow.  Messages are handed on as confluent-kafka's ``Message``:
    Bytewax's ``KafkaSourceMessage`` wrapper cost eight method calls and an
    object per message (7% of the flow).
    """

    def __init__(
        self, shared: _SharedConsumer, key: tuple[str, int], offset: int, control: FlowControl
    ) -> None:
        self._shared = shared
        self._key = key
        self._offset = offset
        self._control = control
        self._ended = False
        shared.add(key[0], key[1], offset)

    def next_batch(self) -> list[Message]:
        if _STOP.is_set() or self._ended:
            raise StopIteration  # Bytewax: this partition's input is complete
        if not self._control.may_consume():
            return []
        batch, self._ended = self._shared.take(self._key)
        if batch:
            last = batch[-1].offset()
            assert last is not None  # a consumed message has one
            self._offset = last + 1
            self._control.consumed(len(batch))
        return batch

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._shared.release()


class FlowControlledKafkaSource(FixedPartitionedSource[Message, int]):
    """Kafka partitions as Bytewax partitions: one consumer per worker, with flow control.

    Partitions are Bytewax's (``"<partition>-<topic>"``, resumable from the
    next offset), so recovery stores of Bytewax's ``KafkaSource`` resume here.
    """

    def __init__(
        self,
        brokers: list[str],
        topics: list[str],
        *,
        control: FlowControl,
        tail: bool = True,
        starting_offset: int = OFFSET_BEGINNING,
        add_config: dict[str, Any] | None = None,
        batch_size: int = 1000,
    ) -> None:
        self._topics = topics
        self._control = control
        self._starting_offset = starting_offset
        self._batch_size = batch_size
        self._admin_config = {"bootstrap.servers": ",".join(brokers), **(add_config or {})}
        self._consumer_config = {
            # Offsets live in Bytewax's snapshots (and Delta's app transactions).
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "enable.partition.eof": str(not tail).lower(),
            # One fetch for all of a worker's partitions, answered within 50 ms
            # (_SharedConsumer); an --kafka-option may say otherwise.
            "fetch.wait.max.ms": 50,
            **self._admin_config,
        }
        self._shared: dict[int, _SharedConsumer] = {}
        self._lock = threading.Lock()

    def list_parts(self) -> list[str]:
        """Every partition of every topic (one metadata call per topic)."""
        admin = AdminClient(self._admin_config)
        parts: list[str] = []
        for topic in self._topics:
            metadata = admin.list_topics(topic).topics[topic]
            if metadata.error is not None:
                raise RuntimeError(
                    f"error listing partitions for Kafka topic {topic!r}: {metadata.error.str()}"
                )
            parts.extend(f"{index}-{topic}" for index in metadata.partitions)
        return parts

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[Message, int]:
        index, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise RuntimeError(f"cannot resume partition {for_part!r}: not of {self._topics}")
        # Workers build and read their partitions on their own threads.
        with self._lock:
            shared = self._shared.get(threading.get_ident())
            if shared is None or shared._users == 0:
                shared = self._shared[threading.get_ident()] = _SharedConsumer(
                    dict(self._consumer_config), self._batch_size
                )
        offset = self._starting_offset if resume_state is None else resume_state
        return _Partition(shared, (topic, int(index)), offset, self._control)
