"""Freshness: seconds from produce to "readable in the published table", at a steady rate.

    .venv/bin/python -m bench.freshness [--rate 10000] [--seconds 60] [--partitions 8] [--live]

A producer sends the demo's scenario mix at a steady rate into an empty
topic while ``orderhealth run`` tails it.  Each message's produce time is
recorded with its (partition, offset) on delivery.  A poller watches
``gold/health_metrics``: each new version's newest ``staging_version`` names
the staging commit it published, and that commit's Delta app transactions
name, per partition, the last Kafka offset whose effects it contains
(provisional rows of open windows included).  An event is fresh at the first
poll that sees its offset covered; freshness = that time - produce time.
A second poller watches the staging table's log the same way, which splits
each event's freshness into the flow's part (produce -> staged) and the
gate's (staged -> published): ``staged_p50_s``/``staged_p95_s`` and
``gate_p50_s``/``gate_p95_s`` in the result.

Two workloads, both at the same steady rate of messages:

* **replay** (the default, the bench's): the bench generator's stream at the
  demo's order rate, ~10 events per minute of *event* time.  Sent at 10k
  events/s, every wall second covers ~17 hours of event time, so every epoch
  opens new windows (~30,000 window rows per epoch at 10k events/s): a worst
  case for the window step and the gate.
* **live** (``--live``): event time advances with the wall clock, as in a
  real stream at this rate -- the generator's order rate is raised until its
  arrivals come at the measured rate, starting now.  The stream starts cold
  (no order older than the run), so it is mostly new orders: the fan-out into
  windows of a live stream, not its mix of stages.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import threading
import time
from bisect import bisect_left
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message, Producer
from deltalake import DeltaTable

from bench.throughput import bench_generator
from dataflows.allocator import reexec_with_allocator
from dataflows.decode_step import DecodeStep
from dataflows.kafka_source import FlowControl
from dataflows.timeutil import to_us
from lakehouse.reader import read_table
from lakehouse.tables import HEALTH_METRICS, HEALTH_METRICS_STAGING, table_uri
from lakehouse.writer import stream_name
from orderhealth.broker import EmbeddedBroker
from orderhealth.generator import GeneratorConfig, generate_messages
from orderhealth.kafka import client_config, ensure_topic
from orderhealth.pipeline import run_command
from quality.record_rules import RuleBook
from schemas.decode import EventDecoder, Rejection

__all__ = ["measure"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class _Coverage:
    """(time, offset covered per partition) each time the published table moves.

    A new version is noticed by its commit file appearing in the table's
    ``_delta_log`` (a ``stat`` every 10 ms), not by opening the table: a
    Delta commit is visible from the moment that file exists, and opening the
    table 20 times a second was 15% of this process's CPU -- taken from the
    pipeline it measures on this 2-core machine.  The table is opened only to
    read what a new version covers; the time recorded is when it was noticed.
    """

    #: The table watched.
    _table = HEALTH_METRICS

    def __init__(self, root: str, topic: str, partitions: int) -> None:
        self.root, self.topic, self.partitions = root, topic, partitions
        self.timeline: list[tuple[float, list[int]]] = []
        self._next_version = 0
        self._log = Path(table_uri(root, self._table)) / "_delta_log"
        self._index: dict[int, list[int]] = {}
        self.stop = threading.Event()

    def _commit_file(self, version: int) -> Path:
        return self._log / f"{version:020d}.json"

    def _new_versions(self) -> list[int]:
        """Versions committed since the last look, oldest first."""
        found = []
        while self._commit_file(self._next_version).exists():
            found.append(self._next_version)
            self._next_version += 1
        return found

    def _covered(self) -> list[int] | None:
        if not self._new_versions():
            return None
        versions = read_table(self.root, HEALTH_METRICS, ["staging_version"])
        if versions.num_rows == 0:
            return None
        staging = DeltaTable(
            table_uri(self.root, HEALTH_METRICS_STAGING),
            version=int(pc.max(versions["staging_version"]).as_py()),
        )
        versions_by_partition = [
            staging.transaction_version(_STAGING_APP + stream_name(self.topic, p))
            for p in range(self.partitions)
        ]
        return [-1 if v is None else int(v) for v in versions_by_partition]

    def run(self) -> None:
        while not self.stop.is_set():
            seen = time.time()
            covered = self._covered()
            if covered is not None:
                self.timeline.append((seen, covered))
            time.sleep(0.01)

    def fresh_at(self, partition: int, offset: int) -> float | None:
        """The first time the partition's coverage reached ``offset`` (coverage only grows)."""
        if partition not in self._index:
            self._index[partition] = [c[partition] for _, c in self.timeline]
        at = bisect_left(self._index[partition], offset)
        return self.timeline[at][0] if at < len(self.timeline) else None


#: App-transaction id prefix of the flow's staging commits (+ topic/partition).
_STAGING_APP = f"orderhealth:{HEALTH_METRICS_STAGING.path}:"


class _Staged(_Coverage):
    """The same for ``gold/health_metrics_staging``: when the flow had staged an offset.

    Splits each event's freshness into the flow's part (produce -> staged:
    the epoch, the events ahead of it, the staging commit) and the gate's
    (staged -> published: GX and the publishing MERGE).  Each new commit's
    app transactions are read from its log file, which the gate may prune
    later; a commit without them (maintenance) covers what the last one did.
    """

    _table = HEALTH_METRICS_STAGING

    def __init__(self, root: str, topic: str, partitions: int) -> None:
        super().__init__(root, topic, partitions)
        self._latest = [-1] * partitions
        self._partition_of = {_STAGING_APP + stream_name(topic, p): p for p in range(partitions)}

    def _covered(self) -> list[int] | None:
        versions = self._new_versions()
        if not versions:
            return None
        for version in versions:
            try:
                lines = self._commit_file(version).read_text().splitlines()
            except FileNotFoundError:  # pruned already: later commits cover more
                continue
            for line in lines:
                txn = json.loads(line).get("txn")
                partition = self._partition_of.get(txn["appId"]) if txn else None
                if partition is not None:
                    self._latest[partition] = max(self._latest[partition], int(txn["version"]))
        return list(self._latest)


#: The producer's tick: every tick sends the messages due by then.
_TICK_S = 0.005


def _dead_letters(
    messages: list[tuple[bytes | None, bytes]], rate: float, lead_s: float
) -> set[int]:
    """The indexes of the messages the flow dead-letters (its own decode step decides).

    Each message is judged with the produce time it will get (``lead_s``
    from now, then ``rate`` per second): the rule against event times ahead
    of the produce time must see a live stream's events as the flow will.

    A dead letter's contribution is a row of ``bronze/dead_letter``, never
    one of the published metrics: the staging coverage passes its offset
    only once a later valid message of its partition is staged, so one at a
    partition's end would never be seen -- and the drain would wait for it
    to its end.  They are produced like the others and counted apart.
    """
    decode = DecodeStep(EventDecoder(), RuleBook.load(), FlowControl(None))
    first_ms = (time.time() + lead_s) * 1000
    out = decode(
        [
            Message(
                topic="fresh",
                partition=0,
                offset=index,
                key=key,
                value=value,
                timestamp=(TIMESTAMP_CREATE_TIME, int(first_ms + index * 1000 / rate)),
            )
            for index, (key, value) in enumerate(messages)
        ]
    )
    return {int(row["offset"]) for row in out if isinstance(row, dict)}


def _steady(
    messages: list[tuple[bytes | None, bytes]],
    rate: float,
    seconds: float,
    producer: Producer,
    topic: str,
    sent: dict[tuple[int, int], float],
    dead: set[int] = frozenset(),  # type: ignore[assignment]
) -> int:
    """Produce ``messages`` at a steady ``rate`` for ``seconds``; record each one's produce time.

    The messages whose indexes are in ``dead`` (dead letters, see
    :func:`_dead_letters`) are produced but not recorded.

    The messages are generated before the clock starts and sent in ticks of
    5 ms (~50 messages at 10k/s), each message stamped with the time its
    tick sent it.  Generating them on the fly (11 us each) and waiting for
    every message's own due time (sub-millisecond sleeps, spinning) made
    this process use a third of a core -- on the same 2 cores as the
    pipeline whose freshness it measures.
    """
    total = min(len(messages), int(rate * seconds))
    count = 0
    started = time.monotonic()
    while count < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        at = time.time()

        def delivered(err: Any, msg: Any, at: float = at) -> None:
            if err is None:
                sent[(msg.partition(), msg.offset())] = at

        for index in range(count, due):
            key, value = messages[index]
            callback = None if index in dead else delivered
            producer.produce(topic, value=value, key=key, on_delivery=callback)
        producer.poll(0)
        count = due
        time.sleep(_TICK_S)
    producer.flush(60)
    return count


#: Arrivals per order in the first minute of a cold stream: its creation,
#: plus duplicates and the few orders approved within the minute (measured).
_LIVE_EVENTS_PER_ORDER = 1.05


def live_generator(events: int, rate: float, seed: int = 11) -> GeneratorConfig:
    """The demo's mix with event time advancing at the wall clock's pace at ``rate``."""
    return GeneratorConfig(
        events=events,
        seed=seed,
        scenario="warehouse_outage",
        bad_fraction=0.002,
        start=datetime.now(UTC).replace(microsecond=0),
        orders_per_minute=rate * 60 / _LIVE_EVENTS_PER_ORDER,
    )


#: Seconds the flow is given to set up before the producer starts.
_SETUP_S = 10


def measure(
    rate: float,
    seconds: float,
    partitions: int,
    drain_s: float = 900,
    run_options: tuple[str, ...] = (),
    live: bool = False,
) -> dict[str, Any]:
    """``run_options``: extra ``orderhealth run`` options (epoch and gate cadence)."""
    events = int(rate * seconds) + 1000
    config = live_generator(events, rate) if live else bench_generator(events, seed=11)
    messages = list(generate_messages(config))
    # Produced after the broker's and the flow's start and the gate's set-up.
    dead = _dead_letters(messages, rate, lead_s=_SETUP_S + 5)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = "fresh"
        ensure_topic(broker.bootstrap_servers, topic, partitions)
        flow = subprocess.Popen(
            run_command(broker.bootstrap_servers, topic, tmp, *run_options, once=False),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert flow.stdout is not None
        flow.stdout.readline()  # "Streaming ...": the flow is built
        time.sleep(_SETUP_S)  # the gate's set-up (GX) is paid once, before the clock starts
        coverage = _Coverage(tmp, topic, partitions)
        staged = _Staged(tmp, topic, partitions)
        pollers = [threading.Thread(target=c.run, daemon=True) for c in (coverage, staged)]
        for poller in pollers:
            poller.start()
        producer = Producer(
            {
                **client_config(broker.bootstrap_servers),
                "linger.ms": "5",
                "queue.buffering.max.messages": "1000000",
            }
        )
        sent: dict[tuple[int, int], float] = {}
        produced = _steady(messages, rate, seconds, producer, topic, sent, dead)
        # Flushed: closed now, not when the broker has gone (librdkafka would
        # log its lost connections over the bench's table).
        del producer
        deadline = time.monotonic() + drain_s
        last = {p: max((o for (q, o) in sent if q == p), default=-1) for p in range(partitions)}
        while time.monotonic() < deadline:
            if coverage.timeline and all(
                coverage.timeline[-1][1][p] >= last[p] for p in range(partitions)
            ):
                break
            time.sleep(0.5)
        for watched, poller in zip((coverage, staged), pollers, strict=True):
            watched.stop.set()
            poller.join()
        flow.send_signal(signal.SIGINT)  # a clean stop (orderhealth run handles it)
        flow.wait(timeout=120)
    delays, to_staging, in_gate = [], [], []
    unseen = 0
    for (partition, offset), at in sent.items():
        fresh = coverage.fresh_at(partition, offset)
        if fresh is None:
            unseen += 1
            continue
        delays.append(fresh - at)
        staged_at = staged.fresh_at(partition, offset)
        if staged_at is not None and staged_at <= fresh:
            to_staging.append(staged_at - at)
            in_gate.append(fresh - staged_at)
    return {
        "rate": rate,
        "seconds": seconds,
        "produced": produced,
        "dead_lettered": sum(1 for index in dead if index < produced),
        "measured": len(delays),
        "not_published_within_drain": unseen,
        "p50_s": _percentile(delays, 0.50) if delays else None,
        "p95_s": _percentile(delays, 0.95) if delays else None,
        "p99_s": _percentile(delays, 0.99) if delays else None,
        # The two parts, each over the events seen staged before published.
        "staged_p50_s": _percentile(to_staging, 0.50) if to_staging else None,
        "staged_p95_s": _percentile(to_staging, 0.95) if to_staging else None,
        "gate_p50_s": _percentile(in_gate, 0.50) if in_gate else None,
        "gate_p95_s": _percentile(in_gate, 0.95) if in_gate else None,
        "publications": len(coverage.timeline),
        "run_options": list(run_options),
        "workload": "live" if live else "replay",
        "event_time_span_s": _event_time_span(messages[:produced]),
    }


def _event_time_span(messages: list[tuple[bytes | None, bytes]]) -> float | None:
    """Seconds of event time the messages cover: 1st to 99th percentile of a sample.

    The percentiles leave out the malformed messages' fixed dates.
    """
    decoder = EventDecoder()
    times = sorted(
        to_us(event.event_time)
        for _key, value in messages[::100]
        if not isinstance(event := decoder.decode(value), Rejection)
    )
    if not times:
        return None
    return (times[int(0.99 * (len(times) - 1))] - times[int(0.01 * (len(times) - 1))]) / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--run-option", action="append", default=[], help="extra `orderhealth run` option"
    )
    parser.add_argument(
        "--live", action="store_true", help="event time advances with the wall clock"
    )
    args = parser.parse_args(argv)
    print(
        measure(
            args.rate,
            args.seconds,
            args.partitions,
            run_options=tuple(args.run_option),
            live=args.live,
        )
    )


if __name__ == "__main__":
    # The flow's allocator (dataflows.allocator), so figures compare alike.
    reexec_with_allocator()
    main()
