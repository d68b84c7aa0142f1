"""The documented extension path: a plugin metric flows end to end through the real flow."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from dataflows.settings import DEFAULT_CONFIG_PATH
from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS
from orderhealth.generator import GeneratorConfig
from tests.integration.conftest import Kafka, load_topic, run_command

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_pick_to_pack_plugin_flows_from_kafka_to_the_metrics_table(
    broker: Kafka, tmp_path: Path
) -> None:
    topic = load_topic(broker, GeneratorConfig(events=8_000, seed=13))
    config = tmp_path / "health.toml"
    config.write_text(
        DEFAULT_CONFIG_PATH.read_text()
        + "pick_to_pack_hours_avg = { weight = 0.05, good = 0.5, bad = 4.0 }\n"
    )
    lakehouse = tmp_path / "lake"
    env = {
        **os.environ,
        "ORDERHEALTH_METRIC_PLUGINS": "pick_to_pack",
        "PYTHONPATH": os.pathsep.join([str(REPO / "docs" / "examples"), str(REPO)]),
        "ORDERHEALTH_HEALTH_CONFIG": str(config),
    }
    run = subprocess.run(
        run_command(broker, topic, lakehouse),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    # Read the new columns with a reader that knows the plugin, as Superset would.
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from lakehouse.reader import read_log; "
            "from lakehouse.tables import HEALTH_METRICS_STAGING as T; "
            f"rows = read_log({str(lakehouse)!r}, T).to_pylist(); "
            "print(json.dumps([[r['window_start'].isoformat(), r['pick_to_pack_count'], "
            "r['pick_to_pack_hours_avg'], r['health_components']] for r in rows "
            "if r['window_size'] == '1d' and r['dimension'] == 'all']))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert reader.returncode == 0, reader.stderr
    published = {day[:10]: (n, avg, used) for day, n, avg, used in json.loads(reader.stdout)}

    # Independent expectation straight from bronze.
    bronze = read_table(str(lakehouse), BRONZE_EVENTS).to_pylist()
    first: dict = defaultdict(dict)
    for e in sorted(bronze, key=lambda e: e["event_time"]):
        if not e["is_duplicate"] and not e["is_late"] and e["event_type"] in ("PICKED", "PACKED"):
            first[e["order_id"]].setdefault(e["event_type"], e["event_time"])
    expected: dict = defaultdict(list)
    for stages in first.values():
        if "PICKED" in stages and "PACKED" in stages and stages["PICKED"] <= stages["PACKED"]:
            hours = (stages["PACKED"] - stages["PICKED"]).total_seconds() / 3600
            expected[stages["PACKED"].date().isoformat()].append(hours)
    assert expected
    for day, values in expected.items():
        count, average, used = published[day]
        assert count == len(values)
        assert math.isclose(average, sum(values) / len(values), abs_tol=1e-6)
        assert "pick_to_pack_hours_avg" in used
