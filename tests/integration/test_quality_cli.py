"""The operator's commands as real processes: list, release, discard, docs, and a failing rule."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.reader import read_table
from lakehouse.tables import HEALTH_METRICS, QUARANTINE_ACTIONS
from orderhealth.generator import GeneratorConfig
from quality.record_rules import DEFAULT_RULES_PATH
from tests.integration.conftest import Kafka, load_topic, run_command
from tests.integration.test_quality_gate import metric_row, stage, stage_raw

pytestmark = pytest.mark.integration


def orderhealth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orderhealth", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )


@pytest.fixture
def quarantined(tmp_path: Path) -> tuple[Path, str]:
    """A lakehouse with one published and one quarantined batch (gated by the CLI)."""
    stage(tmp_path, [metric_row(0)], offset=1)
    gated = orderhealth("quality", "gate", "--lakehouse", str(tmp_path))
    assert gated.returncode == 0, gated.stderr
    assert gated.stdout.startswith("health_metrics@1-1: passed (1 rows)")
    stage_raw(tmp_path, [metric_row(1, on_time_rate=1.3)])
    gated = orderhealth("quality", "gate", "--lakehouse", str(tmp_path))
    assert gated.stdout.startswith("health_metrics@2-2: quarantined (1 rows) [critical]")
    return tmp_path, "health_metrics@2-2"


def test_list_release_and_the_audit_trail(quarantined: tuple[Path, str]) -> None:
    root, batch = quarantined
    listed = orderhealth("quality", "list", "--lakehouse", str(root))
    assert listed.returncode == 0
    assert batch in listed.stdout and "on_time_rate" in listed.stdout
    released = orderhealth(
        "quality",
        "release",
        batch,
        "--reason",
        "rate fixed upstream",
        "--by",
        "cfo",
        "--lakehouse",
        str(root),
    )
    assert released.returncode == 0, released.stdout + released.stderr
    assert "1 rows published" in released.stdout
    (audit,) = read_table(str(root), QUARANTINE_ACTIONS).to_pylist()
    assert (audit["actor"], audit["action"], audit["reason"]) == (
        "cfo",
        "released",
        "rate fixed upstream",
    )
    statuses = {r["quality_status"] for r in read_table(str(root), HEALTH_METRICS).to_pylist()}
    assert statuses == {"passed", "released"}
    assert (
        "No quarantined batches" in orderhealth("quality", "list", "--lakehouse", str(root)).stdout
    )
    again = orderhealth("quality", "discard", batch, "--reason", "x", "--lakehouse", str(root))
    assert again.returncode == 1
    assert again.stdout.startswith("error: batch") and "already released by cfo" in again.stdout
    assert "Traceback" not in again.stdout + again.stderr


def test_data_docs_render_every_run(quarantined: tuple[Path, str], tmp_path: Path) -> None:
    root, batch = quarantined
    out = tmp_path / "docs"
    built = orderhealth("quality", "docs", "--lakehouse", str(root), "--out", str(out))
    assert built.returncode == 0, built.stdout + built.stderr
    index = (out / "index.html").read_text()
    assert batch in index
    pages = list((out / "validations").rglob("*.html"))
    assert len(pages) == 2
    page = next(p for p in pages if batch in p.name).read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "Status: Failed" in text and "Unsuccessful Expectations 1 " in text
    assert "on_time_rate" in text
    assert (out / "expectations" / "health_metrics.html").exists()


def test_a_fail_rule_stops_the_flow_with_one_clear_line(broker: Kafka, tmp_path: Path) -> None:
    topic = load_topic(broker, GeneratorConfig(events=3000, seed=5, bad_fraction=0.01))
    rules = tmp_path / "rules.toml"
    text = DEFAULT_RULES_PATH.read_text()
    rules.write_text(
        text.replace(
            '[promise_after_creation]\naction = "drop"', '[promise_after_creation]\naction = "fail"'
        )
    )
    assert 'action = "fail"' in rules.read_text()
    done = subprocess.run(
        [*run_command(broker, topic, tmp_path / "lake"), "--rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "error: record rule 'promise_after_creation' failed for event" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
