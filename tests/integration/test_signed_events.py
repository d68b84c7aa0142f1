"""Signed events end to end: the generator signs, the flow verifies, rotation, forgeries.

Real processes (``orderhealth generate --sign-keys``, ``orderhealth run
--event-keys``), real Kafka, real Delta.  The flow requires WMS and ERP to
sign; the producer signs WMS with the *old* of WMS's two active keys (a
rotation in progress) and does not sign ERP at all.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS, DEAD_LETTER
from orderhealth.generator import GeneratorConfig, generate_messages
from orderhealth.kafka import ensure_topic
from orderhealth.private_files import write_private
from schemas.signing import KeyRing, SourceKeys
from tests.factories import event
from tests.integration.conftest import Kafka, run_command
from tests.integration.test_hostile_stream import _produce

pytestmark = pytest.mark.integration

OLD, NEW, RETIRED = b"o" * 32, b"n" * 32, b"r" * 32
EVENTS = 6_000


def _key_file(path: Path, sources: dict[str, tuple[str, dict[str, bytes]]]) -> Path:
    lines = []
    for name, (sign_with, keys) in sources.items():
        lines += [f'["{name}"]', f'sign_with = "{sign_with}"', f'["{name}".keys]']
        lines += [f'"{k}" = "{base64.b64encode(v).decode()}"' for k, v in keys.items()]
    write_private(path, "\n".join(lines).encode())
    return path


def test_signed_sources_are_verified_rotation_works_and_forgeries_are_dead_lettered(
    broker: Kafka, tmp_path: Path
) -> None:
    wms = {"2026-10": OLD, "2026-11": NEW}
    flow_keys = _key_file(
        tmp_path / "flow-keys.toml",
        {"WMS": ("2026-11", wms), "ERP": ("k1", {"k1": b"e" * 32})},
    )
    producer_keys = _key_file(tmp_path / "wms-keys.toml", {"WMS": ("2026-10", wms)})
    topic = f"signed-{tmp_path.name}"
    ensure_topic(broker.bootstrap_servers, topic, 3)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "orderhealth",
            "generate",
            "--events",
            str(EVENTS),
            "--seed",
            "23",
            "--bootstrap-servers",
            broker.bootstrap_servers,
            "--topic",
            topic,
            "--sign-keys",
            str(producer_keys),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Forgeries, after the generated events (newer event times: not late).
    when = datetime(2026, 11, 20, 8, tzinfo=UTC)
    ring = KeyRing({"WMS": SourceKeys(keys=wms, sign_with="2026-11")})
    retired = KeyRing({"WMS": SourceKeys(keys={"2026-09": RETIRED}, sign_with="2026-09")})
    doc = json.loads(msgspec.json.encode(event("ORDER_CREATED", "FORGED-1", when=when)))
    doc["source_system"] = "WMS"
    forgeries = {
        "altered after signing": {**ring.sign(doc), "order_value": 1.0},
        "signed with a retired key": retired.sign({**doc, "event_id": "f2"}),
        "no signature": {**doc, "event_id": "f3"},
        "correctly signed": ring.sign({**doc, "event_id": "f4"}),
    }
    offsets = _produce(
        broker, topic, [(b"FORGED-1", json.dumps(d).encode()) for d in forgeries.values()]
    )

    done = subprocess.run(
        [*run_command(broker, topic, tmp_path / "lake"), "--event-keys", str(flow_keys)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Events from WMS must be signed (2 active key(s))" in done.stdout
    for secret in (OLD, NEW):  # no secret in the output or the logs
        assert base64.b64encode(secret).decode() not in done.stdout + done.stderr

    lake = str(tmp_path / "lake")
    bronze = read_table(lake, BRONZE_EVENTS, ["source_system", "partition", "offset"]).to_pylist()
    dead = read_table(lake, DEAD_LETTER).to_pylist()
    assert len(bronze) + len(dead) == EVENTS + len(forgeries)  # conservation

    # Every WMS event, signed with the old key of the rotation pair, was
    # accepted (and the one correctly signed forgery-shaped event); every
    # unsigned ERP event was not; unsigned events of other sources pass.
    generated = [json.loads(v) for _, v in generate_messages(GeneratorConfig(EVENTS, seed=23))]
    by_source = Counter(d["source_system"] for d in generated)
    accepted = Counter(r["source_system"] for r in bronze)
    assert by_source["WMS"] > 1000 and by_source["ERP"] > 100, by_source
    assert accepted == by_source - Counter({"ERP": by_source["ERP"]}) + Counter({"WMS": 1})

    dead_reasons = Counter(r["reason"] for r in dead)
    erp_dead = [r for r in dead if b'"ERP"' in r["value"]]
    assert len(erp_dead) == by_source["ERP"]
    assert all(r["reason"] == "signature_invalid" for r in erp_dead)
    assert all("must sign its events" in r["message"] for r in erp_dead)

    at = {(r["partition"], r["offset"]): r for r in dead}
    expected = {
        "altered after signing": "does not match the event",
        "signed with a retired key": "'2026-09' is not an active key",
        "no signature": "has no signature",
    }
    for (case, message), offset in zip(expected.items(), offsets, strict=False):
        row = at[(0, offset)]
        assert (row["reason"], message in row["message"]) == ("signature_invalid", True), case
    assert (0, offsets[-1]) not in at  # the correctly signed forgery-shaped event passed
    assert dead_reasons["signature_invalid"] == by_source["ERP"] + 3
