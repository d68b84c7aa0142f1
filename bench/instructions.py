"""Instructions per event of each stage of the streaming core, counted by callgrind.

    .venv/bin/python -m bench.instructions [--events 30000] [--base CHECKOUT]

:mod:`bench.core` measures CPU time.  On this shared 2-core machine two
identical runs of it can differ by 15% (18.5 and 21.6 us per event for the
per-partition step, minutes apart), more than most levers weigh.  The
instructions a run executes do not move: the same interpreter, extension,
messages and hash seed execute the same count, whatever else the machine
does.  So this runs :mod:`bench.core`'s stages under valgrind's callgrind
and counts each one's instructions:

* phase by phase -- every batch decoded, then every per-partition step, then
  every window step, then every batch's rows to Arrow -- which is the same
  work as :mod:`bench.core`'s rounds (no stage reads a later one's output);
* with a callgrind client request after each phase (a marker compiled at run
  time from valgrind's ``callgrind.h``), so each phase's count is its own;
* with ``--base``, the same run for another checkout (a ``git worktree`` of
  the commit before a change) on the other core, and the ratio per stage;
* and, first and apart, the ceiling's own decode (schemaless msgspec over
  every message, as :func:`bench.throughput.ceiling` does after consuming),
  so that the core's cost reads against the yardstick of the 0.5x goal.

Instructions are not seconds (a cache miss costs no instruction), so this
weighs a lever that removes work; the end-to-end bench still has the last
word.  Results go to ``bench/results/instructions.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

__all__ = ["count", "main"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "instructions.json"
STAGES = ("decode", "partition", "windows", "to_arrow")
#: The ceiling's own decode (schemaless msgspec over every message), counted
#: first, apart from the stages: the yardstick the goal is stated against.
BARE = "bare_decode"
_MARKER = """
#include <valgrind/callgrind.h>
void zero(void) { CALLGRIND_ZERO_STATS; }
void dump(const char *stage) { CALLGRIND_DUMP_STATS_AT(stage); }
"""


def _marker(directory: Path) -> ctypes.CDLL:
    """The client requests, as a tiny shared library built here (gcc and valgrind's header)."""
    source, library = directory / "marker.c", directory / "marker.so"
    source.write_text(_MARKER)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
        check=True,
        capture_output=True,
    )
    return ctypes.CDLL(str(library))


def _inner(events: int, partitions: int, batch: int, directory: Path) -> None:
    """Under callgrind: the stages phase by phase, with a dump after each."""
    # bench.core of this file's checkout; what it imports (the core under
    # test) comes from PYTHONPATH.
    spec = importlib.util.spec_from_file_location("bench_core_here", HERE / "core.py")
    assert spec is not None and spec.loader is not None
    core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core)

    from dataflows.decode_step import DecodeStep, is_event
    from dataflows.interpreter_tuning import tune_garbage_collector
    from dataflows.kafka_source import FlowControl
    from dataflows.partition_processor import PartitionBatch, PartitionProcessor
    from dataflows.settings import HealthSettings
    from dataflows.window_metrics import MetricWindows
    from quality.record_rules import RuleBook
    from schemas.decode import EventDecoder

    marker = _marker(directory)
    logs = core.partitioned(events, partitions, None)
    tune_garbage_collector()
    settings = HealthSettings.load()
    decode = DecodeStep(EventDecoder(), RuleBook.load(), FlowControl(None))
    produced_ms = int(time.time() * 1000)
    rounds = [
        [
            (p, core.kafka_messages(p, log[cursor : cursor + batch], cursor, produced_ms))
            for p, log in enumerate(logs)
            if log[cursor : cursor + batch]
        ]
        for cursor in range(0, max(len(log) for log in logs), batch)
    ]
    processors = [PartitionProcessor("bench", p, settings) for p in range(partitions)]
    windows = MetricWindows(settings, [f"bench/{p}" for p in range(partitions)])
    writers = core.arrow_writers()

    bare = msgspec.json.Decoder().decode
    errors = 0
    marker.zero()
    for reads in rounds:
        for _p, messages in reads:
            for message in messages:
                try:  # as bench.throughput.ceiling does
                    bare(message.value() or b"")
                except msgspec.DecodeError:
                    errors += 1
    marker.dump(BARE.encode())
    decoded = [
        [(p, [item for item in decode(messages) if is_event(item)]) for p, messages in batches]
        for batches in rounds
    ]
    marker.dump(b"decode")
    results: list[list[PartitionBatch]] = [
        [processors[p].process(items) for p, items in batches] for batches in decoded
    ]
    marker.dump(b"partition")
    columns = [windows.apply_all(outputs) for outputs in results]
    marker.dump(b"windows")
    for rows, outputs in zip(columns, results, strict=True):
        core.rows_to_arrow(writers, rows, outputs)
    marker.dump(b"to_arrow")


def _start(checkout: list[Path], events: int, directory: Path) -> subprocess.Popen[bytes]:
    """This file's inner run under callgrind, importing the core from ``checkout``.

    ``checkout`` is a search path: the checkout last, and before it, if it
    is to differ from the installed one, a directory holding its build of
    the native core (``orderhealth_native/``).
    """
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={directory / 'callgrind.out'}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--inner",
        str(directory),
        "--events",
        str(events),
    ]
    path = os.pathsep.join(str(p) for p in checkout)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        command, env=env, cwd=checkout[-1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _read(directory: Path) -> dict[str, int]:
    """Each stage's instructions, from the dumps its markers triggered."""
    counts: dict[str, int] = {}
    for dump in directory.glob("callgrind.out.*"):
        text = dump.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.MULTILINE)
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
        if trigger and total:
            counts[trigger.group(1)] = int(total.group(1))
    missing = [stage for stage in (BARE, *STAGES) if stage not in counts]
    if missing:
        raise RuntimeError(f"callgrind wrote no count for {missing} in {directory}")
    return counts


def count(checkouts: dict[str, list[Path]], events: int) -> dict[str, dict[str, int]]:
    """Instructions per stage for each checkout, the runs side by side."""
    for tool in ("valgrind", "cc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"error: {tool} is needed (apt-get install -y valgrind gcc)")
    with tempfile.TemporaryDirectory(prefix="instructions-") as tmp:
        runs = {}
        for name, checkout in checkouts.items():
            directory = Path(tmp) / name
            directory.mkdir()
            runs[name] = (directory, _start(checkout, events, directory))
        out = {}
        for name, (directory, process) in runs.items():
            _, stderr = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"{name}: callgrind run failed:\n{stderr.decode()[-3000:]}")
            out[name] = _read(directory)
    return out


def _describe(checkout: Path) -> str:
    """A checkout's commit, marked when its tree has changes (or its path, outside git)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(checkout), "describe", "--always", "--dirty"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(checkout)
    return commit


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument(
        "--base",
        type=lambda text: [Path(p).resolve() for p in text.split(os.pathsep)],
        help="another checkout to compare against (e.g. a git worktree), optionally after "
        "a directory with its own build of orderhealth_native: NATIVE_DIR:CHECKOUT",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner is not None:
        _inner(args.events, 8, 5000, args.inner)
        return {}
    here = HERE.parent
    checkouts = {"this": [here], **({"base": args.base} if args.base else {})}
    console = Console()
    with console.status(f"Counting instructions over {args.events:,} events (~2 min) ..."):
        counts = count(checkouts, args.events)
    table = Table(title=f"Streaming core, {args.events:,} events, instructions per event")
    table.add_column("stage")
    for name in counts:
        table.add_column(f"{name} ({checkouts[name][-1]})", justify="right")
    if "base" in counts:
        table.add_column("this ÷ base", justify="right")
    for stage in (*STAGES, "total", BARE):

        def of(name: str, stage: str = stage) -> int:
            c = counts[name]
            return sum(c[s] for s in STAGES) if stage == "total" else c[stage]

        cells = [f"{of(name) / args.events:,.0f}" for name in counts]
        if "base" in counts:
            cells.append(f"{of('this') / of('base'):.4f}")
        table.add_row(stage, *cells)
    console.print(table)
    for name, c in counts.items():
        core = sum(c[s] for s in STAGES)
        console.print(
            f"{name}: the core executes {core / c[BARE]:.1f}x the instructions of the "
            "ceiling's bare decode (consuming aside)"
        )
    result = {
        "events": args.events,
        "checkouts": {name: _describe(path[-1]) for name, path in checkouts.items()},
        "instructions": counts,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
