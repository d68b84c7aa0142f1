"""Verify a credit report as a bank would: signature, digests, and the figures themselves.

Every check runs (one failure does not hide another) and says what it found.
Needs only the report directory and, ideally, the company's public key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from orderhealth.credit.figures import EVIDENCE_SCHEMA, daily_figures, headline, monthly_figures
from orderhealth.credit.report import (
    DAILY_FACTS,
    EVIDENCE_CSV,
    EVIDENCE_PARQUET,
    FORMAT,
    company_headline,
)
from orderhealth.credit.signing import canonical_manifest, file_digest, key_id, verify_manifest

__all__ = ["Check", "verify_report"]


class Check(msgspec.Struct, frozen=True):
    name: str
    ok: bool
    detail: str


def _same(a: Any, b: Any) -> bool:
    """Equal, with floats compared to 1e-12 (JSON round-trips them exactly anyway)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _differences(stated: dict[str, Any], recomputed: dict[str, Any]) -> list[str]:
    return [
        f"{k}: stated {stated.get(k)!r}, recomputed {recomputed.get(k)!r}"
        for k in sorted(set(stated) | set(recomputed))
        if not _same(stated.get(k), recomputed.get(k))
    ]


def _read_evidence(directory: Path) -> tuple[pa.Table | None, pa.Table | None, str]:
    try:
        parquet = pq.read_table(directory / EVIDENCE_PARQUET).cast(EVIDENCE_SCHEMA)
    except (OSError, pa.ArrowException, ValueError) as err:
        return None, None, f"{EVIDENCE_PARQUET} unreadable: {err}"
    try:
        csv = pacsv.read_csv(
            directory / EVIDENCE_CSV,
            convert_options=pacsv.ConvertOptions(
                column_types={f.name: f.type for f in EVIDENCE_SCHEMA}, strings_can_be_null=True
            ),
        ).cast(EVIDENCE_SCHEMA)
    except (OSError, pa.ArrowException, ValueError) as err:
        return parquet, None, f"{EVIDENCE_CSV} unreadable: {err}"
    return parquet, csv, ""


def verify_report(manifest_path: Path, public_key: Ed25519PublicKey | None = None) -> list[Check]:
    """All checks of one report; it is valid when every check is ok."""
    checks: list[Check] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append(Check(name, ok, detail))

    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError as err:
        check("manifest", False, f"not JSON: {err}")
        return checks
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        check("manifest", False, f"not an {FORMAT} manifest")
        return checks
    canonical = canonical_manifest(manifest) == raw
    check(
        "manifest layout",
        canonical,
        "canonical" if canonical else "the bytes differ from the signed layout: it was edited",
    )
    try:
        signer = verify_manifest(manifest, public_key)
        pinned = "the expected key" if public_key else "the key embedded in the manifest"
        check("signature", True, f"Ed25519, key {key_id(signer)} ({pinned})")
    except ValueError as err:
        check("signature", False, str(err))

    directory = manifest_path.parent
    for name, entry in sorted(manifest.get("files", {}).items()):
        path = directory / name
        if not path.exists():
            check(f"digest {name}", False, "missing")
            continue
        actual = file_digest(path)
        ok = actual == entry.get("sha256") and path.stat().st_size == entry.get("bytes")
        detail = (
            f"sha256 {actual[:16]}..." if ok else f"expected {entry.get('sha256')}, got {actual}"
        )
        check(f"digest {name}", ok, detail)

    parquet, csv, error = _read_evidence(directory)
    if parquet is None or csv is None:
        check("evidence", False, error)
        return checks
    same = parquet.equals(csv)
    check(
        "evidence CSV = Parquet",
        same,
        f"{parquet.num_rows:,} rows" if same else "the two evidence files hold different rows",
    )
    figures = manifest.get("figures", {})
    recomputed = msgspec.to_builtins(headline(parquet))
    diffs = _differences(figures.get("headline") or {}, recomputed)
    check(
        "headline figures",
        not diffs,
        "recomputed from the evidence: equal" if not diffs else "; ".join(diffs[:4]),
    )
    months = msgspec.to_builtins(monthly_figures(parquet))
    ok = _same(figures.get("monthly"), months)
    check("monthly trend", ok, f"{len(months)} month(s) equal" if ok else "differs")

    try:
        facts = pacsv.read_csv(directory / DAILY_FACTS)
    except (OSError, pa.ArrowException) as err:
        check("daily facts", False, f"{DAILY_FACTS} unreadable: {err}")
        return checks
    subject = manifest.get("subject", {})
    mine = [
        r
        for r in facts.to_pylist()
        if r["subject_type"] == subject.get("type") and r["subject_id"] == subject.get("id")
    ]
    recomputed_days = daily_figures(parquet)
    mismatched = []
    for row in mine:
        day = recomputed_days.get(row["day"])
        got = (
            (day.kept, day.late, day.cancelled, day.delivered, day.deviation_us_sum)
            if day
            else (0, 0, 0, 0, 0)
        )
        if got != (
            row["kept"],
            row["late"],
            row["cancelled"],
            row["delivered"],
            row["deviation_us_sum"],
        ):
            mismatched.append(str(row["day"]))
    extra = {d for d, f in recomputed_days.items() if f.promised or f.delivered} - {
        r["day"] for r in mine
    }
    ok = not mismatched and not extra
    check(
        "daily facts = evidence",
        ok,
        f"{len(mine)} day(s) equal"
        if ok
        else f"days differ: {', '.join(sorted(mismatched + [str(d) for d in extra])[:5])}",
    )
    if figures.get("company") is not None:
        diffs = _differences(figures["company"], msgspec.to_builtins(company_headline(facts)))
        check(
            "company comparison",
            not diffs,
            "recomputed from the daily facts: equal" if not diffs else "; ".join(diffs[:3]),
        )
    return checks
