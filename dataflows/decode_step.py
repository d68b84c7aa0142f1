"""The flow's decode step: Kafka messages to events or dead-letter rows, a batch at a time.

Each message is decoded and validated against the contract
(:class:`~schemas.decode.EventDecoder`), then checked by the record rules
(:class:`~quality.record_rules.RuleBook`).  A valid event goes on as a
:class:`~dataflows.partition_processor.SourcedEvent` with its Kafka
coordinates; anything else becomes a ``bronze/dead_letter`` row with its
reason, and its message is handed back to flow control at once.

The step takes the source's whole batch in one call (Bytewax's
``flat_map_batch``): a per-message step paid a Python call, a generator
step and a progress callback for each of the ~20,000 messages a second.
``bench.core`` runs this same class, so its decode figure is the flow's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from dataflows.kafka_source import FlowControl
from dataflows.native_decode import decode_maker
from dataflows.partition_processor import SourcedEvent
from lakehouse.writer import stream_name
from quality.record_rules import RuleBook
from schemas.decode import EventDecoder, Rejection

__all__ = ["DecodeStep", "dead_letter_row", "is_event"]


def is_event(item: SourcedEvent | dict[str, Any]) -> TypeGuard[SourcedEvent]:
    """Whether the decode step's output is an event (else a dead-letter row)."""
    return isinstance(item, SourcedEvent)


def dead_letter_row(
    msg: Message,
    rejection: Rejection | None = None,
    *,
    rule: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """The ``bronze/dead_letter`` row of a rejected message, or one a rule dropped."""
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": msg.key(),
        "value": msg.value(),
        "reason": rejection.reason.value if rejection else "rule_violation",
        "rule": rule,
        "message": rejection.message if rejection else message,
        "field": rejection.field if rejection else None,
        "expected": rejection.expected if rejection else None,
        "got": rejection.got if rejection else None,
    }


class DecodeStep:
    """Messages -> :class:`SourcedEvent` or dead-letter row, in message order."""

    def __init__(
        self,
        decoder: EventDecoder,
        rules: RuleBook,
        control: FlowControl,
        on_consumed: Callable[[int], None] | None = None,
        core: str | None = None,
    ) -> None:
        """``core``: ``native`` or ``python`` (default: the process's, see
        :func:`~dataflows.native_core.core_name`)."""
        self._decoder = decoder
        self._rules = rules
        self._control = control
        self._on_consumed = on_consumed
        self._decode_all = decode_maker(self, core)

    @property
    def decoder(self) -> EventDecoder:
        """The contract's decoder (the native twin's maker reads its parts)."""
        return self._decoder

    @property
    def rules(self) -> RuleBook:
        """The record rules (the native twin's maker reads their checks)."""
        return self._rules

    def __call__(self, messages: list[Message]) -> list[SourcedEvent | dict[str, Any]]:
        if self._on_consumed is not None:
            self._on_consumed(len(messages))
        return self._decode_all(messages)

    def decode_all(self, messages: list[Message]) -> list[SourcedEvent | dict[str, Any]]:
        """The definition of the step (its native twin: :mod:`dataflows.native_decode`)."""
        decode, check = self._decoder.decode, self._rules.check
        out: list[SourcedEvent | dict[str, Any]] = []
        append = out.append
        for msg in messages:
            result = decode(msg.value(), msg.key(), require_key=True)
            if isinstance(result, Rejection):
                append(self._dead(msg, dead_letter_row(msg, result)))
                continue
            # The Kafka message timestamp in us (the rules' clock), if the
            # broker has one; read here, not in a function called per message.
            kind, ms = msg.timestamp()
            produced = None if kind == TIMESTAMP_NOT_AVAILABLE else int(ms) * 1000
            verdict = check(result, produced)
            if verdict.dropped_by is not None:
                row = dead_letter_row(msg, rule=verdict.dropped_by, message=verdict.message)
                append(self._dead(msg, row))
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None  # consumed
            append(SourcedEvent(result, topic, partition, offset, verdict.warnings, produced))
        return out

    def _dead(self, msg: Message, row: dict[str, Any]) -> dict[str, Any]:
        """A dead letter leaves flow control's count now: nothing downstream completes it."""
        topic, partition = msg.topic(), msg.partition()
        assert topic is not None and partition is not None  # consumed
        self._control.completed(1, stream_name(topic, partition))
        return row
