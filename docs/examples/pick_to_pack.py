"""Worked example: a "pick-to-pack hours" metric (see docs/extending.md).

Load it with ``ORDERHEALTH_METRIC_PLUGINS=pick_to_pack`` (with this folder on
``PYTHONPATH``) and a ``pick_to_pack_hours_avg`` weight in ``health.toml``, or
paste the two definitions into ``dataflows/metrics.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from dataflows.formulas import MeanHours
from dataflows.lifecycle import OrderView
from dataflows.metrics import Agg, Component, Fact, FactValue


def pick_to_pack(view: OrderView) -> Iterable[FactValue]:
    """At packing: packed - picked.  Only uses events at or before the packing
    time, so a late event can never change a final window."""
    picked, packed = view.stage_us.get("PICKED"), view.stage_us.get("PACKED")
    if picked is not None and packed is not None and picked <= packed:
        yield FactValue(packed, packed - picked)


FACTS = (
    Fact(
        name="pick_to_pack",
        description="picked -> packed (us), at packing",
        stream=pick_to_pack,
        batch_sql=(
            "SELECT k.order_id, k.stage_t AS t, k.stage_t - p.stage_t AS value, "
            "k.stage_t AS dims_t FROM stages p JOIN stages k USING (order_id) "
            "WHERE p.stage = 'PICKED' AND k.stage = 'PACKED' AND p.stage_t <= k.stage_t"
        ),
        measures={"pick_to_pack_count": Agg.COUNT, "pick_to_pack_us_sum": Agg.SUM},
    ),
)

COMPONENTS = (
    Component(
        name="pick_to_pack_hours_avg",
        unit="hours",
        formula="mean(packed_at - picked_at) over orders packed in the window",
        compute=MeanHours("pick_to_pack_us_sum", "pick_to_pack_count"),
    ),
)
