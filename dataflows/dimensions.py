"""How each dimension's value is read from an order at a moment in event time.

Adding a dimension is one entry here plus its name in ``health.toml``.  A value
is taken *as in effect at the fact's event time* (for example the warehouse
the order was routed to at that moment), so a late-arriving routing event only
changes facts at or after its own time -- never a window already final.
"""

from __future__ import annotations

from collections.abc import Callable

from dataflows.lifecycle import OrderView

__all__ = ["DIMENSION_READERS", "DimensionReader"]

#: (order view, event time in us) -> dimension value, or None when unknown then.
DimensionReader = Callable[[OrderView, int], str | None]


def _attribute(name: str) -> DimensionReader:
    """An ORDER_CREATED attribute, in effect from the creation time on."""

    def read(view: OrderView, at_us: int) -> str | None:
        if view.created_us is None or at_us < view.created_us:
            return None
        value = view.attributes.get(name)
        return None if value is None else str(value)

    return read


DIMENSION_READERS: dict[str, DimensionReader] = {
    "all": lambda _view, _at: "all",
    "warehouse_id": lambda view, at: view.value_at(view.warehouse_timeline, at),
    "carrier_id": lambda view, at: view.value_at(view.carrier_timeline, at),
    "region": _attribute("region"),
    "channel": _attribute("channel"),
    "customer_segment": _attribute("customer_segment"),
    "seller_id": _attribute("seller_id"),
}
