"""Terminal rendering of the health index (rich tables)."""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import median
from typing import Any

import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from lakehouse.reader import PipelineCounts, read_table
from lakehouse.tables import BRONZE_EVENTS, DEAD_LETTER, HEALTH_METRICS, VALIDATION_RUNS

__all__ = ["print_counts", "print_gate", "print_health"]


def _daily(root: str, dimension: str, days: int) -> tuple[list[Any], dict[str, dict[Any, Any]]]:
    table = read_table(root, HEALTH_METRICS)  # published (gated) rows only
    mask = pc.and_(pc.equal(table["window_size"], "1d"), pc.equal(table["dimension"], dimension))
    rows = table.filter(mask).to_pylist()
    starts = sorted({r["window_start"] for r in rows})[-days:]
    grid: dict[str, dict[Any, Any]] = defaultdict(dict)
    for r in rows:
        if r["window_start"] in starts:
            grid[r["dimension_value"]][r["window_start"]] = r
    return starts, grid


_COMPONENT_COLUMNS = (
    ("on_time_rate", "on-time", "pct"),
    ("anomaly_rate", "anomalies", "pct"),
    ("order_to_warehouse_hours_avg", "gray zone h", "hours"),
    ("promise_deviation_hours_p90", "dev p90 h", "hours"),
    ("cycle_time_hours_avg", "cycle h", "hours"),
    ("stage_sla_breach_rate", "SLA breach", "pct"),
    ("routing_accuracy", "routing", "pct"),
    ("late_open_orders", "late open", "count"),
)


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "hours":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def print_health(console: Console, root: str, *, days: int = 5) -> None:
    """Daily health index per warehouse, then every component on the worst day."""
    starts, grid = _daily(root, "warehouse_id", days)
    _, overall = _daily(root, "all", days)
    if not starts:
        console.print("[yellow]No health metrics were published.[/]")
        return
    table = Table(title="Health index (0-100) by day, as published", title_justify="left")
    table.add_column("warehouse")
    for start in starts:
        final = all(grid[v].get(start, {}).get("is_final", True) for v in grid)
        table.add_column(start.strftime("%a %d %b") + ("" if final else " (open)"), justify="right")
    for name, cells in [("ALL", overall["all"]), *sorted(grid.items())]:
        rendered = []
        for start in starts:
            value = cells.get(start, {}).get("health_index")
            company = overall["all"].get(start, {}).get("health_index")
            text = _fmt(value, "count" if value is None else "hours")
            if value is not None and company is not None and name != "ALL" and company - value > 5:
                text = f"[bold red]{text}[/]"
            rendered.append(text)
        table.add_row(name, *rendered)
    console.print(table)

    # The final day where one warehouse fell furthest below the company.
    def spread(start: object) -> float:
        company = overall["all"].get(start, {}).get("health_index")
        values = [c[start]["health_index"] for c in grid.values() if start in c]
        values = [v for v in values if v is not None]
        return (company - min(values)) if values and company is not None else -1.0

    finals = [s for s in starts if overall["all"].get(s, {}).get("is_final")] or starts
    worst = max(finals, key=spread)
    detail = Table(
        title=f"Components on {worst.strftime('%a %d %b')} (the day a warehouse fell furthest)",
        title_justify="left",
    )
    detail.add_column("warehouse")
    detail.add_column("index", justify="right")
    for _, header, _ in _COMPONENT_COLUMNS:
        detail.add_column(header, justify="right")
    rows = [("ALL", overall["all"].get(worst, {}))]
    rows += sorted(
        ((name, cells.get(worst, {})) for name, cells in grid.items()),
        key=lambda item: item[1].get("health_index") or 0.0,
    )
    for name, row in rows:
        detail.add_row(
            name,
            _fmt(row.get("health_index"), "hours"),
            *[_fmt(row.get(column), kind) for column, _, kind in _COMPONENT_COLUMNS],
        )
    console.print(detail)


def print_counts(console: Console, counts: PipelineCounts, produced: int | None) -> None:
    table = Table(title="Pipeline accounting", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    if produced is not None:
        table.add_row("messages produced", f"{produced:,}")
    table.add_row("valid events (bronze/order_events)", f"{counts['valid']:,}")
    table.add_row("  of which duplicates (ignored by metrics)", f"{counts['duplicates']:,}")
    table.add_row("  of which beyond allowed lateness (for restatement)", f"{counts['late']:,}")
    table.add_row("dead-lettered (bronze/dead_letter)", f"{counts['dead_lettered']:,}")
    for reason, n in sorted(counts["dead_letter_reasons"].items()):
        table.add_row(f"  {reason}", f"{n:,}")
    table.add_row("orders tracked (silver/order_lifecycle)", f"{counts['orders']:,}")
    if produced is not None:
        balanced = produced == counts["valid"] + counts["dead_lettered"]
        table.add_row(
            "produced = valid + dead-lettered",
            "[green]yes[/]" if balanced else "[bold red]NO[/]",
        )
    console.print(table)


def print_gate(console: Console, root: str) -> None:
    """How the batch gate and the record rules judged this lakehouse's data."""
    runs = read_table(root, VALIDATION_RUNS, ["suite", "outcome", "row_count", "duration_ms"])
    gate = [r for r in runs.to_pylist() if r["suite"] == "health_metrics"]
    table = Table(title="Quality gate", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    outcomes = Counter(r["outcome"] for r in gate)
    table.add_row("metric batches gated", f"{len(gate):,}")
    table.add_row("  passed and published", f"[green]{outcomes['passed']:,}[/]")
    table.add_row("  published with a warning flag", f"[yellow]{outcomes['warning']:,}[/]")
    table.add_row("  quarantined (gold/quarantine)", f"[red]{outcomes['quarantined']:,}[/]")
    if gate:
        times = sorted(r["duration_ms"] for r in gate)
        table.add_row(
            "gate time per batch, median / max", f"{median(times):.0f} / {times[-1]:.0f} ms"
        )
    bronze = read_table(root, BRONZE_EVENTS, ["quality_warnings"])["quality_warnings"]
    warned: Counter[str] = Counter()
    for names in bronze.drop_null().to_pylist():
        warned.update(names.split(","))
    dead = read_table(root, DEAD_LETTER, ["rule"])["rule"].drop_null().to_pylist()
    for rule, n in sorted(Counter(dead).items()):
        table.add_row(f"record rule {rule}: dropped to dead letter", f"{n:,}")
    for rule, n in sorted(warned.items()):
        table.add_row(f"record rule {rule}: kept with a warning", f"{n:,}")
    console.print(table)
