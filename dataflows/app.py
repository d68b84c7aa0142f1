"""Entry point for Bytewax's own runner, for production deployments.

``orderhealth run`` is the friendly way to start the flow.  For multi-process
clusters use Bytewax's runner directly, which accepts every scaling and
recovery flag (``-w``, ``-i``, ``-a``, ``-r``, ``-s``, ``-b``)::

    export KAFKA_BOOTSTRAP_SERVERS=broker:9092 ORDERHEALTH_TOPIC=orders \\
           ORDERHEALTH_LAKEHOUSE=s3://bucket/lakehouse
    mkdir -p /var/lib/orderhealth/recovery   # once:
    python -m bytewax.recovery /var/lib/orderhealth/recovery 4
    python -m bytewax.run dataflows.app:get_flow -w 2 -i 0 -a "h0:2101;h1:2101" \\
        -r /var/lib/orderhealth/recovery -s 2 -b 600

Signed sources come from ``ORDERHEALTH_EVENT_KEYS`` / ``ORDERHEALTH_EVENT_KEY_<SOURCE>``
(see docs/operations.md).  Flow control is per process and is switched off when ``-a`` lists several
processes (see :mod:`dataflows.kafka_source`); set ``ORDERHEALTH_MAX_IN_FLIGHT``
to override.  Partitions are kept together in event time with several workers in one
process (``BYTEWAX_WORKERS_PER_PROCESS`` > 1, or ``ORDERHEALTH_ALIGN_PARTITIONS=1``;
``bytewax.run -w`` alone sets no variable the flow can read).
"""

from __future__ import annotations

import os
from pathlib import Path

from bytewax.dataflow import Dataflow

from dataflows.flow import FlowConfig, build_flow
from dataflows.interpreter_tuning import tune_interpreter
from dataflows.settings import HealthSettings

__all__ = ["config_from_env", "get_flow"]


class ConfigError(RuntimeError):
    """A required environment variable is missing."""


def config_from_env() -> FlowConfig:
    """Build the flow configuration from ``KAFKA_*`` and ``ORDERHEALTH_*`` variables."""
    from orderhealth.event_keys import load_keyring
    from orderhealth.kafka import security_config, topic_partitions

    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        raise ConfigError("set KAFKA_BOOTSTRAP_SERVERS to the Kafka cluster's bootstrap servers")
    topic = os.environ.get("ORDERHEALTH_TOPIC", "orders")
    lakehouse = os.environ.get("ORDERHEALTH_LAKEHOUSE", "data/lakehouse")
    if "://" not in lakehouse:
        lakehouse = str(Path(lakehouse).resolve())
    config_path = os.environ.get("ORDERHEALTH_HEALTH_CONFIG")
    multi_process = ";" in os.environ.get("BYTEWAX_ADDRESSES", "")
    in_flight = os.environ.get("ORDERHEALTH_MAX_IN_FLIGHT")
    return FlowConfig(
        bootstrap_servers=servers,
        topic=topic,
        partitions=topic_partitions(servers, topic),
        lakehouse=lakehouse,
        settings=HealthSettings.load(Path(config_path) if config_path else None),
        kafka_config=security_config(),
        rules_path=os.environ.get("ORDERHEALTH_RECORD_RULES"),
        max_in_flight=int(in_flight) if in_flight else (None if multi_process else 40_000),
        # bytewax.run -w sets no variable; BYTEWAX_WORKERS_PER_PROCESS does.
        align_partitions=_aligned(multi_process),
        # ORDERHEALTH_EVENT_KEYS (a key file) and ORDERHEALTH_EVENT_KEY_<SOURCE>.
        keyring=load_keyring(),
    )


def _aligned(multi_process: bool) -> bool:
    """ORDERHEALTH_ALIGN_PARTITIONS (1/0), else on for several workers in one process."""
    wanted = os.environ.get("ORDERHEALTH_ALIGN_PARTITIONS", "").strip()
    if multi_process:
        return False  # flow control cannot see the other processes' partitions
    if wanted:
        return wanted not in ("0", "false", "no")
    return int(os.environ.get("BYTEWAX_WORKERS_PER_PROCESS", "1") or 1) > 1


def get_flow() -> Dataflow:
    """The production dataflow, configured from the environment."""
    flow = build_flow(config_from_env())
    tune_interpreter()
    return flow
