"""SIGKILL the real flow at chosen points; after restarts every table equals an uncrashed run.

The flow runs as ``orderhealth run --once`` with Bytewax recovery on, in its
own process group (the quality gate is its child).  Its debug log
(``--log-format json --log-level DEBUG``) announces every Delta commit before
it starts (``delta_commit_start``) and after it ends (``delta_commit``), in the
flow and in the gate, so the test can aim: it kills the whole group the moment
a chosen commit starts -- inside the commit -- or while no commit is in
progress -- between epochs.  Where each kill landed is then read from the
tables themselves: a commit that had not reached the Delta log leaves its
data files written but unreferenced.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from deltalake import DeltaTable

from lakehouse.tables import TABLES, table_uri
from orderhealth.generator import GeneratorConfig
from tests.integration.conftest import Kafka, all_tables, load_topic, run_command

pytestmark = pytest.mark.integration

EVENTS = 300_000
PARTITIONS = 6
#: Kills aimed at the start of a commit land after its Delta log entry when
#: the commit outruns this process (a fast append, both cores busy with the
#: uncrashed run beside it); such a kill still counts, and the same target
#: is aimed again, at most this many times in all.
AIMS = 3


@dataclass(frozen=True)
class Target:
    """Where to kill: at the start of the n-th commit of ``table``, or between commits."""

    name: str
    table: str | None  # None: between commits
    after_epochs: int  # let the restarted flow make progress first
    #: Seconds to wait after the commit starts (a range): 0 kills before any
    #: data file is written; a short delay into a staging append (tens of ms
    #: here) lands while its files are being written.  Longer delays came
    #: after the log entry once the commits got faster.
    delay_s: tuple[float, float] = (0.0, 0.0)


@dataclass
class Landing:
    target: str
    table: str | None
    in_commit: bool  # the commit had started and not ended in the log
    committed: bool | None  # the Delta log already had the commit
    orphan_files: int  # data files written after the last commit, so never in the log
    pid: int


TARGETS = [
    Target("bronze append", "bronze/order_events", 3),
    Target("between epochs", None, 4),
    Target("staging append", "gold/health_metrics_staging", 3, delay_s=(0.0, 0.02)),
    Target("gate publication (child process)", "gold/health_metrics", 1),
    Target("lifecycle merge", "silver/order_lifecycle", 5),
    Target("between epochs", None, 6),
]


def _command(broker: Kafka, topic: str, lakehouse: Path, recovery: Path) -> list[str]:
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
        # Always catching up: the window step holds rows back, so the kills
        # also land while rows are held, and restores restate them.
        "--catch-up-lag",
        "0.001",
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
    )


def _start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # flow + gate child: one process group to kill
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _records(stream: IO[str]) -> Iterator[dict[str, Any]]:
    for line in stream:
        if line.startswith("{"):
            yield json.loads(line)


def _after_last_commit(lakehouse: Path, table: str) -> tuple[int, int]:
    """(Delta version, data files written after the newest log entry).

    Those files belong to the commit the kill interrupted: written, never
    referenced by the log, so readers never see them (``vacuum`` removes them).
    """
    spec = next(s for s in TABLES if s.path == table)
    uri = Path(table_uri(str(lakehouse), spec))
    version = DeltaTable(str(uri)).version()
    last_log = max(p.stat().st_mtime_ns for p in (uri / "_delta_log").glob("*.json"))
    written = [p for p in uri.rglob("*.parquet") if p.stat().st_mtime_ns > last_log]
    return version, len(written)


def _kill_at(
    process: subprocess.Popen[str], target: Target, lakehouse: Path, rng: random.Random
) -> Landing | None:
    """Follow the log until ``target`` comes up, kill the group there; None if the run ended."""
    assert process.stderr is not None
    epochs = 0
    open_commits: dict[str, dict[str, object]] = {}
    skip = rng.randint(0, 2)  # which matching commit: not always the first
    for record in _records(process.stderr):
        event = record.get("event")
        if event == "epoch":
            epochs += 1
        elif event == "delta_commit_start":
            open_commits[record["table"]] = record
            if target.table == record["table"] and epochs >= target.after_epochs:
                if skip:
                    skip -= 1
                    continue
                time.sleep(rng.uniform(*target.delay_s))
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
                version, orphans = _after_last_commit(lakehouse, record["table"])
                return Landing(
                    target.name,
                    record["table"],
                    in_commit=True,
                    committed=version > record["version_before"],
                    orphan_files=orphans,
                    pid=record["pid"],
                )
        elif event == "delta_commit":
            open_commits.pop(record["table"], None)
            if target.table is None and epochs >= target.after_epochs and not open_commits:
                time.sleep(rng.uniform(0.0, 0.05))
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
                return Landing(target.name, None, False, None, 0, record["pid"])
    process.wait(timeout=60)
    return None


def _describe(hit: Landing) -> str:
    if not hit.in_commit:
        return f"{hit.target}: no Delta commit in progress"
    log = "had already recorded it" if hit.committed else "did not have it yet"
    return (
        f"{hit.target}: inside the {hit.table} commit; the Delta log {log}; "
        f"{hit.orphan_files} data file(s) of it written, never referenced"
    )


def test_sigkill_inside_commits_and_between_epochs_leaves_every_table_identical(
    broker: Kafka, tmp_path: Path
) -> None:
    topic = load_topic(
        broker,
        GeneratorConfig(events=EVENTS, seed=5, scenario="carrier_delay", bad_fraction=0.003),
        partitions=PARTITIONS,
    )
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    started = time.monotonic()
    # The uncrashed run goes on meanwhile; nothing here depends on timing.
    clean = subprocess.Popen(
        _command(broker, topic, reference, tmp_path / "rec-reference"),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "reference.log").open("w"),
    )
    command = _command(broker, topic, crashed, tmp_path / "rec-crashed")
    rng = random.Random(2026)
    landings: list[Landing] = []
    for target in TARGETS:
        for _attempt in range(AIMS):
            landing = _kill_at(_start(command), target, crashed, rng)
            assert landing is not None, f"the flow finished before the kill at {target.name}"
            landings.append(landing)
            if not landing.committed:
                break  # landed where aimed; a kill after the log entry is aimed again
    final = _start(command)
    assert final.stderr is not None
    tail = final.stderr.read()
    assert final.wait(timeout=1200) == 0, tail[-3000:]
    assert clean.wait(timeout=1200) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    elapsed = time.monotonic() - started

    report = "\n".join(f"kill {i}: {_describe(hit)}" for i, hit in enumerate(landings, 1))
    print(f"\n{report}\n{len(landings)} kills, {EVENTS:,} events, {PARTITIONS} partitions")
    print(f"crashed run with restarts + reference run: {elapsed:.0f} s")
    inside = [hit for hit in landings if hit.in_commit and not hit.committed]
    assert len(inside) >= 3, report  # cut off before the Delta log entry
    assert any(not hit.in_commit for hit in landings), report

    expected, actual = all_tables(reference), all_tables(crashed)
    assert expected.keys() == actual.keys()
    for name, table in expected.items():
        assert table.num_rows > 0, name
        assert actual[name].num_rows == table.num_rows, f"{name} after kills:\n{report}"
        assert actual[name].equals(table), f"{name} differs after kills:\n{report}"
