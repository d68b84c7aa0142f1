"""TLS/SASL settings reach librdkafka from the environment and from --kafka-option."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException

from orderhealth.kafka import security_config


def test_kafka_variables_become_librdkafka_settings() -> None:
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": "broker:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "orderhealth",
        "KAFKA_SASL_PASSWORD": "s3cret",
        "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/kafka/client.pem",
        "KAFKA_CLIENT_ID": "orderhealth-eu",
        "KAFKA_HEAP_OPTS": "-Xmx1g",  # a broker-side variable, not ours
        "KAFKA_SSL_KEY_PASSWORD": "",  # unset in effect
    }
    assert security_config(environ) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "orderhealth",
        "sasl.password": "s3cret",
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "client.id": "orderhealth-eu",
    }


def test_librdkafka_accepts_them_and_names_a_bad_one() -> None:
    settings = security_config(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD": "p",
        }
    )
    Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "t", **settings}).close()
    with pytest.raises(KafkaException, match=r"security\.protocol"):
        Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "t", "security.protocol": "TLS9"})


def test_the_source_wrapper_finds_the_bytewax_internals_it_reads() -> None:
    """dataflows/kafka_source.py reads pinned Bytewax internals; an upgrade must fail here."""
    from dataflows.kafka_source import FlowControl, FlowControlledKafkaSource

    source = FlowControlledKafkaSource(["127.0.0.1:1"], ["t"], control=FlowControl(None))
    part = source.build_part("read", "0-t", None)  # connects lazily: no broker needed
    try:
        assert part.snapshot() == -2  # OFFSET_BEGINNING until a message is read
    finally:
        part.close()


def test_the_source_turns_off_bytewax_statistics_unless_asked_for() -> None:
    """Bytewax's per-second statistics are parsed on the event thread for a gauge nobody serves."""
    from dataflows.kafka_source import FlowControl, FlowControlledKafkaSource

    quiet = FlowControlledKafkaSource(["127.0.0.1:1"], ["t"], control=FlowControl(None))
    assert quiet._add_config["statistics.interval.ms"] == "0"
    asked = FlowControlledKafkaSource(
        ["127.0.0.1:1"],
        ["t"],
        control=FlowControl(None),
        add_config={"statistics.interval.ms": "1000", "fetch.wait.max.ms": "100"},
    )
    assert asked._add_config == {"statistics.interval.ms": "1000", "fetch.wait.max.ms": "100"}
