"""Terminal rendering of the health index (rich tables)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from lakehouse.reader import PipelineCounts, read_table
from lakehouse.tables import HEALTH_METRICS_STAGING

__all__ = ["print_counts", "print_health"]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _daily(root: str, dimension: str, days: int) -> tuple[list[Any], dict[str, dict[Any, Any]]]:
    table = read_table(root, HEALTH_METRICS_STAGING)
    mask = pc.and_(pc.equal(table["window_size"], "1d"), pc.equal(table["dimension"], dimension))
    rows = table.filter(mask).to_pylist()
    starts = sorted({r["window_start"] for r in rows})[-days:]
    grid: dict[str, dict[Any, Any]] = defaultdict(dict)
    for r in rows:
        if r["window_start"] in starts:
            grid[r["dimension_value"]][r["window_start"]] = r
    return starts, grid


def print_health(console: Console, root: str, *, days: int = 5) -> None:
    """Daily on-time and anomaly rates for the company and per warehouse."""
    starts, grid = _daily(root, "warehouse_id", days)
    _, overall = _daily(root, "all", days)
    if not starts:
        console.print("[yellow]No health metrics were published.[/]")
        return
    for metric, title, worse_if_lower in (
        ("on_time_rate", "On-time rate (promises kept / resolved)", True),
        ("anomaly_rate", "Anomaly rate (flagged orders / active orders)", False),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column("warehouse")
        for start in starts:
            final = all(grid[v].get(start, {}).get("is_final", True) for v in grid)
            table.add_column(
                start.strftime("%a %d %b") + ("" if final else " (open)"), justify="right"
            )
        for name, cells in [("ALL", overall["all"]), *sorted(grid.items())]:
            rendered = []
            for start in starts:
                value = cells.get(start, {}).get(metric)
                company = overall["all"].get(start, {}).get(metric)
                text = _pct(value)
                if value is not None and company is not None and name != "ALL":
                    gap = (company - value) if worse_if_lower else (value - company)
                    if gap > 0.03:
                        text = f"[bold red]{text}[/]"
                rendered.append(text)
            table.add_row(name, *rendered)
        console.print(table)


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
