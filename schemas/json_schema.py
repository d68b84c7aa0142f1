"""Generate the producer-facing JSON Schema from the msgspec contract.

The file ``schemas/order_event.schema.json`` is a generated artefact that
producers consume; ``tests/unit/test_contract.py`` fails when it drifts from
:mod:`schemas.events`.  Regenerate with ``python -m schemas.json_schema``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import SCHEMA_VERSION, Event

__all__ = ["SCHEMA_PATH", "build_json_schema", "render_json_schema"]

SCHEMA_PATH = Path(__file__).with_name("order_event.schema.json")


def build_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of one order lifecycle event."""
    schema = msgspec.json.schema(Event)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://orderhealth.dev/schemas/order_event/v{SCHEMA_VERSION}.json",
        "title": "Order lifecycle event",
        "description": (
            f"One JSON object per Kafka message, UTF-8, message key = order_id. "
            f"schema_version {SCHEMA_VERSION}. Generated from schemas/events.py; do not edit."
        ),
        **schema,
    }


def render_json_schema() -> str:
    return json.dumps(build_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render_json_schema())
    print(f"wrote {SCHEMA_PATH}")
