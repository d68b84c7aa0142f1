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

Credit is per process.  With several processes (``-i/-a``) a partition's
messages may be processed in another process, so pass ``max_in_flight=None``
there (no flow control).

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
from confluent_kafka import KafkaError, Message

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


#: What :func:`_read_messages` uses of Bytewax's source partition.
_INTERNALS = ("_eof", "_consumer", "_batch_size", "_topic", "_offset", "_raise_on_errors")


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

    def next_batch(self) -> list[Message]:
        if _STOP.is_set():
            raise StopIteration  # Bytewax: this partition's input is complete
        if not self._control.may_consume():
            return []
        batch = _read_messages(self._inner)
        self._control.consumed(len(batch))
        return batch

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
