"""The Bytewax dataflow: Kafka -> decode -> lifecycle -> windows -> Delta.

This module only wires steps together; the logic lives in pure modules
(:mod:`schemas.decode`, :mod:`dataflows.partition_processor`,
:mod:`dataflows.window_metrics`) and the I/O in :mod:`dataflows.sinks`.

Step ids read like a sentence::

    read_kafka -> decode -> split_valid -> track_lifecycle
      -> window_feed -> window_metrics -> write_health_metrics_staging -> quality gate
         -> gold/health_metrics | gold/quarantine, quality/validation_runs
      -> write_order_events / write_order_lifecycle / write_dead_letter
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any, TypeGuard, cast

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulBatchLogic
from confluent_kafka import Message

from dataflows.decode_step import DecodeStep
from dataflows.gatekeeper import gate_after_flush
from dataflows.kafka_source import FlowControl, FlowControlledKafkaSource
from dataflows.partition_processor import (
    PartitionBatch,
    PartitionProcessor,
    SourcedEvent,
    WindowFeed,
)
from dataflows.run_log import log_fields, run_stats
from dataflows.scheduling import DEFAULT_BACKGROUND_NICE
from dataflows.settings import HealthSettings
from dataflows.sinks import SINK_KEY, DeltaSink, RecordRuleSink
from dataflows.window_metrics import MetricColumns, MetricWindows
from lakehouse.publication import GateRun
from lakehouse.tables import BRONZE_EVENTS, DEAD_LETTER, HEALTH_METRICS_STAGING, ORDER_LIFECYCLE
from lakehouse.writer import Chunk, DeltaWriter, stream_name
from quality.record_rules import DROP, REJECT, VALID, RuleBook, Tallies
from schemas.decode import EventDecoder
from schemas.signing import KeyRing

__all__ = ["FlowConfig", "build_flow"]

log = logging.getLogger("orderhealth.run")


class FlowConfig(msgspec.Struct, frozen=True):
    """Everything the flow needs to know, resolved before it is built."""

    bootstrap_servers: str
    topic: str
    partitions: int
    lakehouse: str
    settings: HealthSettings
    #: False: stop at the end of the topic (demo, tests); True: run forever.
    tail: bool = True
    batch_size: int = 5000
    pipeline_id: str = "orderhealth"
    kafka_config: dict[str, str] = {}
    storage_options: dict[str, str] | None = None
    #: Record-level quality rules; None = quality/record_rules.toml.
    rules_path: str | None = None
    #: Consumed-but-unprocessed messages allowed per process; None = no limit
    #: (needed for multi-process runs, see dataflows.kafka_source).  With 8
    #: partitions, 40,000 lets every partition read a full ``batch_size``
    #: at once: fewer re-derivations of an order per event and fewer,
    #: larger window-step calls than 2,500-message reads (+10% events/s on
    #: one worker, +25% peak memory; docs/scaling.md).
    max_in_flight: int | None = 40_000
    #: Keep the partitions within the allowed lateness of each other in event
    #: time (dataflows.kafka_source): for several workers in one process.
    align_partitions: bool = False
    #: Seconds between quality-gate runs over the staged metrics (and one at
    #: the end).  A run has a fixed cost of ~0.1 s, on the gate's own process;
    #: what is staged after the last run is validated after the stream ends,
    #: so with 5 s a one-off run to the end of a topic waited seconds longer
    #: for publication (1 s: +2-8% events/s end to end, docs/scaling.md).
    gate_interval_s: float = 1.0
    #: Seconds between commits of the tables off the way to publication
    #: (bronze events, dead letters, lifecycle, record-rule runs), without
    #: recovery; 0 = every epoch, like staging.  Their rows wait that much
    #: longer to be readable, and the staging commit and the gate get the CPU.
    side_commit_interval_s: float = 0.0
    #: Nice value of the work the event thread does not wait for: the
    #: quality gate's process and the commits (without recovery); None:
    #: :attr:`background_nice_value`.
    background_nice: int | None = None

    @property
    def background_nice_value(self) -> int:
        """The background work's nice value: as set, else by whether the run tails.

        A one-off run is done when its last epoch is published, so its gate
        and commits yield the CPU to the event thread (+3% events/s on 2
        cores; dataflows.scheduling).  A tailed stream keeps them at the event
        thread's priority: the staging commit and the gate are on the way to
        publication, and at 10 p95 freshness fell behind (docs/scaling.md,
        "Background work yields").
        """
        if self.background_nice is not None:
            return self.background_nice
        return 0 if self.tail else DEFAULT_BACKGROUND_NICE

    #: Source systems that must sign their events, with their keys.
    keyring: KeyRing = KeyRing()
    #: Seconds behind (the newest message's produce time) from which the
    #: window step counts as catching up and holds back provisional rows that
    #: would be stale at once (:meth:`MetricWindows.apply_all`); held rows
    #: come out when final, once caught up, after this long without input, or
    #: at the end.  None: never hold.
    catch_up_lag_s: float | None = 5.0
    #: Pickle operator state at each epoch's end.  Bytewax asks for snapshots
    #: even without a recovery store and then discards them; pickling every
    #: open order per epoch cost 7% of a run, so runs without recovery skip it.
    snapshot_state: bool = True


#: A Kafka partition's events from one decode call, keyed by its stream.
PartitionEvents = tuple[str, list[SourcedEvent]]


def partition_batches(
    decoded: Iterable[SourcedEvent | dict[str, Any]],
) -> list[PartitionEvents | dict[str, Any]]:
    """The decode step's output as the flow hands it on: each Kafka partition's
    events as one keyed item, in offset order, and each dead-letter row alone.

    Bytewax runs its operators an item at a time: with an item per event, the
    valid/dead-letter branch and keying by partition were two Python calls
    per event (+1.6% end to end without them, docs/scaling.md).  A source
    batch is one Kafka partition's read, so this is nearly always one item.
    """
    groups: dict[tuple[str, int], list[SourcedEvent]] = {}
    out: list[PartitionEvents | dict[str, Any]] = []
    for item in decoded:
        if isinstance(item, SourcedEvent):
            key = (item.topic, item.partition)
            events = groups.get(key)
            if events is None:
                events = groups[key] = []
            events.append(item)
        else:
            out.append(item)
    out.extend((stream_name(*key), events) for key, events in groups.items())
    return out


def is_partition_events(item: PartitionEvents | dict[str, Any]) -> TypeGuard[PartitionEvents]:
    """Whether an item of :func:`partition_batches` is events (else a dead-letter row)."""
    return isinstance(item, tuple)


class _PartitionLogic(StatefulBatchLogic[list[SourcedEvent], PartitionBatch, bytes]):
    """Bytewax adapter around :class:`PartitionProcessor` (one per Kafka partition)."""

    def __init__(
        self,
        settings: HealthSettings,
        control: FlowControl,
        resume: bytes | None,
        *,
        snapshots: bool = True,
    ) -> None:
        self._settings = settings
        self._control = control
        self._snapshots = snapshots
        self._processor: PartitionProcessor | None = pickle.loads(resume) if resume else None

    def on_batch(self, values: list[list[SourcedEvent]]) -> tuple[Iterable[PartitionBatch], bool]:
        events = values[0] if len(values) == 1 else list(chain.from_iterable(values))
        if self._processor is None:
            first = events[0]
            self._processor = PartitionProcessor(first.topic, first.partition, self._settings)
        processor = self._processor
        result = processor.process(events)
        # Event time first: the stream may read again once nothing is in flight.
        self._control.advanced(processor.stream, processor.max_event_us)
        self._control.completed(len(events), processor.stream)
        return [result], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        # Pickled bytes are an immutable copy, as Bytewax requires.
        if not self._snapshots:
            return b""
        return pickle.dumps(self._processor, protocol=pickle.HIGHEST_PROTOCOL)


class _WindowLogic(StatefulBatchLogic[WindowFeed, Chunk, bytes]):
    """Bytewax adapter around :class:`MetricWindows` (one global instance).

    Rows held back while catching up come out, as a restate chunk
    (:class:`~lakehouse.writer.Chunk`), once no input has come for the
    catch-up lag, and at the end of the input.
    """

    def __init__(
        self,
        settings: HealthSettings,
        partitions: list[str],
        resume: bytes | None,
        *,
        snapshots: bool = True,
        catch_up_lag_s: float | None = None,
        published: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._windows: MetricWindows = (
            pickle.loads(resume) if resume else MetricWindows(settings, partitions)
        )
        if self._windows.restate_pending and published is not None:
            # What the staging table has: chunks up to there are replays.
            self._windows.restate_at = published()
        # This run's setting, whatever the snapshot's run had.
        self._windows.catch_up_lag_us = (
            None if catch_up_lag_s is None else round(catch_up_lag_s * 1_000_000)
        )
        self._quiet = timedelta(seconds=catch_up_lag_s or 0.0)
        self._flush_at: datetime | None = None
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        held = self._windows.holding
        self._flush_at = datetime.now(UTC) + self._quiet if held else None

    def _chunks(self, rows: MetricColumns, *, restate: bool = False) -> list[Chunk]:
        windows = self._windows
        run_stats.window_step(len(rows.get("window_size", ())), windows.held_back)
        return [Chunk(dict(windows.progress), rows, restate)] if rows else []

    def on_batch(self, values: list[WindowFeed]) -> tuple[Iterable[Chunk], bool]:
        rows = self._windows.apply_all(values, now_us=time.time_ns() // 1000)
        self._schedule_flush()
        return self._chunks(rows, restate=self._windows.restated), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self._flush_at

    def on_notify(self) -> tuple[Iterable[Chunk], bool]:
        return self._flush(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Chunk], bool]:
        return self._flush(), StatefulBatchLogic.RETAIN

    def _flush(self) -> list[Chunk]:
        self._flush_at = None
        if not (self._windows.holding or self._windows.restate_pending):
            return []
        return self._chunks(self._windows.flush(), restate=True)

    def snapshot(self) -> bytes:
        if not self._snapshots:
            return b""
        return pickle.dumps(self._windows, protocol=pickle.HIGHEST_PROTOCOL)


def _valid_tallies(batch: PartitionBatch) -> list[Tallies]:
    bronze = batch.bronze
    return [Tallies(batch.stream, bronze.offsets, VALID, bronze.warnings)]


def _dead_tally(row: dict[str, Any]) -> Tallies:
    stream = stream_name(row["topic"], row["partition"])
    if row["rule"] is not None:
        return Tallies(stream, [row["offset"]], DROP, [row["rule"]])
    return Tallies(stream, [row["offset"]], REJECT, [row["reason"]])


def _fair_batch_size(config: FlowConfig) -> int:
    """A partition's read size: at most its share of the in-flight credit.

    Bytewax polls the source partitions in turn; with a read size as large as
    the whole credit the first partition takes all of it every time and the
    others wait until it is drained -- the watermark (the slowest partition's)
    and so finality stall.  A share per partition keeps them moving together.
    """
    if config.max_in_flight is None:
        return config.batch_size
    return max(100, min(config.batch_size, config.max_in_flight // max(1, config.partitions)))


def build_flow(
    config: FlowConfig,
    *,
    on_consumed: Callable[[int], None] | None = None,
    on_commit: Callable[[str, int], None] | None = None,
    on_gate: Callable[[GateRun], None] | None = None,
) -> Dataflow:
    """Build the dataflow.  ``on_consumed``/``on_commit``/``on_gate`` feed progress displays."""
    decoder = EventDecoder(keyring=config.keyring)
    rules = RuleBook.load(Path(config.rules_path) if config.rules_path else None)
    settings = config.settings
    control = FlowControl(
        config.max_in_flight, settings.allowed_lateness_us if config.align_partitions else None
    )
    partitions = [stream_name(config.topic, p) for p in range(config.partitions)]

    # Only without recovery: with it, every table commits at every epoch's end.
    side_interval = 0.0 if config.snapshot_state else config.side_commit_interval_s

    def sink(spec: Any, mode: Any, after_flush: Any = None, *, side: bool = True) -> DeltaSink:
        return DeltaSink(
            config.lakehouse,
            spec,
            mode=mode,
            pipeline_id=config.pipeline_id,
            storage_options=config.storage_options,
            on_commit=on_commit,
            after_flush=after_flush,
            # Without recovery an epoch need not wait for its commits.
            background=not config.snapshot_state,
            commit_interval_s=side_interval if side else 0.0,
            background_nice=config.background_nice_value,
        )

    def gate_reported(run: GateRun) -> None:
        run_stats.gate_run(run.outcome, run.row_count)
        log_fields(
            log,
            logging.WARNING if run.outcome == "quarantined" else logging.INFO,
            "gate_run",
            batch_id=run.batch_id,
            run_id=run.run_id,
            outcome=run.outcome,
            rows=run.row_count,
            failed=list(run.failed),
            ms=round(run.duration_ms, 1),
        )
        if on_gate is not None:
            on_gate(run)

    def gate() -> Callable[[bool], None]:
        return gate_after_flush(
            config.lakehouse,
            pipeline_id=config.pipeline_id,
            storage_options=config.storage_options,
            interval_s=config.gate_interval_s,
            nice=config.background_nice_value,
            on_run=gate_reported,
        )

    flow = Dataflow("orderhealth")
    source = FlowControlledKafkaSource(
        [config.bootstrap_servers],
        [config.topic],
        tail=config.tail,
        batch_size=_fair_batch_size(config),
        add_config=dict(config.kafka_config),
        control=control,
    )
    # The wrapper hands on confluent-kafka's messages (dataflows.kafka_source).
    messages = cast("Stream[Message]", op.input("read_kafka", flow, source))
    decode = DecodeStep(decoder, rules, control, on_consumed)
    decoded = op.flat_map_batch("decode", messages, lambda batch: partition_batches(decode(batch)))
    split = op.branch("split_valid", decoded, is_partition_events)

    dead_letters = op.map("dead_letter_rows", split.falses, lambda row: (SINK_KEY, [row]))
    op.output("write_dead_letter", dead_letters, sink(DEAD_LETTER, "append"))

    # (Keyed by their stream already: partition_batches.)
    batches = op.stateful_batch(
        "track_lifecycle",
        split.trues,
        lambda resume: _PartitionLogic(settings, control, resume, snapshots=config.snapshot_state),
    )
    results = op.map("drop_partition_key", batches, lambda kv: kv[1])

    bronze = op.filter_map(
        "order_event_rows", results, lambda b: (SINK_KEY, b.bronze.table()) if b.bronze else None
    )
    op.output("write_order_events", bronze, sink(BRONZE_EVENTS, "append"))

    lifecycle = op.filter_map(
        "order_lifecycle_rows",
        results,
        lambda b: (
            (SINK_KEY, Chunk({b.stream: b.last_offset}, b.lifecycle)) if b.lifecycle else None
        ),
    )
    op.output("write_order_lifecycle", lifecycle, sink(ORDER_LIFECYCLE, "upsert"))

    # Per-rule counts of the record-level rules, into quality/validation_runs.
    valid_tallies = op.filter_map(
        "tally_valid", results, lambda b: (SINK_KEY, _valid_tallies(b)) if b.bronze else None
    )
    dead_tallies = op.map("tally_dead", split.falses, lambda row: (SINK_KEY, [_dead_tally(row)]))
    tallies = op.merge("record_rule_tallies", valid_tallies, dead_tallies)
    op.output(
        "write_record_rule_runs",
        tallies,
        RecordRuleSink(
            config.lakehouse,
            pipeline_id=config.pipeline_id,
            storage_options=config.storage_options,
            background=not config.snapshot_state,
            commit_interval_s=side_interval,
            background_nice=config.background_nice_value,
        ),
    )

    # Only the window step's part crosses to its worker (pickled, with -w > 1).
    feeds = op.map("window_feed", results, PartitionBatch.window_feed)
    to_windows = op.key_on("key_globally", feeds, lambda _b: "windows")
    chunks = op.stateful_batch(
        "window_metrics",
        to_windows,
        lambda resume: _WindowLogic(
            settings,
            partitions,
            resume,
            snapshots=config.snapshot_state,
            catch_up_lag_s=config.catch_up_lag_s,
            published=lambda: DeltaWriter(
                config.lakehouse,
                HEALTH_METRICS_STAGING,
                pipeline_id=config.pipeline_id,
                storage_options=config.storage_options,
            ).committed(partitions),
        ),
    )
    metrics = op.map("metric_rows", chunks, lambda kv: (SINK_KEY, kv[1]))
    op.output(
        "write_health_metrics_staging",
        metrics,
        sink(HEALTH_METRICS_STAGING, "upsert", gate, side=False),
    )
    return flow
