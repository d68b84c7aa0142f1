"""Benchmark the credit report on a year of daily facts.

    .venv/bin/python -m bench.credit_report [--days 365] [--orders-per-day 72]
                                            [--lakehouse data/bench-year]

Builds (once; reused when the directory exists) a lakehouse holding a year of
orders streamed through the embedded broker, the flow and the gate, then
times ``credit-report`` for the company and for one seller, and
``credit-verify``, step by step.  The share of each step in the same run says
where the time goes; the report only has to stay well under a minute.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dataflows.settings import HealthSettings
from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS, PROMISE_FULFILMENT

#: Messages per order in the generator's mix, duplicates included (a 365-day run covered
#: 346 days at 7.3), so that --days days are covered.
EVENTS_PER_ORDER = 7.8


def build(root: Path, days: int, orders_per_day: float) -> float:
    """Stream a year of generated orders into ``root``; returns seconds taken."""
    from dataflows.flow import FlowConfig
    from orderhealth.broker import EmbeddedBroker
    from orderhealth.generator import GeneratorConfig, generate_messages
    from orderhealth.kafka import ensure_topic, produce
    from orderhealth.pipeline import run_flow

    started = time.perf_counter()
    events = int(days * orders_per_day * EVENTS_PER_ORDER)
    # The past year: the record rules drop events dated after their Kafka
    # (produce-time) timestamp, so a year from the generator's default start
    # would mostly be "in the future".
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = GeneratorConfig(
        events=events,
        seed=365,
        scenario="carrier_delay",
        orders_per_minute=orders_per_day / 1440,
        start=start - timedelta(days=days + 3),
    )
    with EmbeddedBroker() as broker:
        ensure_topic(broker.bootstrap_servers, "orders-year", 4)
        produce(broker.bootstrap_servers, "orders-year", generate_messages(config))
        run_flow(
            FlowConfig(
                bootstrap_servers=broker.bootstrap_servers,
                topic="orders-year",
                partitions=4,
                lakehouse=str(root),
                settings=HealthSettings.load(),
                tail=False,
            )
        )
    return time.perf_counter() - started


def timed_report(root: Path, out: Path, subject: tuple[str, str]) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from orderhealth.credit.evidence import Subject
    from orderhealth.credit.report import build_report
    from orderhealth.credit.verify import verify_report

    marks: list[tuple[str, float]] = []

    def step(what: str) -> None:
        marks.append((what, time.perf_counter()))

    key = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    result = build_report(str(root), Subject(*subject), out, key=key, step=step)
    total = time.perf_counter() - started
    ends = [t for _, t in marks[1:]] + [started + total]
    steps = {name: end - t for (name, t), end in zip(marks, ends, strict=True)}
    verify_started = time.perf_counter()
    checks = verify_report(result.manifest, key.public_key())
    manifest = json.loads(result.manifest.read_text())
    return {
        "subject": f"{subject[0]}={subject[1]}",
        "days_covered": manifest["period"]["days_covered"],
        "promised": result.headline.promised,
        "report_s": total,
        "steps_s": steps,
        "verify_s": time.perf_counter() - verify_started,
        "verified": all(c.ok for c in checks),
        "pdf_bytes": (out / "report.pdf").stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--orders-per-day", type=float, default=72.0)
    parser.add_argument("--lakehouse", default="data/bench-year")
    parser.add_argument("--out", default="bench/results/credit_report.json")
    args = parser.parse_args()
    console = Console()
    root = Path(args.lakehouse).resolve()
    built_s = None
    if not (root / PROMISE_FULFILMENT.path).exists():
        console.print(f"Streaming {args.days} days of orders into {root} (once) ...")
        built_s = build(root, args.days, args.orders_per_day)
    facts = read_table(str(root), PROMISE_FULFILMENT, ["day", "subject_type"])
    company_days = len(set(facts["day"].to_pylist()))
    bronze_rows = read_table(str(root), BRONZE_EVENTS, ["order_id"]).num_rows
    results = [
        timed_report(root, root.parent / "bench-report-company", ("all", "all")),
        timed_report(root, root.parent / "bench-report-seller", ("seller_id", "S001")),
    ]
    table = Table(title=f"credit-report on {company_days} days ({bronze_rows:,} bronze events)")
    for column in ("subject", "days", "promised", "report s", "slowest step", "verify s", "ok"):
        table.add_column(column, justify="right")
    for r in results:
        slowest = max(r["steps_s"].items(), key=lambda kv: kv[1])
        table.add_row(
            r["subject"],
            str(r["days_covered"]),
            f"{r['promised']:,}",
            f"{r['report_s']:.1f}",
            f"{slowest[0]} {slowest[1]:.1f} s ({slowest[1] / r['report_s']:.0%})",
            f"{r['verify_s']:.1f}",
            "yes" if r["verified"] else "NO",
        )
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "fact_days": company_days,
                "fact_rows": facts.num_rows,
                "bronze_events": bronze_rows,
                "build_s": built_s,
                "reports": results,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"saved {args.out}")


if __name__ == "__main__":
    main()
