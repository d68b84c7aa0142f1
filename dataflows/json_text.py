"""JSON text columns (event attributes, context, anomaly flags) for the lakehouse.

Keys are sorted so that equal values give equal text.  msgspec encodes a
few times faster than the standard library's ``json.dumps``, which mattered:
these columns are written for every event and every changed order.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["json_text"]

#: Anything JSON has no type for is written as its ``str()``, never an error.
_ENCODER = msgspec.json.Encoder(order="sorted", enc_hook=str)


def json_text(value: Any) -> str:
    """Compact JSON text with sorted keys."""
    return _ENCODER.encode(value).decode()
