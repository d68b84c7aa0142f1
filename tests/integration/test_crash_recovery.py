"""SIGKILL the real flow process mid-stream; after restarts the tables equal an uncrashed run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from lakehouse.tables import BRONZE_EVENTS, table_uri
from orderhealth.generator import GeneratorConfig
from tests.integration.conftest import Kafka, all_tables, load_topic, run_command

pytestmark = pytest.mark.integration
EVENTS = 60_000


def _run_command(broker: Kafka, topic: str, lakehouse: Path, recovery: Path) -> list[str]:
    return run_command(
        broker,
        topic,
        lakehouse,
        "--recovery-dir",
        str(recovery),
        "--snapshot-interval",
        "0.5",
        "--max-in-flight",
        "4000",
    )


def _bronze_version(lakehouse: Path) -> int:
    try:
        return DeltaTable(table_uri(str(lakehouse), BRONZE_EVENTS)).version()
    except TableNotFoundError:
        return -1


def _run(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigkill_and_restart_leaves_tables_identical_to_uncrashed_run(
    broker: Kafka, tmp_path: Path
) -> None:
    topic = load_topic(
        broker, GeneratorConfig(events=EVENTS, seed=5, scenario="carrier_delay", bad_fraction=0.003)
    )

    reference = tmp_path / "reference"
    log = tmp_path / "flow.log"
    clean = _run(_run_command(broker, topic, reference, tmp_path / "rec-reference"), log)
    assert clean.wait(timeout=600) == 0, log.read_text()[-3000:]

    crashed = tmp_path / "crashed"
    command = _run_command(broker, topic, crashed, tmp_path / "rec-crashed")
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        process = _run(command, log)
        start_version = _bronze_version(crashed)
        # Let it commit at least one more epoch, then kill at a random moment
        # (random points land both inside a commit and between epochs).
        deadline = time.monotonic() + 120
        while _bronze_version(crashed) <= start_version and process.poll() is None:
            assert time.monotonic() < deadline, "flow made no progress"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.8))
        if process.poll() is not None:
            break  # finished before we could kill it
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        kills += 1
    assert kills >= 2, "the flow finished too fast to be killed"
    final = _run(command, log)
    assert final.wait(timeout=600) == 0, log.read_text()[-3000:]

    expected = all_tables(reference)
    actual = all_tables(crashed)
    for name, table in expected.items():
        assert table.num_rows > 0, name
        assert actual[name].num_rows == table.num_rows, name
        assert actual[name].equals(table), f"{name} differs after {kills} kills"
