"""Kafka plumbing shared by the CLI, the generator and the tests.

Everything Kafka-specific outside the dataflow lives here: client settings
(with TLS/SASL passed through from the environment), topic creation and an
idempotent producer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

__all__ = [
    "KafkaSetupError",
    "client_config",
    "ensure_topic",
    "produce",
    "security_config",
    "topic_partitions",
]


class KafkaSetupError(RuntimeError):
    """The Kafka cluster is unreachable or refused a setup call."""


#: ``KAFKA_*`` variables that are not librdkafka settings.
_NOT_SETTINGS = {"KAFKA_BOOTSTRAP_SERVERS"}
#: librdkafka setting families that may come from the environment: TLS, SASL
#: (including OAUTHBEARER) and the client's identity.
_PASSED_THROUGH = ("security.", "ssl.", "sasl.", "client.")


def security_config(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """TLS/SASL librdkafka settings passed through from ``KAFKA_*`` variables.

    ``KAFKA_SECURITY_PROTOCOL=SASL_SSL`` becomes ``security.protocol``,
    ``KAFKA_SSL_CERTIFICATE_LOCATION`` ``ssl.certificate.location``,
    ``KAFKA_SASL_PASSWORD`` ``sasl.password``, and so on for every
    ``security.*``, ``ssl.*``, ``sasl.*`` and ``client.*`` setting -- what a
    production cluster (MSK, Confluent Cloud, Redpanda) asks for.  Values are
    never logged.
    """
    environ = os.environ if environ is None else environ
    config: dict[str, str] = {}
    for variable, value in environ.items():
        if not variable.startswith("KAFKA_") or variable in _NOT_SETTINGS or not value:
            continue
        name = variable.removeprefix("KAFKA_").lower().replace("_", ".")
        if name.startswith(_PASSED_THROUGH):
            config[name] = value
    return config


def client_config(bootstrap_servers: str) -> dict[str, str | int | float | bool]:
    """librdkafka settings: bootstrap servers plus :func:`security_config`."""
    return {"bootstrap.servers": bootstrap_servers, **security_config()}


def topic_partitions(bootstrap_servers: str, topic: str, timeout: float = 10.0) -> int:
    """Number of partitions of ``topic``; a clear error if it or the broker is missing."""
    admin = AdminClient(client_config(bootstrap_servers))
    try:
        metadata = admin.list_topics(topic=topic, timeout=timeout)
    except KafkaException as err:
        raise KafkaSetupError(
            f"cannot reach Kafka at {bootstrap_servers} within {timeout:g}s: {err}"
        ) from err
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise KafkaSetupError(f"Kafka topic {topic!r} does not exist on {bootstrap_servers}")
    return len(info.partitions)


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int, timeout: float = 10.0) -> int:
    """Create ``topic`` with ``partitions`` unless it exists; returns its partition count."""
    admin = AdminClient(client_config(bootstrap_servers))
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as err:
        raise KafkaSetupError(
            f"cannot reach Kafka at {bootstrap_servers} within {timeout:g}s: {err}"
        ) from err
    if topic not in existing:
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
        try:
            futures[topic].result(timeout)
        except KafkaException as err:
            if "TOPIC_ALREADY_EXISTS" not in str(err):
                raise KafkaSetupError(f"cannot create topic {topic!r}: {err}") from err
    return topic_partitions(bootstrap_servers, topic, timeout)


def produce(
    bootstrap_servers: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    *,
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce (key, value) messages; ``rate`` in messages/s, None = as fast as possible.

    Uses the idempotent producer, so a retried send is not duplicated by the
    producer itself.  Returns the number of messages acknowledged.
    """
    import time

    config = client_config(bootstrap_servers)
    config.update(
        {
            "enable.idempotence": "true",
            "linger.ms": "20",
            "queue.buffering.max.messages": "500000",
            "compression.type": "lz4",
        }
    )
    producer = Producer(config)
    failures: list[str] = []
    acked = 0

    def delivered(err: object, _msg: object) -> None:
        nonlocal acked
        if err is not None:
            failures.append(str(err))
        else:
            acked += 1

    started = time.monotonic()
    sent = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
            if on_sent is not None:
                on_sent(1000)
        if rate is not None:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    remaining = producer.flush(60)
    if on_sent is not None:
        on_sent(sent % 1000)
    if remaining or failures:
        raise KafkaSetupError(
            f"{remaining} messages undelivered, {len(failures)} failed"
            + (f": {failures[0]}" if failures else "")
        )
    return acked
