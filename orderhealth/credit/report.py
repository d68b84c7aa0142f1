"""Build a credit report directory: PDF, evidence (CSV + Parquet), daily facts, signed manifest.

::

    OUT/report.pdf          for people
    OUT/evidence.parquet    one row per order that counts (bank systems)
    OUT/evidence.csv        the same rows as CSV
    OUT/daily_facts.csv     the published daily facts used (subject and company)
    OUT/manifest.json       figures, lineage, SHA-256 of every file; Ed25519-signed
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import orderhealth
from orderhealth.credit.evidence import COMPANY, ReportData, Subject, gather
from orderhealth.credit.figures import (
    EVIDENCE_SCHEMA,
    Headline,
    daily_figures,
    headline,
    monthly_figures,
    totals_headline,
)
from orderhealth.credit.pdf import ReportContent, render_pdf
from orderhealth.credit.signing import (
    canonical_manifest,
    file_digest,
    key_id,
    pseudonymiser,
    sign_manifest,
)

__all__ = [
    "DAILY_FACT_COLUMNS",
    "FORMAT",
    "ReportResult",
    "build_report",
    "company_headline",
]

FORMAT = "orderhealth-credit-evidence/1"
PDF, EVIDENCE_PARQUET, EVIDENCE_CSV, DAILY_FACTS, MANIFEST = (
    "report.pdf",
    "evidence.parquet",
    "evidence.csv",
    "daily_facts.csv",
    "manifest.json",
)
DAILY_FACT_COLUMNS = [
    "day",
    "subject_type",
    "subject_id",
    "promised",
    "kept",
    "late",
    "cancelled",
    "delivered",
    "deviation_us_sum",
    "kept_rate",
    "validation_run_id",
    "quality_status",
]
_DESCRIPTIONS = {
    PDF: "the report for people",
    EVIDENCE_PARQUET: "order-level evidence (Parquet)",
    EVIDENCE_CSV: "order-level evidence (CSV, same rows)",
    DAILY_FACTS: "published daily facts used (subject and company)",
}


class ReportResult(msgspec.Struct, frozen=True):
    out: Path
    manifest: Path
    headline: Headline
    company: Headline | None
    excluded: list[str]
    key_id: str
    seconds: float


def company_headline(daily_facts: pa.Table) -> Headline:
    """The company's outcome figures from its rows of daily_facts.csv."""
    rows = daily_facts.filter(
        pc.and_(
            pc.equal(daily_facts["subject_type"], COMPANY[0]),
            pc.equal(daily_facts["subject_id"], COMPANY[1]),
        )
    )

    def total(column: str) -> int:
        return int(pc.sum(rows[column]).as_py() or 0)

    return totals_headline(total("kept"), total("late"), total("cancelled"))


def _pipeline_commit() -> str | None:
    repo = Path(orderhealth.__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if not commit:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return f"{commit}-dirty" if dirty.stdout.strip() else commit


def _pseudonymise(evidence: pa.Table, secret: bytes) -> tuple[pa.Table, str]:
    pseudonym, fingerprint = pseudonymiser(secret)
    refs = pa.array([pseudonym(o) for o in evidence["order_ref"].to_pylist()], pa.string())
    index = evidence.schema.get_field_index("order_ref")
    return evidence.set_column(index, EVIDENCE_SCHEMA.field("order_ref"), refs), fingerprint


def _daily_rates(data: ReportData) -> list[tuple[Any, float | None, float | None]]:
    def rates(table: pa.Table) -> dict[Any, float | None]:
        return {r["day"]: r["kept_rate"] for r in table.select(["day", "kept_rate"]).to_pylist()}

    mine, company = rates(data.facts), rates(data.company_facts)
    return [(day, mine.get(day), company.get(day)) for day in data.days]


def build_report(
    root: str,
    subject: Subject,
    out: Path,
    *,
    key: Ed25519PrivateKey,
    start: Any = None,
    end: Any = None,
    exclude_unclean: bool = False,
    pseudonym_key: bytes | None = None,
    step: Any = None,
) -> ReportResult:
    """Gather, check, write and sign one report.  Raises ``ReportRefused``."""
    started = time.perf_counter()

    def say(what: str) -> None:
        if step is not None:
            step(what)

    data = gather(root, subject, start, end, exclude_unclean=exclude_unclean, step=say)
    evidence = data.evidence
    pseudonymisation = None
    if pseudonym_key is not None:
        say("pseudonymise order ids")
        evidence, fingerprint = _pseudonymise(evidence, pseudonym_key)
        pseudonymisation = {
            "method": "HMAC-SHA256(key, order_id), hex",
            "key_fingerprint": fingerprint,
        }
    say("compute figures")
    figures = headline(evidence)
    months = monthly_figures(evidence)
    # The checks in gather() made the evidence's days equal the published facts.
    assert sum(d.promised for d in daily_figures(evidence).values()) == figures.promised

    out.mkdir(parents=True, exist_ok=True)
    for stale in (PDF, EVIDENCE_PARQUET, EVIDENCE_CSV, DAILY_FACTS, MANIFEST):
        (out / stale).unlink(missing_ok=True)
    say("write evidence files")
    evidence = evidence.sort_by([("outcome_day", "ascending"), ("order_ref", "ascending")])
    pq.write_table(evidence, out / EVIDENCE_PARQUET, compression="zstd")
    pacsv.write_csv(evidence, out / EVIDENCE_CSV)
    facts = pa.concat_tables(
        [data.facts.select(DAILY_FACT_COLUMNS)]
        + (
            []
            if (subject.type, subject.id) == COMPANY
            else [data.company_facts.select(DAILY_FACT_COLUMNS)]
        )
    )
    pacsv.write_csv(facts, out / DAILY_FACTS)
    company = company_headline(facts) if (subject.type, subject.id) != COMPANY else None

    generated = datetime.now(UTC).replace(microsecond=0)
    report_id = uuid.uuid4().hex[:16]
    public_key_id = key_id(key.public_key())
    excluded = [d.describe() for d in data.excluded]
    lineage = {
        "pipeline_version": orderhealth.__version__,
        "pipeline_commit": _pipeline_commit(),
        "lakehouse": root,
        "table_versions": data.versions,
        "validation_runs": data.runs,
        "evidence_rule": data.evidence_rule,
    }
    say("render PDF")
    files = {
        name: file_digest(out / name) for name in (EVIDENCE_PARQUET, EVIDENCE_CSV, DAILY_FACTS)
    }
    render_pdf(
        ReportContent(
            report_id=report_id,
            subject=str(subject),
            period=f"{data.start} to {data.end} ({len(data.days)} days covered)",
            generated_at=f"{generated:%Y-%m-%d %H:%M:%S} UTC",
            headline=figures,
            company=company,
            months=months,
            daily_rates=_daily_rates(data),
            excluded=excluded,
            lineage=lineage,
            files=files,
            key_id=public_key_id,
            pseudonymised=pseudonymisation is not None,
        ),
        out / PDF,
    )
    say("digest and sign")
    manifest = {
        "format": FORMAT,
        "report_id": report_id,
        "generated_at": generated.isoformat(),
        "subject": {"type": subject.type, "id": subject.id},
        "period": {
            "from": data.start.isoformat(),
            "to": data.end.isoformat(),
            "days_covered": len(data.days),
            "excluded_days": [
                {
                    "day": d.day.isoformat(),
                    "subject": d.subject,
                    "reason": d.reason,
                    "batches": list(d.batches),
                }
                for d in data.excluded
            ],
        },
        "figures": {
            "headline": msgspec.to_builtins(figures),
            "monthly": msgspec.to_builtins(months),
            "company": None if company is None else msgspec.to_builtins(company),
        },
        "lineage": lineage,
        "pseudonymisation": pseudonymisation,
        "files": {
            name: {
                "sha256": file_digest(out / name),
                "bytes": (out / name).stat().st_size,
                "description": _DESCRIPTIONS[name],
            }
            for name in (PDF, EVIDENCE_PARQUET, EVIDENCE_CSV, DAILY_FACTS)
        },
    }
    signed = sign_manifest(manifest, key)
    (out / MANIFEST).write_bytes(canonical_manifest(signed))
    return ReportResult(
        out=out,
        manifest=out / MANIFEST,
        headline=figures,
        company=company,
        excluded=excluded,
        key_id=public_key_id,
        seconds=time.perf_counter() - started,
    )
