"""Benchmark the batch quality gate: set-up once, time per batch, share of the stream.

    .venv/bin/python -m bench.gate [--lakehouse data/lakehouse] [--repeat 5]

Run it after ``make demo`` (it reads that lakehouse).  It reports:

* set-up: GX import + context + suite, measured in a fresh interpreter (paid
  once per gate process);
* validation time per batch for slices of the real published metric rows,
  next to the time to turn the same rows into the DataFrame GX needs (the
  ratio is GX's own overhead, measured in the same run);
* from ``quality/validation_runs``: what the gate cost in the run that wrote
  the lakehouse -- per batch, and as a share of the stream's wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import pyarrow as pa
from rich.console import Console
from rich.table import Table

from lakehouse.publication import as_gate_batch
from lakehouse.reader import read_table
from lakehouse.tables import HEALTH_METRICS, METRIC_COLUMNS, VALIDATION_RUNS

_SETUP = (
    "import time; t = time.perf_counter(); "
    "from quality.gate import load_gate; load_gate('health_metrics'); "
    "print(time.perf_counter() - t)"
)


def _median_ms(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lakehouse", default="data/lakehouse")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    console = Console()

    setup_s = float(
        subprocess.run(
            [sys.executable, "-c", _SETUP], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    from quality.gate import load_gate

    gate = load_gate("health_metrics")
    rows = read_table(args.lakehouse, HEALTH_METRICS).select(list(METRIC_COLUMNS))
    if rows.num_rows == 0:
        sys.exit(f"no published rows under {args.lakehouse}: run `make demo` first")
    # Typed as the publisher types a gate batch; the gate sees no staging version.
    versions = pa.array([0] * rows.num_rows, pa.int64())
    rows = as_gate_batch(rows, versions).drop_columns(["staging_version"])

    table = Table(title="Gate time per batch (median of repeats)", title_justify="left")
    for column in ("rows", "to DataFrame ms", "GX validate ms", "GX / DataFrame", "outcome"):
        table.add_column(column, justify="right")
    results = []
    for size in sorted({100, 1_000, 10_000, rows.num_rows}):
        if size > rows.num_rows:
            continue
        batch = rows.slice(0, size)
        frame = batch.to_pandas()
        convert_ms = _median_ms(lambda b=batch: b.to_pandas(), args.repeat)
        validate_ms = _median_ms(lambda f=frame: gate.validate(f, []), args.repeat)
        outcome = gate.validate(frame, []).outcome
        ratio = validate_ms / convert_ms
        results.append({"rows": size, "convert_ms": convert_ms, "validate_ms": validate_ms})
        table.add_row(
            f"{size:,}", f"{convert_ms:.1f}", f"{validate_ms:.0f}", f"{ratio:.0f}x", outcome
        )
    console.print(f"GX set-up (import + context + suite, fresh process): {setup_s:.2f} s")
    console.print(table)

    runs = read_table(
        args.lakehouse,
        VALIDATION_RUNS,
        ["suite", "row_count", "duration_ms", "validated_at"],
        where="suite = 'health_metrics'",
    ).to_pylist()
    recorded: dict[str, object] = {}
    if runs:
        durations = sorted(r["duration_ms"] for r in runs)
        times = sorted(r["validated_at"] for r in runs)
        span = (times[-1] - times[0]).total_seconds()
        busy = sum(durations) / 1000
        recorded = {
            "runs": len(runs),
            "median_ms": statistics.median(durations),
            "max_ms": durations[-1],
            "rows_median": statistics.median(r["row_count"] for r in runs),
            "busy_s": busy,
            "span_s": span,
        }
        console.print(
            f"Recorded in {args.lakehouse}: {len(runs)} gate runs, validation median "
            f"{recorded['median_ms']:.0f} ms, max {durations[-1]:.0f} ms, "
            f"median batch {recorded['rows_median']:,.0f} rows; validation busy "
            f"{busy:.1f} s over {span:.0f} s between first and last run"
            + (f" ({busy / span:.0%} of one core, in the gate's own process)" if span else "")
        )
    print(json.dumps({"setup_s": setup_s, "batches": results, "recorded": recorded}))


if __name__ == "__main__":
    main()
