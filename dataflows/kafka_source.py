"""Our wrapper around Bytewax's KafkaSource: the same source, with flow control.

It also hands on confluent-kafka's messages unwrapped (:func:`_read_messages`).

Bytewax (timely) has no backpressure between an input and slower downstream
steps: on a backlog the source reads the whole topic into the first epoch,
so nothing is committed until the end and a crash replays everything.  The
wrapper gives the source a per-process credit: it pauses (returns an empty
batch, which Bytewax retries after 1 ms) while more than ``max_in_flight``
consumed messages are not yet processed.  Epochs then stay short on a
backlog, commits stay regular and memory stays bounded.

Guarantee: unchanged from ``KafkaSource`` -- offsets are snapshotted per epoch,
so it "can support exactly-once processing" together with our Delta sinks.

It also keeps the partitions together in event time (``max_skew_us``): a
partition whose processed events run more than that ahead of a partition
that still has a backlog pauses until the laggard catches up.  The global
watermark is the slowest partition's, so without this a partition read
faster than the others -- on a busier worker, or just first -- keeps every
window it has passed open: on a backlog, each of its batches re-emitted
provisional rows over days of windows and the gate checked them all again.
A partition with nothing more to read right now (caught up, or at the end)
never holds the others back, so a quiet partition cannot stall the stream.
With alignment a partition also has at most one read in flight, so its
event time is known before it reads again.

Alignment is for several workers in a process: one worker reads its
partitions in turn, which keeps them together already, and pausing one
there only cost (on the bench's backlog: -10% events/s, +45% provisional
rows).  With two workers it took the window step from 3.7-5.3M rows to
2.7-3.0M per 400k events, and throughput up by 31% (docs/scaling.md).

Credit and alignment are per process.  With several processes (``-i/-a``) a
partition's messages may be processed in another process, so pass
``max_in_flight=None`` and ``max_skew_us=None`` there (no flow control).

The wrapper is also how a run stops cleanly (:func:`request_stop`, from a
signal handler): every partition reports end-of-input at its next read, so
Bytewax finishes the flow as at the end of a topic -- the last epoch is
committed, the gate publishes it, the offsets are snapshotted.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from lakehouse.writer import stream_name

__all__ = [
    "CONSUMER_DEFAULTS",
    "FlowControl",
    "FlowControlledKafkaSource",
    "request_stop",
    "stop_requested",
]

_STOP = threading.Event()


def request_stop() -> None:
    """Ask every source partition in this process to end its input (signal-safe)."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


class _Stream:
    """What flow control knows of one partition (``topic/partition``)."""

    __slots__ = ("backlog", "event_us", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0
        #: Newest event time its processed events reached (None: none yet).
        self.event_us: int | None = None
        #: Whether its last read left more to read right away.
        self.backlog = True


class FlowControl:
    """Counts messages consumed but not yet processed, and aligns partitions in event time."""

    def __init__(self, max_in_flight: int | None, max_skew_us: int | None = None) -> None:
        self.max_in_flight = max_in_flight
        #: How far (us) a partition's event time may run ahead of a partition
        #: with a backlog; None: no alignment.
        self.max_skew_us = max_skew_us
        self._lock = threading.Lock()
        self._consumed = 0
        self._completed = 0
        self._streams: dict[str, _Stream] = {}

    @property
    def in_flight(self) -> int:
        return self._consumed - self._completed

    def may_consume(self) -> bool:
        return self.max_in_flight is None or self.in_flight < self.max_in_flight

    def may_read(self, stream: str) -> bool:
        """Whether ``stream`` may read now: credit left, and not ahead in event time."""
        if not self.may_consume():
            return False
        if self.max_skew_us is None:
            return True
        me = self._streams.get(stream)
        if me is None:
            return True
        if me.in_flight > 0:
            return False  # its event time is not known yet
        if me.event_us is None:
            return True
        limit = me.event_us - self.max_skew_us
        # Under the lock: another worker's thread may add a stream meanwhile.
        with self._lock:
            return not any(
                other is not me
                and other.backlog  # a laggard with more to read: let it catch up
                and (other.event_us is None or other.event_us < limit)
                for other in self._streams.values()
            )

    def consumed(self, count: int, stream: str | None = None, *, backlog: bool = True) -> None:
        with self._lock:
            self._consumed += count
            if stream is not None:
                state = self._stream(stream)
                state.in_flight += count
                state.backlog = backlog

    def completed(self, count: int, stream: str | None = None) -> None:
        with self._lock:
            self._completed += count
            if stream is not None:
                self._stream(stream).in_flight -= count

    def advanced(self, stream: str, event_us: int | None) -> None:
        """``stream``'s processed events reached ``event_us`` (its newest event time)."""
        if event_us is not None:
            with self._lock:
                self._stream(stream).event_us = event_us

    def _stream(self, name: str) -> _Stream:
        state = self._streams.get(name)
        if state is None:
            state = self._streams[name] = _Stream()
        return state


#: What :func:`_read_messages` uses of Bytewax's source partition.
_INTERNALS = (
    "_eof",
    "_consumer",
    "_batch_size",
    "_topic",
    "_part_idx",
    "_offset",
    "_raise_on_errors",
)


def _read_messages(part: Any) -> list[Message]:
    """``_KafkaSourcePartition.next_batch`` of Bytewax 0.21.1, handing on the messages as they are.

    Bytewax wraps every message in a ``KafkaSourceMessage`` dataclass (eight
    method calls and an object per message, 7% of the flow); the flow reads
    the few fields it needs from confluent-kafka's ``Message`` directly.
    Same state and semantics as Bytewax's (``raise_on_errors=True``): the
    next offset to read is the snapshot, end-of-partition ends the input at
    the next read, any other error stops the flow.  Bytewax is pinned, and
    building a partition fails loudly if these internals move (:data:`_INTERNALS`).
    """
    if part._eof:
        raise StopIteration
    batch: list[Message] = []
    for msg in part._consumer.consume(part._batch_size, 0.001):
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                part._eof = True
                break
            raise RuntimeError(f"error consuming from Kafka topic {part._topic!r}: {error}")
        batch.append(msg)
    if batch:
        last = batch[-1].offset()
        assert last is not None  # a consumed message has one
        part._offset = last + 1
    return batch


class _FlowControlledPartition(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any], control: FlowControl) -> None:
        self._inner = inner
        self._control = control
        part: Any = inner
        #: The stream name of dataflows.partition_processor (``topic/partition``).
        self._stream = stream_name(part._topic, part._part_idx)
        self._partition = TopicPartition(part._topic, part._part_idx)

    def next_batch(self) -> list[Message]:
        if _STOP.is_set():
            raise StopIteration  # Bytewax: this partition's input is complete
        if not self._control.may_read(self._stream):
            return []
        batch = _read_messages(self._inner)
        self._control.consumed(len(batch), self._stream, backlog=self._backlog(len(batch)))
        return batch

    def _backlog(self, read: int) -> bool:
        """Whether more is there to read right away (the broker's high watermark).

        The high watermark comes with every fetch (``cached=True``: no broker
        call).  Until one is known, a full read counts as a backlog.
        """
        part: Any = self._inner
        if part._eof:
            return False
        try:
            _low, high = part._consumer.get_watermark_offsets(self._partition, cached=True)
        except KafkaException:
            high = -1
        if high < 0:
            return bool(read >= part._batch_size)
        return bool(part._offset < high)

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


#: Consumer settings the wrapper changes from Bytewax's; ``add_config`` overrides them.
CONSUMER_DEFAULTS = {
    # Bytewax asks librdkafka for statistics every second, on every
    # partition's consumer, to feed a Prometheus lag gauge the flow does not
    # serve.  Each report (the whole client's state as JSON) was parsed on
    # the event thread: 8 a second, ~1% of its samples at full load.
    "statistics.interval.ms": "0",
}


class FlowControlledKafkaSource(KafkaSource):
    """``KafkaSource`` whose partitions pause while too much is in flight."""

    def __init__(
        self,
        brokers: list[str],
        topics: list[str],
        *,
        control: FlowControl,
        add_config: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        config = {**CONSUMER_DEFAULTS, **(add_config or {})}
        super().__init__(brokers, topics, add_config=config, **kwargs)
        self._control = control

    def build_part(  # type: ignore[override]  # returns a wrapper, not the private class
        self, step_id: str, for_part: str, resume_state: Any
    ) -> StatefulSourcePartition[Any, Any]:
        inner = super().build_part(step_id, for_part, resume_state)
        if not all(hasattr(inner, a) for a in _INTERNALS) or not inner._raise_on_errors:
            raise RuntimeError(
                "bytewax's Kafka source partition changed; dataflows/kafka_source.py reads "
                f"its internals {_INTERNALS} (written for bytewax 0.21.1, raise_on_errors=True)"
            )
        return _FlowControlledPartition(inner, self._control)
