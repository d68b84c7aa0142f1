"""Late data: beyond the allowed lateness it lands in bronze, and restate corrects windows.

Also checks the real flow (Kafka -> Bytewax -> Delta) against the batch oracle.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from dataflows.batch_metrics import batch_metric_rows
from dataflows.metrics import COMPONENTS, MEASURES
from dataflows.settings import HealthSettings
from lakehouse.reader import read_log, read_table
from lakehouse.tables import BRONZE_EVENTS, HEALTH_METRICS_STAGING, table_uri
from orderhealth.generator import GeneratorConfig
from orderhealth.restate import restate
from tests.integration.conftest import Kafka, load_topic, run_to_end

pytestmark = pytest.mark.integration
SETTINGS = HealthSettings.load()


def _key(row: dict) -> tuple:
    return (row["window_size"], row["window_start"], row["dimension"], row["dimension_value"])


def _same(a: dict, b: dict) -> bool:
    if any(int(a[m]) != int(b[m]) for m in MEASURES):
        return False
    for name in [c.name for c in COMPONENTS] + ["health_index"]:
        x, y = a[name], b[name]
        if (x is None) != (y is None) or (x is not None and not math.isclose(x, y, abs_tol=1e-9)):
            return False
    return a["is_final"] == b["is_final"]


@pytest.fixture(scope="module")
def late_run(broker: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = GeneratorConfig(events=12_000, seed=4, very_late_fraction=0.01)
    topic = load_topic(broker, config)
    root = tmp_path_factory.mktemp("late")
    run_to_end(broker, topic, root)
    return root


def test_the_real_flow_equals_the_batch_oracle(late_run: Path) -> None:
    bronze = read_table(str(late_run), BRONZE_EVENTS)
    staging = {_key(r): r for r in read_log(str(late_run), HEALTH_METRICS_STAGING).to_pylist()}
    batch = {_key(r): r for r in batch_metric_rows(bronze, SETTINGS, partitions=4)}
    live = {k: r for k, r in staging.items() if any(int(r[m]) for m in MEASURES)}
    assert set(live) == set(batch)
    different = [k for k in batch if not _same(live[k], batch[k])]
    assert not different, different[:5]


def test_late_events_land_in_bronze_and_restate_corrects_their_windows(late_run: Path) -> None:
    root = str(late_run)
    bronze = read_table(root, BRONZE_EVENTS)
    late = bronze.filter(bronze["is_late"])
    assert late.num_rows > 20, "the generator should have sent events beyond the lateness"

    before = {_key(r): r for r in read_log(root, HEALTH_METRICS_STAGING).to_pylist()}
    corrected = {
        _key(r): r for r in batch_metric_rows(bronze, SETTINGS, partitions=4, include_late=True)
    }
    stale = [k for k, r in corrected.items() if k not in before or not _same(before[k], r)]
    assert stale, "late events should change some windows"

    result = restate(root, SETTINGS, window_sizes=["1h", "1d"])
    assert result.late_events == late.num_rows
    after = {_key(r): r for r in read_log(root, HEALTH_METRICS_STAGING).to_pylist()}
    for key, row in corrected.items():
        if key[0] in ("1h", "1d"):
            assert _same(after[key], row), key
    # 1-minute windows were not selected and keep their streamed values.
    one_minute = [k for k in stale if k[0] == "1m" and k in before]
    assert all(_same(after[k], before[k]) for k in one_minute)

    # Rerunning the same restatement on the same bronze data changes nothing.
    version = DeltaTable(table_uri(root, HEALTH_METRICS_STAGING)).version()
    again = restate(root, SETTINGS, window_sizes=["1h", "1d"])
    assert again.rows_written == 0
    assert DeltaTable(table_uri(root, HEALTH_METRICS_STAGING)).version() == version
    assert pc.sum(late["is_duplicate"]).as_py() == 0
