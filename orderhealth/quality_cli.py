"""``orderhealth quality``: the operator's view of the batch quality gate."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from lakehouse.publication import (
    GateRun,
    Publisher,
    QuarantineError,
    discard,
    list_quarantined,
    release,
)
from lakehouse.reader import read_table
from lakehouse.tables import VALIDATION_RUNS
from orderhealth.cli_common import DEFAULT_LAKEHOUSE, CliError, Lakehouse, console, resolve_root

__all__ = ["quality_app"]

quality_app = typer.Typer(
    name="quality",
    help="Quality gate: quarantined batches, validation runs, Data Docs.",
    no_args_is_help=True,
)

BatchId = Annotated[str, typer.Argument(help="Batch id, as `orderhealth quality list` shows.")]
Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the audit record).")]
Actor = Annotated[
    str | None,
    typer.Option("--by", envvar="ORDERHEALTH_OPERATOR", help="Who decides; default user@host."),
]


def _actor(by: str | None) -> str:
    return by or f"{getpass.getuser()}@{socket.gethostname()}"


@quality_app.command("list")
def list_batches(
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    all_batches: Annotated[
        bool, typer.Option("--all", help="Include released and discarded batches.")
    ] = False,
) -> None:
    """List quarantined batches and why they failed."""
    batches = list_quarantined(resolve_root(lakehouse), include_decided=all_batches)
    if not batches:
        console.print("No quarantined batches" + ("." if all_batches else " awaiting a decision."))
        return
    table = Table(title="Quarantined batches", title_justify="left")
    for column in ("batch", "rows", "quarantined (UTC)", "failed expectations", "status"):
        table.add_column(column)
    for b in batches:
        status = b.status if b.status == "pending" else f"{b.status} by {b.actor}: {b.reason}"
        table.add_row(
            b.batch_id,
            f"{b.rows:,}",
            f"{b.quarantined_at:%Y-%m-%d %H:%M:%S}",
            escape("\n".join(b.failed)),
            escape(status),
        )
    console.print(table)
    if any(b.status == "pending" for b in batches):
        console.print(
            "Decide with `orderhealth quality release BATCH --reason ...` "
            "or `orderhealth quality discard BATCH --reason ...`."
        )


@quality_app.command("release")
def release_batch(
    batch_id: BatchId, reason: Reason, lakehouse: Lakehouse = DEFAULT_LAKEHOUSE, by: Actor = None
) -> None:
    """Publish a quarantined batch anyway (rows are marked `released`; audited)."""
    try:
        count = release(resolve_root(lakehouse), batch_id, actor=_actor(by), reason=reason)
    except QuarantineError as err:
        raise CliError(str(err)) from err
    console.print(f"Released {batch_id}: {count:,} rows published, audit record written.")


@quality_app.command("discard")
def discard_batch(
    batch_id: BatchId, reason: Reason, lakehouse: Lakehouse = DEFAULT_LAKEHOUSE, by: Actor = None
) -> None:
    """Never publish a quarantined batch (audited)."""
    try:
        discard(resolve_root(lakehouse), batch_id, actor=_actor(by), reason=reason)
    except QuarantineError as err:
        raise CliError(str(err)) from err
    console.print(f"Discarded {batch_id}; audit record written.")


@quality_app.command("runs")
def runs(
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    last: Annotated[int, typer.Option(min=1, help="How many of the newest runs.")] = 20,
) -> None:
    """Show the newest validation runs (gate runs and record-rule tallies)."""
    table = read_table(resolve_root(lakehouse), VALIDATION_RUNS).to_pylist()
    table.sort(key=lambda r: r["validated_at"])
    shown = Table(title=f"Validation runs (newest {last} of {len(table):,})", title_justify="left")
    for column in ("run", "suite", "outcome", "rows", "ms", "failing"):
        shown.add_column(column)
    for r in table[-last:]:
        failing = json.loads(r["failing_expectations"])
        text = "; ".join(
            f"{f.get('expectation') or f.get('rule')}({f.get('column') or f.get('action', '')})"
            for f in failing
        )
        colour = {"passed": "green", "warning": "yellow"}.get(r["outcome"], "red")
        shown.add_row(
            r["run_id"],
            r["suite"],
            f"[{colour}]{r['outcome']}[/]",
            f"{r['row_count']:,}",
            f"{r['duration_ms']:.0f}",
            escape(text),
        )
    console.print(shown)


@quality_app.command("gate")
def gate(lakehouse: Lakehouse = DEFAULT_LAKEHOUSE) -> None:
    """Gate and publish whatever is staged and not yet gated (e.g. after a restatement)."""
    publisher = Publisher(resolve_root(lakehouse))
    with console.status("Loading Great Expectations and the suites..."):
        publisher.prepare()

    def show(run: GateRun) -> None:
        failed = escape("; ".join(run.failed))
        console.print(f"{run.batch_id}: {run.outcome} ({run.row_count:,} rows) {failed}")

    done = publisher.run_all(show)
    if not done:
        console.print("Nothing staged since the last gate run.")


@quality_app.command("docs")
def docs(
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    out: Annotated[Path, typer.Option(help="Directory for the HTML site.")] = Path(
        "data/data_docs"
    ),
    last: Annotated[int, typer.Option(min=1, help="How many of the newest runs to render.")] = 200,
) -> None:
    """Build Great Expectations Data Docs (HTML) from the recorded gate runs."""
    from quality.data_docs import build_data_docs

    progress = Progress(
        TextColumn("[bold]render runs"), BarColumn(), MofNCompleteColumn(), console=console
    )
    with progress:
        task = progress.add_task("runs", total=None)

        def step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        index, count = build_data_docs(resolve_root(lakehouse), out, last=last, on_progress=step)
    console.print(f"Data Docs for {count:,} runs: [bold]{index}[/] (open it in a browser)")
