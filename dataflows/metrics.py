"""The metric catalogue: additive measures and the components computed from them.

Every per-window figure is a sum over orders of a per-order *measure*
contribution (counts, and durations as exact integer microseconds), so windows
can be updated by adding and retracting order contributions in any order.
*Components* are the published health metrics, each a formula over one
window's measures.  Stream, batch oracle, tables and docs all read this list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from dataflows.timeutil import US_PER_HOUR

__all__ = [
    "COMPONENTS",
    "DISTINCT_MEASURES",
    "MEASURES",
    "Component",
    "components_markdown",
    "compute_components",
]

#: Measure names, in the order of the vectors that flow between steps.
MEASURES: tuple[str, ...] = (
    "orders_created",
    "orders_resolved",
    "orders_on_time",
    "orders_delivered",
    "deviation_count",
    "deviation_us_sum",
    "orders_active",
    "orders_anomalous",
)
#: Measures counted once per order per window row, however many facts hit it.
DISTINCT_MEASURES = frozenset({"orders_active", "orders_anomalous"})


class Component(msgspec.Struct, frozen=True):
    """A published health component: name, unit, formula and documentation."""

    name: str
    unit: str
    formula: str
    compute: Callable[[Mapping[str, int]], float | None]


def _ratio(numerator: str, denominator: str) -> Callable[[Mapping[str, int]], float | None]:
    def compute(m: Mapping[str, int]) -> float | None:
        return m[numerator] / m[denominator] if m[denominator] else None

    return compute


def _mean_hours(total: str, count: str) -> Callable[[Mapping[str, int]], float | None]:
    def compute(m: Mapping[str, int]) -> float | None:
        return m[total] / m[count] / US_PER_HOUR if m[count] else None

    return compute


COMPONENTS: tuple[Component, ...] = (
    Component(
        "on_time_rate",
        "ratio",
        "orders_on_time / orders_resolved, over orders whose promise resolved in the window",
        _ratio("orders_on_time", "orders_resolved"),
    ),
    Component(
        "promise_deviation_hours_avg",
        "hours",
        "mean(delivered_at - first promise) over orders delivered in the window; negative = early",
        _mean_hours("deviation_us_sum", "deviation_count"),
    ),
    Component(
        "anomaly_rate",
        "ratio",
        "orders with an anomaly flag raised in the window / orders active in the window",
        _ratio("orders_anomalous", "orders_active"),
    ),
)


def compute_components(measures: Mapping[str, int]) -> dict[str, float | None]:
    """Every component for one window row; None where the component has no data."""
    return {c.name: c.compute(measures) for c in COMPONENTS}


def components_markdown() -> str:
    """The component table of ``docs/metrics.md`` (kept in sync by a test)."""
    lines = ["| component | unit | formula |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.unit} | {c.formula} |" for c in COMPONENTS]
    lines += ["", "Measures (additive per window row): " + ", ".join(f"`{m}`" for m in MEASURES)]
    return "\n".join(lines) + "\n"
