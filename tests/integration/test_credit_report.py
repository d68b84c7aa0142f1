"""Finance credit reports end to end: real Kafka, real flow and gate, real Delta, real processes.

The lakehouse is produced once by the streaming flow on the embedded broker;
reports are generated and verified by the ``orderhealth`` CLI as a bank would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pypdf import PdfReader

from lakehouse.publication import Publisher
from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS, PROMISE_FULFILMENT
from orderhealth.generator import GeneratorConfig
from tests.integration.conftest import Kafka, load_topic, run_to_end
from tests.integration.test_quality_gate import metric_row, stage_raw

pytestmark = pytest.mark.integration

SELLER = ("seller_id", "S003")
FILES = ("report.pdf", "evidence.parquet", "evidence.csv", "daily_facts.csv", "manifest.json")


def orderhealth(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process, in a directory without the demo's key."""
    return subprocess.run(
        [sys.executable, "-m", "orderhealth", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            **(env or {}),
        },
    )


@pytest.fixture(scope="module")
def lakehouse(broker: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~6 days of orders streamed through Kafka, the flow and the gate; some very late events."""
    root = tmp_path_factory.mktemp("credit") / "lakehouse"
    config = GeneratorConfig(
        events=30_000,
        seed=23,
        scenario="warehouse_outage",
        orders_per_minute=0.5,
        very_late_fraction=0.003,
    )
    run_to_end(broker, load_topic(broker, config), root)
    return root


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("keys")
    made = orderhealth("credit-keygen", str(directory / "company.pem"), cwd=directory)
    assert made.returncode == 0, made.stdout + made.stderr
    return directory / "company.pem", directory / "company.pub.pem"


def report(
    root: Path, out: Path, key: Path, *extra: str, subject: tuple[str, str] = SELLER
) -> subprocess.CompletedProcess[str]:
    return orderhealth(
        "credit-report",
        "--subject-type",
        subject[0],
        "--subject-id",
        subject[1],
        "--lakehouse",
        str(root),
        "--out",
        str(out),
        "--signing-key",
        str(key),
        *extra,
        cwd=out.parent,
    )


def verify(manifest: Path, public: Path | None) -> subprocess.CompletedProcess[str]:
    pin = ["--public-key", str(public)] if public else []
    return orderhealth("credit-verify", str(manifest), *pin, cwd=manifest.parent)


@pytest.fixture(scope="module")
def seller_report(
    lakehouse: Path, keys: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("report") / "seller"
    made = report(lakehouse, out, keys[0])
    assert made.returncode == 0, made.stdout + made.stderr
    return out


def manifest_of(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return data


def test_untouched_report_verifies_and_the_pdf_states_the_figures(
    seller_report: Path, keys: tuple[Path, Path]
) -> None:
    for name in FILES:
        assert (seller_report / name).stat().st_size > 0, name
    checked = verify(seller_report / "manifest.json", keys[1])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Verified:" in checked.stdout
    manifest = manifest_of(seller_report)
    head = manifest["figures"]["headline"]
    assert head["promised"] == head["kept"] + head["late"] + head["cancelled"] > 0
    assert head["kept_rate_ci_low"] < head["kept_rate"] < head["kept_rate_ci_high"]
    lineage = manifest["lineage"]
    assert set(lineage["table_versions"]) >= {"gold/promise_fulfilment", "bronze/order_events"}
    assert lineage["validation_runs"], "no gate run cited"
    assert all(r["suite"] == "promise_fulfilment" for r in lineage["validation_runs"])
    assert set(manifest["files"]) == set(FILES) - {"manifest.json"}
    text = "\n".join(page.extract_text() for page in PdfReader(seller_report / "report.pdf").pages)
    for needle in (
        "Promise-fulfilment credit evidence",
        "seller_id=S003",
        f"{100 * head['kept_rate']:.2f}%",
        f"{head['kept']:,}",
        "95% Wilson interval",
        "Comparison with the company",
        "Methodology",
        "Lineage",
        lineage["validation_runs"][0]["run_id"],
        manifest["files"]["evidence.csv"]["sha256"],
    ):
        assert needle in text, needle


def _independent_kept_late(
    root: Path, subject: tuple[str, str], days: set[date]
) -> tuple[int, int]:
    """Kept and late promises straight from bronze/order_events, with pandas.

    Written from SPEC §4 alone: accepted events (not duplicates, not beyond the
    allowed lateness), first promise from ORDER_CREATED; kept = delivered by
    it (counted on the delivery day), late = not (counted on the promise
    day); cancelled earlier = neither.  Every reported day is final, so a
    promise that passed is known to be late.
    """
    events = read_table(str(root), BRONZE_EVENTS).to_pandas()
    events = events[~events["is_duplicate"] & ~events["is_late"]]
    created = (
        events[events["event_type"] == "ORDER_CREATED"]
        .sort_values("event_time")
        .groupby("order_id")
        .first()
    )
    delivered = events[events["event_type"] == "DELIVERED"].groupby("order_id")["event_time"].min()
    cancelled = events[events["event_type"] == "CANCELLED"].groupby("order_id")["event_time"].min()
    orders = created[[subject[0], "promised_delivery_at", "event_time"]].rename(
        columns={"event_time": "created_at", "promised_delivery_at": "promise"}
    )
    orders = orders[orders[subject[0]] == subject[1]]
    orders = orders.join(delivered.rename("delivered")).join(cancelled.rename("cancelled"))
    kept = late = 0
    for row in orders.itertuples():
        on_time = pd.notna(row.delivered) and row.delivered <= row.promise
        resolved_at = row.delivered if on_time else row.promise
        if pd.notna(row.cancelled) and row.cancelled < resolved_at:
            continue
        if resolved_at.date() in days:
            kept += int(on_time)
            late += int(not on_time)
    return kept, late


def test_headline_kept_rate_equals_an_independent_computation_from_bronze(
    lakehouse: Path, seller_report: Path
) -> None:
    manifest = manifest_of(seller_report)
    period = manifest["period"]
    start, end = date.fromisoformat(period["from"]), date.fromisoformat(period["to"])
    days = {start + timedelta(days=i) for i in range((end - start).days + 1)}
    assert len(days) == period["days_covered"] >= 3
    kept, late = _independent_kept_late(lakehouse, SELLER, days)
    head = manifest["figures"]["headline"]
    assert (head["kept"], head["late"]) == (kept, late)
    assert head["kept_rate"] == kept / (kept + late)


@pytest.mark.parametrize("name", FILES)
def test_a_one_byte_edit_of_any_file_fails_verification(
    seller_report: Path, keys: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(seller_report, copy)
    data = bytearray((copy / name).read_bytes())
    middle = len(data) // 2
    if name == "manifest.json":
        # A digit of a figure: the JSON stays valid, only the signature can tell.
        middle = data.index(b'"kept": ') + len(b'"kept": ')
        data[middle] = ord("9") if data[middle] != ord("9") else ord("8")
    else:
        data[middle] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    checked = verify(copy / "manifest.json", keys[1])
    assert checked.returncode == 1, checked.stdout
    assert "does NOT verify" in checked.stdout
    failed = "signature" if name == "manifest.json" else f"digest {name}"
    assert f"{failed}:" in checked.stdout.split("does NOT verify", 1)[1]


def test_a_wrong_key_fails_verification(
    lakehouse: Path, seller_report: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    assert orderhealth("credit-keygen", str(other), cwd=tmp_path).returncode == 0
    checked = verify(seller_report / "manifest.json", tmp_path / "other.pub.pem")
    assert checked.returncode == 1
    assert "expected key" in checked.stdout
    # A report signed with another key does not pass as the company's.
    forged = tmp_path / "forged"
    assert report(lakehouse, forged, other).returncode == 0
    assert verify(forged / "manifest.json", None).returncode == 0  # self-consistent...
    checked = verify(forged / "manifest.json", keys[1])  # ...but not the company's key
    assert checked.returncode == 1 and "expected key" in checked.stdout


def test_a_quarantined_day_is_refused_by_default_and_marked_when_excluded(
    lakehouse: Path, seller_report: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    root = tmp_path / "lakehouse"
    shutil.copytree(lakehouse, root)
    period = manifest_of(seller_report)["period"]
    day = date.fromisoformat(period["from"]) + timedelta(days=1)
    start = pd.Timestamp(day, tz="UTC").to_pydatetime()
    # A buggy batch: more orders on time than resolved for the seller's day.
    stage_raw(
        root,
        [
            metric_row(
                0,
                window_size="1d",
                window_start=start,
                window_end=start + timedelta(days=1),
                dimension=SELLER[0],
                dimension_value=SELLER[1],
                is_final=True,
                orders_resolved=5,
                orders_on_time=7,
                on_time_rate=1.4,
            )
        ],
    )
    runs = Publisher(str(root)).run_all()
    assert [r.outcome for r in runs] == ["quarantined"]
    batch = runs[0].batch_id

    refused = report(root, tmp_path / "refused", keys[0])
    assert refused.returncode == 1
    message = refused.stdout.replace("\n", "")
    assert f"{day} seller_id=S003: quarantined ({batch} pending)" in message
    assert "--exclude-unclean" in message
    assert not (tmp_path / "refused" / "manifest.json").exists()

    out = tmp_path / "excluded"
    made = report(root, out, keys[0], "--exclude-unclean")
    assert made.returncode == 0, made.stdout + made.stderr
    manifest = manifest_of(out)
    excluded = manifest["period"]["excluded_days"]
    assert [(e["day"], e["reason"]) for e in excluded] == [(day.isoformat(), "quarantined")]
    assert manifest["period"]["days_covered"] == period["days_covered"] - 1
    text = "\n".join(p.extract_text() for p in PdfReader(out / "report.pdf").pages)
    assert "EXCLUDED" in text and batch in text
    assert verify(out / "manifest.json", keys[1]).returncode == 0


def test_no_data_unknown_subject_and_missing_key_are_one_line_errors(
    lakehouse: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    nobody = report(lakehouse, tmp_path / "x", keys[0], subject=("seller_id", "S999"))
    assert nobody.returncode == 1
    assert nobody.stdout.startswith(
        "error: no published promise-fulfilment facts for seller_id=S999"
    )
    assert "S003" in nobody.stdout and not (tmp_path / "x" / "report.pdf").exists()
    unknown = report(lakehouse, tmp_path / "y", keys[0], subject=("planet", "mars"))
    assert unknown.returncode == 1 and "unknown subject type 'planet'" in unknown.stdout
    keyless = orderhealth("credit-report", "--lakehouse", str(lakehouse), cwd=tmp_path)
    assert keyless.returncode == 1 and "credit-keygen" in keyless.stdout
    assert "Traceback" not in nobody.stderr + unknown.stderr + keyless.stderr
    facts = read_table(str(lakehouse), PROMISE_FULFILMENT)
    assert facts.num_rows > 0  # the errors are not for lack of data


def test_pseudonymised_evidence_hides_order_ids_and_still_verifies(
    lakehouse: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "pseudo"
    made = orderhealth(
        "credit-report",
        "--subject-type",
        "all",
        "--subject-id",
        "all",
        "--lakehouse",
        str(lakehouse),
        "--out",
        str(out),
        "--signing-key",
        str(keys[0]),
        "--pseudonymise",
        cwd=tmp_path,
        env={"ORDERHEALTH_PSEUDONYM_KEY": "a-secret-of-sufficient-length"},
    )
    assert made.returncode == 0, made.stdout + made.stderr
    refs = pd.read_parquet(out / "evidence.parquet")["order_ref"]
    assert refs.str.fullmatch(r"[0-9a-f]{64}").all()
    assert not refs.str.startswith("ORD-").any()
    assert "ORD-" not in (out / "evidence.csv").read_text()
    manifest = manifest_of(out)
    assert manifest["pseudonymisation"]["method"].startswith("HMAC-SHA256")
    assert manifest["figures"]["company"] is None  # the company report compares with nothing
    assert verify(out / "manifest.json", keys[1]).returncode == 0
    assert os.stat(keys[0]).st_mode & 0o077 == 0
