"""JSON text columns (event attributes, context, anomaly flags) for the lakehouse.

Keys are sorted so that equal values give equal text.  msgspec encodes a
few times faster than the standard library, which mattered: these columns
are written for every event and every changed order.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

__all__ = ["json_text"]

_ENCODER = msgspec.json.Encoder(order="sorted")


def json_text(value: Any) -> str:
    """Compact JSON with sorted keys; values msgspec cannot encode fall back to ``str``."""
    try:
        return _ENCODER.encode(value).decode()
    except (TypeError, ValueError):
        return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
