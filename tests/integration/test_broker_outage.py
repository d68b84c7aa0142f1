"""Broker trouble: unreachable at start (a clear, bounded error); paused mid-stream (waited out)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS
from orderhealth.broker import EmbeddedBroker, free_port
from orderhealth.generator import GeneratorConfig
from tests.integration.conftest import (
    ExternalKafka,
    all_tables,
    load_topic,
    run_command,
    run_to_end,
)

pytestmark = pytest.mark.integration

#: Keep the consumer's prefetch and the flow's in-flight credit small, so that
#: a paused broker starves the flow whatever its speed (by default librdkafka
#: buffers up to 64 MB -- the whole topic here -- and the flow takes 20,000
#: messages ahead of its processing (40,000 now): at ~3k events/s it had all 60,000 before
#: the pause ended).
SMALL_PREFETCH = (
    "--kafka-option",
    "queued.max.messages.kbytes=256",
    "--kafka-option",
    "max.partition.fetch.bytes=16384",
    "--max-in-flight",
    "1000",
)


def test_an_unreachable_broker_at_start_is_one_clear_line(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = subprocess.run(
        run_command(ExternalKafka(address), "orders", tmp_path),
        capture_output=True,
        text=True,
        timeout=120,  # a hang fails here; the command's own bound is 10 s
    )
    assert done.returncode == 1
    assert f"error: cannot reach Kafka at {address} within 10s" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def _wait(condition: object, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_30s_broker_pause_mid_stream_is_waited_out_with_correct_tables(tmp_path: Path) -> None:
    # Large enough that what the consumers prefetch (Tansu answers with whole
    # record batches, past librdkafka's size limits) cannot be all of it.
    config = GeneratorConfig(events=120_000, seed=17, scenario="warehouse_outage")
    stalled, reference = tmp_path / "stalled", tmp_path / "reference"
    with EmbeddedBroker() as broker:  # its own broker: the pause affects this test only
        topic = load_topic(broker, config)
        flow = subprocess.Popen(
            [*run_command(broker, topic, stalled), *SMALL_PREFETCH],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert flow.stdout is not None
            assert flow.stdout.readline().startswith("Streaming")  # topic checked, flow built
            time.sleep(1)  # consuming
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)
            time.sleep(30)
            running_at_resume = flow.poll() is None
            at_resume = read_table(str(stalled), BRONZE_EVENTS, ["offset"]).num_rows
            os.kill(broker.pid, signal.SIGCONT)
            output, _ = flow.communicate(timeout=900)
        finally:
            if flow.poll() is None:
                flow.kill()
        assert flow.returncode == 0, output
        # The flow was still waiting for the broker when it came back.
        assert running_at_resume and at_resume < config.events, at_resume
        run_to_end(broker, topic, reference)
    assert all_tables(stalled) == all_tables(reference)
    assert read_table(str(stalled), BRONZE_EVENTS).num_rows > 0
