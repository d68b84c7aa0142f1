"""``orderhealth status`` and the run's structured logs, against a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from dataflows.interpreter_tuning import interpreter_build
from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS, DEAD_LETTER, HEALTH_METRICS
from orderhealth.generator import GeneratorConfig
from orderhealth.kafka import produce
from tests.factories import event
from tests.integration.conftest import Kafka, load_topic, run_command

pytestmark = pytest.mark.integration


def _status(broker: Kafka, topic: str, lakehouse: Path) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orderhealth",
            "status",
            "--json",
            "--lakehouse",
            str(lakehouse),
            "--bootstrap-servers",
            broker.bootstrap_servers,
            "--topic",
            topic,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_status_and_logs_report_what_the_tables_hold(broker: Kafka, tmp_path: Path) -> None:
    config = GeneratorConfig(events=6_000, seed=31, bad_fraction=0.02)
    topic = load_topic(broker, config, partitions=3)
    lakehouse = tmp_path / "lake"
    run = subprocess.run(
        [*run_command(broker, topic, lakehouse), "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

    # Structured logs: one JSON object per line, epochs add up, a run_end summary.
    records = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    epochs = [r for r in records if r["event"] == "epoch"]
    (end,) = [r for r in records if r["event"] == "run_end"]
    dead = read_table(str(lakehouse), DEAD_LETTER).to_pylist()
    bronze = read_table(str(lakehouse), BRONZE_EVENTS, ["offset"]).num_rows
    assert sum(e["consumed"] for e in epochs) == end["consumed"] == config.events
    assert sum(e["valid"] for e in epochs) == end["valid"] == bronze
    assert sum(e["dead_lettered"] for e in epochs) == end["dead_lettered"] == len(dead) > 0
    published = read_table(str(lakehouse), HEALTH_METRICS, ["window_size"]).num_rows
    gate_rows = sum(r["rows"] for r in records if r["event"] == "gate_run")
    assert end["published_rows"] == gate_rows >= published > 0
    assert end["outcome"] == "finished" and end["quarantined_rows"] == 0
    assert end["core"] in ("native", "python") and "Streaming core" in run.stdout
    # `make install` installs jemalloc; the command re-executes itself under it.
    assert end["allocator"] == "jemalloc" and "Allocator" in run.stdout
    # The CPython build is named (the run was this interpreter, re-executed).
    assert end["interpreter"] == interpreter_build() and "Interpreter" in run.stdout
    assert "Run finished" in run.stdout and f"{config.events:,}" in run.stdout
    # A one-off run's gate yields the CPU to the event thread (as the OS reports it).
    (ready,) = [r for r in records if r["event"] == "gate_ready"]
    assert ready["nice"] == 10

    state = _status(broker, topic, lakehouse)
    reasons = Counter(f"{r['reason']} ({r['rule']})" if r["rule"] else r["reason"] for r in dead)
    assert state["dead_letters"] == dict(reasons)
    assert end["dead_letter_reasons"] == Counter(r["rule"] or r["reason"] for r in dead)
    partitions = state["partitions"]
    assert isinstance(partitions, list) and len(partitions) == 3
    assert all(p["lag"] == 0 for p in partitions), partitions
    assert state["quarantined_batches"] == 0
    assert state["events_in_bronze"] == bronze
    assert state["watermark"] is not None
    windows = {w["window_size"]: w for w in state["windows"]}  # type: ignore[attr-defined]
    assert set(windows) == {"1m", "1h", "1d"}
    assert windows["1m"]["last_final_end"] and windows["1d"]["latest_provisional_end"]

    # New events the flow has not read yet show up as lag.
    more = [(b"LAG-1", json_bytes) for json_bytes in _events("LAG-1", 7)]
    assert produce(broker.bootstrap_servers, topic, iter(more)) == 7
    lagging = _status(broker, topic, lakehouse)
    assert sum(p["lag"] for p in lagging["partitions"]) == 7  # type: ignore[attr-defined]


def _events(order_id: str, n: int) -> list[bytes]:
    return [
        msgspec.json.encode(event("ORDER_CREATED", order_id, event_id=f"{order_id}-{i}"))
        for i in range(n)
    ]
