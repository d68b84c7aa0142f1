"""Run the streaming flow in this process, with or without Bytewax recovery."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import msgspec
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from dataflows.flow import FlowConfig, build_flow
from dataflows.interpreter_tuning import tune_interpreter
from lakehouse.publication import GateRun

__all__ = ["ensure_recovery_dir", "run_command", "run_flow"]


def ensure_recovery_dir(path: Path, partitions: int) -> None:
    """Create Bytewax recovery partitions once; reuse them on restart."""
    if path.exists() and any(path.glob("part-*.sqlite3")):
        return
    path.mkdir(parents=True, exist_ok=True)
    init_db_dir(path, partitions)


def run_flow(
    config: FlowConfig,
    *,
    workers: int = 1,
    snapshot_interval_s: float = 2.0,
    recovery_dir: Path | None = None,
    backup_interval_s: float = 0.0,
    on_consumed: Callable[[int], None] | None = None,
    on_commit: Callable[[str, int], None] | None = None,
    on_gate: Callable[[GateRun], None] | None = None,
) -> None:
    """Run until the topic is drained (``tail=False``) or forever (``tail=True``).

    ``snapshot_interval_s`` is the epoch length: Delta commits happen once per
    epoch per table, so it bounds freshness and sets the commit rate.
    """
    config = msgspec.structs.replace(config, snapshot_state=recovery_dir is not None)
    flow = build_flow(config, on_consumed=on_consumed, on_commit=on_commit, on_gate=on_gate)
    tune_interpreter()
    recovery = None
    if recovery_dir is not None:
        ensure_recovery_dir(recovery_dir, max(1, workers))
        recovery = RecoveryConfig(str(recovery_dir), timedelta(seconds=backup_interval_s))
    cli_main(
        flow,
        workers_per_process=workers,
        epoch_interval=timedelta(seconds=snapshot_interval_s),
        recovery_config=recovery,
    )


def run_command(
    bootstrap_servers: str, topic: str, lakehouse: str | Path, *extra: str, once: bool = True
) -> list[str]:
    """``orderhealth run`` as a command line, for running the flow as a real process."""
    return [
        sys.executable,
        "-m",
        "orderhealth",
        "run",
        *(["--once"] if once else []),
        "--bootstrap-servers",
        bootstrap_servers,
        "--topic",
        topic,
        "--lakehouse",
        str(lakehouse),
        *extra,
    ]
