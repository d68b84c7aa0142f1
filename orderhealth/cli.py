"""``orderhealth``: the one command-line entry point (SPEC §9).

Options are named the same way everywhere: ``--lakehouse``, ``--bootstrap-servers``,
``--topic``, ``--scenario``, ``--events``, ``--seed``, ``--workers``.  Errors are
one clear line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dataflows.allocator import active_allocator
from dataflows.flow import FlowConfig
from dataflows.scheduling import DEFAULT_BACKGROUND_NICE
from dataflows.settings import HealthSettings, SettingsError
from lakehouse.publication import GateRun
from lakehouse.reader import pipeline_counts
from lakehouse.tables import HEALTH_METRICS, TABLES, table_uri
from lakehouse.writer import LakehouseLayoutError, check_layouts
from orderhealth.broker import BrokerError, EmbeddedBroker
from orderhealth.cli_common import DEFAULT_LAKEHOUSE, CliError, Lakehouse, console, resolve_root
from orderhealth.credit_cli import ensure_demo_key, register
from orderhealth.event_keys import load_keyring, write_key_file
from orderhealth.generator import SCENARIOS, GeneratorConfig, generate_messages
from orderhealth.kafka import (
    KafkaSetupError,
    client_config,
    ensure_topic,
    produce,
    security_config,
    topic_partitions,
)
from orderhealth.quality_cli import quality_app
from orderhealth.status import PipelineStatus

__all__ = ["app", "main"]

app = typer.Typer(
    name="orderhealth",
    help="Streaming order-fulfilment health analytics: Kafka -> Bytewax -> Delta Lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(quality_app)
_state = {"debug": False}
Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers; unset = start the embedded broker.",
    ),
]
Topic = Annotated[str, typer.Option("--topic", help="Kafka topic of order events.")]
Scenario = Annotated[str, typer.Option("--scenario", help=f"Scenario: {', '.join(SCENARIOS)}.")]
Events = Annotated[int, typer.Option("--events", min=1, help="Number of messages to generate.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same events).")]
Workers = Annotated[int, typer.Option("--workers", min=1, help="Bytewax workers in this process.")]
Config = Annotated[
    Path | None,
    typer.Option("--config", envvar="ORDERHEALTH_HEALTH_CONFIG", help="Health config TOML."),
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def _tracked(progress: Progress, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress task fed by a cheap counter bump (no rich call per item).

    A background thread refreshes the bar four times a second.
    """
    task = progress.add_task(description, total=total, rate="")
    counter = [0]
    done = threading.Event()
    started = time.monotonic()

    def refresh() -> None:
        rate = counter[0] / max(time.monotonic() - started, 1e-6)
        progress.update(task, completed=counter[0], rate=f"{rate:,.0f}/s")

    def loop() -> None:
        while not done.wait(0.25):
            refresh()

    def bump(n: int) -> None:
        counter[0] += n

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield bump
    finally:
        done.set()
        thread.join()
        refresh()


def _reset_lakehouse(root: str) -> None:
    """Remove the demo's own tables (never anything else under the root)."""
    if "://" in root:
        raise CliError("the demo writes a local lakehouse; pass a directory to --lakehouse")
    for spec in TABLES:
        shutil.rmtree(table_uri(root, spec), ignore_errors=True)


@app.command()
def demo(
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    scenario: Scenario = "warehouse_outage",
    events: Events = 100_000,
    seed: Seed = 7,
    workers: Workers = 1,
    partitions: Annotated[int, typer.Option(min=1, help="Topic partitions.")] = 4,
    topic: Topic = "orders",
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Run the whole pipeline on embedded defaults and show the health index.

    Starts the embedded Kafka broker, generates a scenario, streams it through
    the flow into Delta tables and prints the health index.
    """
    if scenario not in SCENARIOS:
        raise CliError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    settings = HealthSettings.load()
    root = str(Path(lakehouse).resolve())
    _reset_lakehouse(root)
    # The demo's own recovery store, inside the lakehouse root it owns.
    recovery = Path(root) / "_bytewax_recovery"
    shutil.rmtree(recovery, ignore_errors=True)

    broker: EmbeddedBroker | None = None
    if bootstrap_servers is None:
        broker = EmbeddedBroker().start()
        bootstrap_servers = broker.bootstrap_servers
        console.print(f"Embedded Kafka broker (Tansu) on [bold]{bootstrap_servers}[/]")
    else:
        topic = f"{topic}-demo-{int(time.time())}"
        console.print(f"Using Kafka at [bold]{bootstrap_servers}[/], topic {topic}")
    try:
        count = ensure_topic(bootstrap_servers, topic, partitions)
        console.print(f"Scenario [bold]{scenario}[/]: {SCENARIOS[scenario].description}")
        gen = GeneratorConfig(events=events, seed=seed, scenario=scenario, bad_fraction=0.002)
        with _progress() as progress:
            with _tracked(progress, "produce", events) as bump:
                produce(bootstrap_servers, topic, generate_messages(gen), on_sent=bump)
            config = FlowConfig(
                bootstrap_servers=bootstrap_servers,
                topic=topic,
                partitions=count,
                lakehouse=root,
                settings=settings,
                tail=False,
            )
            from orderhealth.pipeline import run_flow

            gate = progress.add_task("gate   ", total=None, rate="")
            outcomes: Counter[str] = Counter()

            def on_gate(run: GateRun) -> None:
                outcomes[run.outcome] += 1
                progress.update(
                    gate,
                    completed=sum(outcomes.values()),
                    rate=", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())),
                )

            # The gate's own log lines would tear the progress bars; the
            # summary table below reports every run.
            logging.getLogger("lakehouse.publication").setLevel(logging.ERROR)
            with _tracked(progress, "stream ", events) as bump:
                run_flow(
                    config,
                    workers=workers,
                    recovery_dir=recovery,
                    on_consumed=bump,
                    on_gate=on_gate,
                )
    finally:
        if broker is not None:
            broker.stop()

    from orderhealth.report import print_counts, print_gate, print_health

    console.print()
    print_health(console, root)
    print_gate(console, root)
    print_counts(console, pipeline_counts(root), events)
    key, created = ensure_demo_key()
    if created:
        console.print(
            f"\nGenerated a demo credit-report signing key: {key} (mode 600) and "
            f"{key.with_name(key.name.removesuffix('.pem') + '.pub.pem')}. Demo only: "
            "real reports use --signing-key or ORDERHEALTH_SIGNING_KEY_FILE."
        )
    console.print(f"\nDelta tables are under [bold]{root}[/]:")
    for spec in TABLES:
        console.print(f"  {spec.path:32s} {table_uri(root, spec)}")
    console.print(
        "\nNext: query them with deltalake, e.g.\n"
        '  .venv/bin/python -c "from deltalake import DeltaTable, QueryBuilder; '
        f"print(QueryBuilder().register('m', DeltaTable('{table_uri(root, HEALTH_METRICS)}'))"
        ".execute('SELECT * FROM m LIMIT 5').read_all())\"\n"
        "  see what the quality gate did: orderhealth quality runs / quality list / quality docs\n"
        "  where the pipeline stands (watermark, windows, dead letters): orderhealth status\n"
        "  a signed credit report for a bank: orderhealth credit-report --subject-type "
        "seller_id --subject-id S001 --out data/credit-report\n"
        "  or stream your own Kafka topic:\n"
        "  orderhealth run --bootstrap-servers HOST:9092 --topic orders"
    )


def _kafka_options(bootstrap_servers: str, options: list[str]) -> dict[str, str]:
    """KEY=VALUE consumer settings, checked by librdkafka now rather than inside the flow."""
    from confluent_kafka import Consumer, KafkaException

    out = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--kafka-option {option!r}: expected KEY=VALUE")
        out[name.strip()] = value
    try:
        Consumer({**client_config(bootstrap_servers), **out, "group.id": "orderhealth"}).close()
    except KafkaException as err:
        raise CliError(f"invalid Kafka consumer settings: {err.args[0].str()}") from err
    return out


def _run_summary(outcome: str) -> None:
    """The end-of-run summary: a structured log record and a table for people."""
    from dataflows.interpreter_tuning import interpreter_build
    from dataflows.native_core import core_name
    from dataflows.run_log import log_fields, run_stats

    summary = run_stats.summary()
    core = core_name()
    allocator = active_allocator()
    interpreter = interpreter_build()
    log_fields(
        logging.getLogger("orderhealth.run"),
        logging.INFO,
        "run_end",
        outcome=outcome,
        core=core,
        allocator=allocator,
        interpreter=interpreter,
        **summary,
    )
    table = Table(title=f"Run {outcome} after {summary['seconds']:,.1f} s", show_header=False)
    table.add_row("Streaming core", core)
    table.add_row("Allocator", allocator)
    table.add_row("Interpreter", interpreter)
    table.add_row("Epochs", f"{summary['epochs']:,}")
    table.add_row("Consumed", f"{summary['consumed']:,} ({summary['events_per_s']:,.0f}/s)")
    table.add_row("Valid", f"{summary['valid']:,} ({summary['warned']:,} with rule warnings)")
    reasons = ", ".join(f"{r} {n:,}" for r, n in summary["dead_letter_reasons"].items())
    table.add_row(
        "Dead-lettered", f"{summary['dead_lettered']:,}" + (f": {reasons}" if reasons else "")
    )
    runs = ", ".join(f"{o} {n:,}" for o, n in sorted(summary["gate_runs"].items())) or "none"
    table.add_row("Gate runs", runs)
    held = summary["held_back"]
    table.add_row(
        "Metric rows staged",
        f"{summary['metric_rows']:,}"
        + (f" ({held:,} held back while catching up, until final)" if held else ""),
    )
    table.add_row("Rows published", f"{summary['published_rows']:,}")
    table.add_row("Rows quarantined", f"{summary['quarantined_rows']:,}")
    console.print(table)


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT (Ctrl-C) stop the flow cleanly; a second one stops it at once.

    A clean stop ends every partition's input (:func:`request_stop`), so the
    flow finishes as at the end of a topic: the last epoch is committed and
    published.  Raising KeyboardInterrupt from the handler instead would fire
    inside whatever Python step was running -- a sink's commit, say -- and
    Bytewax reports that as a failed step.  Installed explicitly because a
    service manager stops with SIGTERM (default: die without a summary) and a
    background job of a non-interactive shell inherits SIGINT ignored.
    """
    from dataflows.kafka_source import request_stop, stop_requested

    def handle(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop_requested():
            raise KeyboardInterrupt(name)
        request_stop()
        os.write(2, f"{name}: stopping after the messages in flight (again to stop now)\n".encode())

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


@app.command()
def run(
    bootstrap_servers: Bootstrap = None,
    topic: Topic = "orders",
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    workers: Workers = 1,
    recovery_dir: Annotated[
        Path | None, typer.Option(help="Bytewax recovery directory (enables recovery).")
    ] = None,
    snapshot_interval: Annotated[
        float, typer.Option(min=0.1, help="Epoch length in seconds: commit and snapshot cadence.")
    ] = 2.0,
    backup_interval: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds to keep superseded recovery snapshots (for backups)."),
    ] = 0.0,
    once: Annotated[bool, typer.Option(help="Stop at the end of the topic.")] = False,
    max_in_flight: Annotated[
        int,
        typer.Option(min=0, help="Consumed-but-unprocessed messages allowed; 0 = unlimited."),
    ] = 40_000,
    align_partitions: Annotated[
        bool | None,
        typer.Option(
            help="Pause a partition whose event time runs more than the allowed lateness "
            "ahead of one with a backlog (keeps windows finalising on a backlog); "
            "default: on with more than one worker."
        ),
    ] = None,
    catch_up_lag: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds behind the newest message's produce time from which the window step "
            "counts as catching up: it then holds back provisional rows of windows a partition "
            "has already passed (final as soon as the others catch up); 0 = never hold.",
        ),
    ] = 5.0,
    config: Config = None,
    rules: Annotated[
        Path | None,
        typer.Option(envvar="ORDERHEALTH_RECORD_RULES", help="Record-level rules TOML."),
    ] = None,
    kafka_option: Annotated[
        list[str] | None,
        typer.Option(
            "--kafka-option",
            help="A librdkafka consumer setting KEY=VALUE (repeatable), e.g. "
            "ssl.certificate.location=/etc/kafka/client.pem; applied after KAFKA_* variables.",
        ),
    ] = None,
    event_keys: Annotated[
        Path | None,
        typer.Option(
            envvar="ORDERHEALTH_EVENT_KEYS",
            help="Event-signing key file (mode 0600): the sources listed must sign their "
            "events. Keys may also come from ORDERHEALTH_EVENT_KEY_<SOURCE> variables.",
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            envvar="ORDERHEALTH_LOG_FORMAT",
            help="text, or json: one object per line (epochs, gate runs, summary).",
        ),
    ] = "text",
    log_level: Annotated[
        str,
        typer.Option(
            envvar="ORDERHEALTH_LOG_LEVEL", help="INFO, or DEBUG to log every Delta commit."
        ),
    ] = "INFO",
    gate_interval: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds between the starts of quality-gate runs (publication); 0: run as "
            "soon as staging commits, one run at a time.  A run costs ~0.1 s plus ~1-2 ms "
            "per 1,000 rows on the gate's own process.",
        ),
    ] = 1.0,
    side_commit_interval: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds between commits of the tables publication does not wait for "
            "(bronze, dead letters, lifecycle, record-rule runs); 0 = every epoch. "
            "Without --recovery-dir only.",
        ),
    ] = 0.0,
    background_nice: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=19,
            show_default=False,
            help="Nice value of the work the event thread does not wait for (the quality "
            "gate's process; the commits, without --recovery-dir), so that it yields the CPU "
            f"to the event thread.  Default: {DEFAULT_BACKGROUND_NICE} with --once, 0 when "
            "tailing (the gate and the staging commit are on the way to publication).",
        ),
    ] = None,
) -> None:
    """Run the streaming flow against the configured Kafka topic."""
    if bootstrap_servers is None:
        raise CliError(
            "no Kafka: set KAFKA_BOOTSTRAP_SERVERS or --bootstrap-servers "
            "(or start one with `orderhealth broker`)"
        )
    settings = HealthSettings.load(config)
    keyring = load_keyring(event_keys)
    kafka_config = {**security_config(), **_kafka_options(bootstrap_servers, kafka_option or [])}
    count = topic_partitions(bootstrap_servers, topic)
    root = resolve_root(lakehouse)
    try:
        check_layouts(root, TABLES)
    except LakehouseLayoutError as err:
        raise CliError(str(err)) from err
    flow_config = FlowConfig(
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        partitions=count,
        lakehouse=root,
        settings=settings,
        tail=not once,
        kafka_config=kafka_config,
        max_in_flight=max_in_flight or None,
        align_partitions=workers > 1 if align_partitions is None else align_partitions,
        rules_path=str(rules) if rules else None,
        keyring=keyring,
        gate_interval_s=gate_interval,
        side_commit_interval_s=side_commit_interval,
        background_nice=background_nice,
        catch_up_lag_s=catch_up_lag or None,
    )
    from dataflows.run_log import configure
    from orderhealth.pipeline import run_flow

    if log_format not in ("text", "json"):
        raise CliError(f"--log-format must be text or json, not {log_format!r}")
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise CliError(f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}")
    configure("json" if log_format == "json" else "text", log_level.upper())
    console.print(f"Streaming {topic} ({count} partitions) from {bootstrap_servers} into {root}")
    for source, keys in sorted(keyring.sources.items()):
        console.print(f"Events from {source} must be signed ({len(keys.keys)} active key(s))")
    from dataflows.kafka_source import stop_requested

    _stop_on_signals()
    outcome = "failed"
    try:
        run_flow(
            flow_config,
            workers=workers,
            snapshot_interval_s=snapshot_interval,
            recovery_dir=recovery_dir,
            backup_interval_s=backup_interval,
        )
        outcome = "stopped" if stop_requested() else "finished"
    except KeyboardInterrupt:
        outcome = "interrupted"
    finally:
        _run_summary(outcome)


@app.command()
def generate(
    events: Events = 100_000,
    seed: Seed = 7,
    scenario: Scenario = "baseline",
    out: Annotated[
        Path | None, typer.Option(help="Write JSON lines to this file instead of Kafka.")
    ] = None,
    bootstrap_servers: Bootstrap = None,
    topic: Topic = "orders",
    partitions: Annotated[int, typer.Option(min=1, help="Partitions if the topic is created.")] = 4,
    rate: Annotated[
        float | None,
        typer.Option(min=1.0, help="Messages per second; default as fast as possible."),
    ] = None,
    bad_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of malformed messages.")
    ] = 0.0,
    very_late_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share arriving beyond the allowed lateness.")
    ] = 0.0,
    sign_keys: Annotated[
        Path | None,
        typer.Option(help="Sign the events of the sources in this key file (their sign_with key)."),
    ] = None,
) -> None:
    """Generate synthetic order events to Kafka or to a JSON-lines file."""
    if scenario not in SCENARIOS:
        raise CliError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    gen = GeneratorConfig(
        events=events,
        seed=seed,
        scenario=scenario,
        bad_fraction=bad_fraction,
        very_late_fraction=very_late_fraction,
        keyring=load_keyring(sign_keys, environ={}) if sign_keys else None,
    )
    if out is not None:
        with out.open("wb") as handle:
            for key, value in generate_messages(gen):
                handle.write(value.replace(b"\n", b" ") + b"\n")
                del key
        console.print(f"Wrote {events:,} events to {out}")
        return
    if bootstrap_servers is None:
        raise CliError("give --out FILE, or Kafka via KAFKA_BOOTSTRAP_SERVERS/--bootstrap-servers")
    ensure_topic(bootstrap_servers, topic, partitions)
    with _progress() as progress, _tracked(progress, "produce", events) as bump:
        sent = produce(bootstrap_servers, topic, generate_messages(gen), rate=rate, on_sent=bump)
    console.print(f"Produced {sent:,} events to {topic} on {bootstrap_servers}")


@app.command("event-keygen")
def event_keygen(
    path: Annotated[Path, typer.Argument(help="The key file to create (mode 0600).")],
    source: Annotated[
        list[str], typer.Option("--source", help="A source system that must sign (repeatable).")
    ],
    key_id: Annotated[
        list[str] | None,
        typer.Option("--key-id", help="Key id(s): two ids give a rotation pair; default k1."),
    ] = None,
) -> None:
    """Create an event-signing key file: random HMAC-SHA256 secrets per source system."""
    if path.exists():
        raise CliError(f"{path} exists; refusing to replace keys (move it away first)")
    ring = write_key_file(path, source, key_id or ["k1"])
    for name, keys in sorted(ring.sources.items()):
        console.print(
            f"{name}: keys {', '.join(keys.keys)}; producers sign with {keys.sign_with!r}"
        )
    console.print(
        f"Wrote {path} (mode 0600). Run the flow with --event-keys {path}; give each source "
        "its own section only."
    )


@app.command()
def status(
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    bootstrap_servers: Bootstrap = None,
    topic: Annotated[
        str | None, typer.Option(help="Only this topic (default: every topic in bronze).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Watermark, last published windows, consumer lag, quarantine and dead letters."""
    from orderhealth.status import pipeline_status

    root = resolve_root(lakehouse)
    count = topic_partitions(bootstrap_servers, topic) if bootstrap_servers and topic else None
    state = pipeline_status(
        root, bootstrap_servers=bootstrap_servers, topic=topic, partitions=count
    )
    if as_json:
        body = msgspec.to_builtins(state)
        for entry, lag in zip(body["partitions"], state.partitions, strict=True):
            entry["lag"] = lag.lag
        console.print_json(msgspec.json.encode(body).decode())
        return
    _print_status(state)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


def _print_status(state: PipelineStatus) -> None:
    console.print(f"[bold]Lakehouse[/] {state.lakehouse}")
    console.print(f"Watermark (staged): {_when(state.watermark)}")
    console.print(f"Watermark (published): {_when(state.published_watermark)}")
    windows = Table("Window", "Last final window ends", "Latest provisional ends")
    for w in state.windows:
        windows.add_row(w.window_size, _when(w.last_final_end), _when(w.latest_provisional_end))
    console.print(windows if state.windows else "Published windows: none yet")
    lags = Table("Topic", "Partition", "Processed offset", "High watermark", "Lag")
    for p in state.partitions:
        lags.add_row(
            p.topic,
            str(p.partition),
            f"{p.processed_offset:,}",
            "-" if p.high_watermark is None else f"{p.high_watermark:,}",
            "unknown" if p.lag is None else f"{p.lag:,}",
        )
    console.print(lags if state.partitions else "Partitions: nothing consumed yet")
    if state.lag_error:
        console.print(f"[yellow]Lag unknown:[/] {state.lag_error}")
    console.print(f"Events in bronze: {state.events_in_bronze:,}")
    dead = ", ".join(f"{r} {n:,}" for r, n in state.dead_letters.items())
    console.print(
        f"Dead letters: {sum(state.dead_letters.values()):,}" + (f" ({dead})" if dead else "")
    )
    colour = "red" if state.quarantined_batches else "green"
    console.print(
        f"Quarantine: [{colour}]{state.quarantined_batches} pending batch(es)[/], "
        f"{state.quarantined_rows:,} rows (orderhealth quality list)"
    )
    if state.last_gate_run_id:
        console.print(
            f"Last gate run: {state.last_gate_run_id} {state.last_gate_outcome} "
            f"at {_when(state.last_gate_at)}"
        )


@app.command()
def restate(
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    window_size: Annotated[
        list[str] | None,
        typer.Option("--window-size", help="Window size(s) to restate; default all configured."),
    ] = None,
    start: Annotated[
        datetime | None, typer.Option("--from", help="First window start (UTC), inclusive.")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--to", help="Last window start (UTC), exclusive.")
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Topic partitions; default: those seen in bronze.")
    ] = None,
    config: Config = None,
) -> None:
    """Recompute windows from bronze (late events included) and rewrite them."""
    from orderhealth.restate import restate as run_restatement

    root = resolve_root(lakehouse)
    utc = [d.replace(tzinfo=UTC) if d is not None and d.tzinfo is None else d for d in (start, end)]
    with console.status("Recomputing windows from bronze/order_events..."):
        result = run_restatement(
            root,
            HealthSettings.load(config),
            window_sizes=window_size,
            start=utc[0],
            end=utc[1],
            partitions=partitions,
        )
    console.print(
        f"Restated {result.rows_recomputed:,} window rows from bronze version "
        f"{result.bronze_version} ({result.late_events:,} late events included); "
        f"{result.rows_written:,} written"
        + ("" if result.rows_written else " (already restated at this bronze version)")
    )
    from lakehouse.publication import Publisher

    with console.status("Gating the restated rows before publication..."):
        runs = Publisher(root).run_all()
    for gate_run in runs:
        console.print(
            f"Quality gate {gate_run.batch_id}: {gate_run.outcome} ({gate_run.row_count:,} rows)"
            + (f" {escape('; '.join(gate_run.failed))}" if gate_run.failed else "")
        )


@app.command()
def superset(
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    home: Annotated[
        Path, typer.Option(help="Superset's home: metadata, secret key, DuckDB views, log.")
    ] = Path("data/superset"),
    port: Annotated[int, typer.Option(help="Loopback port to serve on.")] = 8088,
    demo_users: Annotated[
        bool, typer.Option(help="Also create 'executive' and 'finance' users (passwords printed).")
    ] = False,
    serve_it: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after setting up.")
    ] = True,
) -> None:
    """Install (if needed), initialise and serve Superset over the published tables."""
    from orderhealth.superset_cmd import SupersetError, bootstrap, wait_healthy
    from orderhealth.superset_cmd import serve as start

    root = resolve_root(lakehouse)
    admin_password = os.environ.get("ORDERHEALTH_SUPERSET_ADMIN_PASSWORD", "")
    users = [f"admin:Admin:{admin_password}" if admin_password else "admin:Admin"]
    if demo_users:
        users += ["executive:Executive", "finance:Finance"]
    try:
        with console.status("Setting up Superset...") as status:
            setup = bootstrap(root, home, users=users, on_step=lambda s: status.update(s + "..."))
    except SupersetError as err:
        raise CliError(str(err)) from err
    if setup.secret_generated:
        console.print(
            f"Generated a Superset secret key in {setup.home / 'secret_key'} "
            "(set SUPERSET_SECRET_KEY to use your own)."
        )
    console.print(f"DuckDB views over {root}: {', '.join(setup.views) or 'none yet'}")
    for user, password in setup.passwords.items():
        console.print(f"  user [bold]{user}[/] password [bold]{escape(password)}[/]")
    if not serve_it:
        return
    process = start(setup, port)
    url = f"http://127.0.0.1:{port}"
    try:
        with console.status(f"Starting Superset on {url} ..."):
            try:
                wait_healthy(process, url, setup.home / "superset.log", timeout_s=180)
            except SupersetError as err:
                raise CliError(str(err).splitlines()[0]) from err
        console.print(f"Superset is up: [bold]{url}[/]  (Ctrl-C to stop)")
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        process.terminate()
        process.wait(timeout=30)


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Loopback port; 0 picks a free one.")] = 9092,
    topic: Topic = "orders",
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the topic to create.")] = 4,
) -> None:
    """Run the embedded Kafka-protocol broker (Tansu) in the foreground."""
    embedded = EmbeddedBroker(port=port or None).start()
    try:
        ensure_topic(embedded.bootstrap_servers, topic, partitions)
        console.print(
            f"Embedded broker on [bold]{embedded.bootstrap_servers}[/] with topic {topic} "
            f"({partitions} partitions); storage is in memory. Ctrl-C to stop.\n"
            f"  export KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap_servers}"
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        embedded.stop()


@app.command()
def bench(
    events: Annotated[
        int, typer.Option(min=1000, help="Pre-produced events for the throughput runs.")
    ] = 1_000_000,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the bench topic.")] = 8,
    workers: Annotated[
        list[int] | None, typer.Option(min=1, help="Worker counts to run (repeatable).")
    ] = None,
    rate: Annotated[
        float, typer.Option(min=1, help="Events/s of the steady producer (freshness).")
    ] = 10_000,
    seconds: Annotated[float, typer.Option(min=1, help="How long the steady producer runs.")] = 60,
    live: Annotated[
        bool,
        typer.Option(
            help="Also measure freshness on a live stream (event time at the wall clock's pace)."
        ),
    ] = True,
    open_orders: Annotated[
        list[int] | None, typer.Option(min=1, help="Open-order counts for memory (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to save the JSON result.")] = Path(
        "bench/results/bench.json"
    ),
) -> None:
    """Benchmark: throughput against the consume+decode ceiling, freshness, memory, gate, commits.

    Takes a while (about 15 min at the defaults on 2 cores); prints a table
    and saves it as JSON with a top-level ``ratio`` (pipeline on 1 worker ÷
    ceiling).  Figures are ratios within one run; see bench/README.md.
    """
    from bench.suite import BenchConfig
    from bench.suite import main as run_bench

    run_bench(
        BenchConfig(
            events=events,
            partitions=partitions,
            workers=tuple(workers or (1, 2)),
            rate=rate,
            seconds=seconds,
            fresh_live=live,
            open_orders=tuple(open_orders or (100_000, 500_000, 1_000_000)),
            out=str(out),
        )
    )


# Registered after the commands above so that --help lists them in workflow order.
register(app)


def _expected_cause(err: BaseException) -> BaseException | None:
    """An expected error raised inside a dataflow step (Bytewax wraps it)."""
    from quality.record_rules import RecordRuleFailure

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, RecordRuleFailure | SettingsError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def main() -> None:
    """Console entry point: one clear line per error unless ``--debug``."""
    if "--debug" not in sys.argv:
        # Bytewax re-raises a step's exception as a Rust panic; without this a
        # RUST_BACKTRACE=1 environment prints ~90 frames before our one line.
        os.environ["RUST_BACKTRACE"] = "0"
    try:
        app()
    except (CliError, KafkaSetupError, BrokerError, SettingsError, ValueError) as err:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except Exception as err:
        if _state["debug"]:
            raise
        if (cause := _expected_cause(err)) is not None:
            console.print(f"[bold red]error:[/] {cause}", highlight=False)
            sys.exit(1)
        console.print(
            f"[bold red]error:[/] {type(err).__name__}: {err} (rerun with --debug for details)",
            highlight=False,
        )
        sys.exit(1)
