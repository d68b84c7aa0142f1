"""Stopping a tailing flow: SIGTERM (service managers) and SIGINT (Ctrl-C) end it cleanly.

The flow runs as a real process with SIGINT inherited *ignored*, as a
background job of a non-interactive shell gets it: before the fix such a
flow could not be stopped with SIGINT at all, and SIGTERM killed it without
a summary.  A clean stop ends the input like the end of a topic: the last
epoch is committed and published, and a restart finds nothing left to do.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS, DEAD_LETTER, HEALTH_METRICS
from orderhealth.generator import GeneratorConfig
from orderhealth.pipeline import run_command as pipeline_command
from tests.integration.conftest import Kafka, load_topic, run_to_end

pytestmark = pytest.mark.integration


def _rows(root: Path) -> int:
    try:
        return sum(
            read_table(str(root), spec, ["offset"]).num_rows
            for spec in (BRONZE_EVENTS, DEAD_LETTER)
        )
    except Exception:  # tables not created yet
        return 0


def _gate_processes(root: Path) -> list[str]:
    """Command lines of quality-gate children still serving ``root``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "dataflows.gatekeeper" in cmdline and str(root) in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_tailing_flow_stops_on_a_signal_and_a_restart_adds_nothing_twice(
    broker: Kafka, tmp_path: Path, signum: signal.Signals
) -> None:
    config = GeneratorConfig(events=3_000, seed=23, scenario="baseline", bad_fraction=0.01)
    topic = load_topic(broker, config)
    flow = subprocess.Popen(
        pipeline_command(broker.bootstrap_servers, topic, tmp_path, once=False),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 300
        while _rows(tmp_path) < config.events:  # every message committed: now idle, tailing
            assert flow.poll() is None, flow.communicate()[0]
            assert time.monotonic() < deadline, "the flow did not commit the topic"
            time.sleep(0.5)
        flow.send_signal(signum)
        output, _ = flow.communicate(timeout=120)
    finally:
        if flow.poll() is None:
            flow.kill()
    assert flow.returncode == 0, output
    assert f"{signum.name}: stopping after the messages in flight" in output
    assert "Run stopped after" in output
    assert "Traceback" not in output
    gone = time.monotonic() + 30  # the gate child exits once its stdin closes
    while _gate_processes(tmp_path) and time.monotonic() < gone:
        time.sleep(0.2)
    assert _gate_processes(tmp_path) == []
    published = read_table(str(tmp_path), HEALTH_METRICS, ["window_start"]).num_rows
    assert published > 0
    # A restart over the same lakehouse skips what the stopped run committed.
    run_to_end(broker, topic, tmp_path)
    assert _rows(tmp_path) == config.events
    assert read_table(str(tmp_path), HEALTH_METRICS, ["window_start"]).num_rows == published
