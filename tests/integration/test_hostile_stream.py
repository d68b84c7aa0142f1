"""The hostile corpus through real Kafka and the real flow: nothing crashes, nothing is lost."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer

from lakehouse.reader import read_table
from lakehouse.tables import BRONZE_EVENTS, DEAD_LETTER
from orderhealth.generator import GeneratorConfig
from orderhealth.kafka import client_config
from tests.factories import event
from tests.integration.conftest import Kafka, load_topic, run_to_end
from tests.unit.test_hostile_input import HOSTILE

pytestmark = pytest.mark.integration


def _produce(broker: Kafka, topic: str, messages: list[tuple[bytes | None, bytes]]) -> list[int]:
    """Produce to partition 0; returns the offsets, in order."""
    config = client_config(broker.bootstrap_servers)
    config["message.max.bytes"] = str(8 * 1024 * 1024)  # room for the 5 MB message
    producer = Producer(config)
    offsets: dict[int, int] = {}

    for index, (key, value) in enumerate(messages):

        def delivered(err: object, msg: object, index: int = index) -> None:
            assert err is None, err
            offsets[index] = msg.offset()  # type: ignore[attr-defined]

        producer.produce(topic, value=value, key=key, partition=0, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0
    return [offsets[i] for i in range(len(messages))]


def test_hostile_messages_are_dead_lettered_or_flagged_and_every_message_is_counted(
    broker: Kafka, tmp_path: Path
) -> None:
    valid = GeneratorConfig(events=3_000, seed=41, scenario="baseline")
    topic = load_topic(broker, valid, partitions=2)
    # Newer than the generated events, so it is not late in its partition.
    sample = event("ORDER_CREATED", "HOSTILE-1", when=datetime(2026, 11, 10, 8, tzinfo=UTC))
    key = sample.order_id.encode()
    # The corpus is keyed by the sample's order id so that each message fails
    # for the reason it was built for, not for a key mismatch.
    corpus: list[tuple[str, bytes | None, bytes, str | None]] = [
        (case, key, raw.replace(b'"O1"', b'"HOSTILE-1"'), reason and reason.value)
        for case, raw, reason in HOSTILE
    ]
    good = msgspec.json.encode(sample)
    future = msgspec.json.encode(
        msgspec.structs.replace(
            sample, event_id="future", event_time=datetime.now(UTC) + timedelta(days=30)
        )
    )
    forged = msgspec.json.encode(msgspec.structs.replace(sample, source_system="forged"))
    corpus += [
        ("no Kafka key", None, good, "missing_key"),
        ("event_time far in the future", key, future, "rule_violation"),
        ("the sample event", key, good, None),
        ("duplicate event_id, different payload", key, forged, None),
    ]
    offsets = _produce(broker, topic, [(k, v) for _, k, v, _ in corpus])

    run_to_end(broker, topic, tmp_path)  # returns: the flow did not die

    dead = read_table(str(tmp_path), DEAD_LETTER).to_pylist()
    bronze = read_table(str(tmp_path), BRONZE_EVENTS).to_pylist()
    dead_at = {(r["partition"], r["offset"]): r for r in dead}
    bronze_at = {(r["partition"], r["offset"]): r for r in bronze}
    table = []
    for (case, _, raw, reason), offset in zip(corpus, offsets, strict=True):
        where = (0, offset)
        if reason is None:
            assert where in bronze_at, case
            table.append((case, "accepted", bronze_at[where]["quality_warnings"]))
            continue
        assert where in dead_at, case
        row = dead_at[where]
        assert row["reason"] == reason, (case, row["reason"], row["message"])
        assert row["value"] == raw and row["message"], case  # raw bytes kept
        table.append((case, row["reason"], row["message"][:70]))
    conflict = bronze_at[(0, offsets[-1])]
    assert conflict["is_duplicate"] and conflict["quality_warnings"] == "event_id_conflict"
    assert dead_at[(0, offsets[-3])]["rule"] == "event_time_not_in_future"

    # Conservation: produced = valid + dead-lettered (rule drops are dead letters).
    produced = valid.events + len(corpus)
    assert len(bronze) + len(dead) == produced
    assert len(set(bronze_at) | set(dead_at)) == produced
    print(json.dumps(table, indent=1))
    print(Counter(r["reason"] for r in dead))
    print(f"produced {produced:,} = bronze {len(bronze):,} + dead letters {len(dead):,}")
