"""Holding rows back while catching up publishes the same tables.

A run that is always "catching up" (``catch_up_lag_s=0``: every message was
produced before it was read) holds back the provisional rows of windows one
partition has passed; they come out when final or at the end.  Against a
run that never holds, on the same topic: every table the same.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from dataflows.run_log import run_stats
from lakehouse.tables import HEALTH_METRICS
from orderhealth.generator import GeneratorConfig
from orderhealth.pipeline import run_flow
from tests.integration.conftest import Kafka, all_tables, flow_config, load_topic


def test_holding_while_catching_up_publishes_the_same_tables(broker: Kafka, tmp_path: Path) -> None:
    topic = load_topic(
        broker, GeneratorConfig(events=6_000, seed=11, scenario="carrier_delay"), partitions=4
    )
    roots, held = {}, {}
    for name, lag in (("never", None), ("always", 0.0)):
        root = roots[name] = tmp_path / name
        # Small reads: the partitions reach the window step out of step.
        config = msgspec.structs.replace(
            flow_config(broker, topic, root), catch_up_lag_s=lag, max_in_flight=1_200
        )
        before = run_stats.summary()["held_back"]
        run_flow(config, snapshot_interval_s=0.2)
        held[name] = run_stats.summary()["held_back"] - before
    never, always = all_tables(roots["never"]), all_tables(roots["always"])
    assert never.keys() == always.keys()
    assert never[HEALTH_METRICS.path].num_rows > 0
    for name, table in never.items():
        assert always[name].equals(table), f"{name} differs when rows are held back"
    assert held["never"] == 0
    assert held["always"] > 0
