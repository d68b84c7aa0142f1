"""The metric catalogue: facts, the measures aggregated from them, and components.

This is the one place to add a metric (see ``docs/extending.md``):

* a :class:`Fact` says when an order contributes and with what value.  It is
  given twice, deliberately: ``stream`` reads the streaming order view, and
  ``batch_sql`` selects the same facts from the batch oracle's SQL views, so
  that the oracle is an independent implementation;
* its ``measures`` say how facts aggregate per window row (count, sum, sum of
  squares, or distinct orders); ``keep_values`` keeps the values for
  percentiles;
* a :class:`Component` is a published formula over one row's measures.

Every window figure is then a sum of per-order contributions, so windows are
updated by adding and retracting order contributions in any order.  Durations
are integer microseconds, so sums are exact.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

import msgspec

from dataflows.formulas import (
    ColumnTotals,
    CycleCV,
    FloatColumn,
    LateOpen,
    MeanHours,
    Percentile,
    Ratio,
    columns_of,
    nearest_rank,
    python_ints,
)
from dataflows.outcome import OutcomeStatus

if TYPE_CHECKING:
    from dataflows.lifecycle import OrderView

__all__ = [
    "COMPONENTS",
    "FACTS",
    "MEASURES",
    "MEASURE_AGGS",
    "Agg",
    "Component",
    "Fact",
    "FactValue",
    "WindowTotals",
    "components_markdown",
    "compute_component_columns",
    "compute_components",
    "nearest_rank",
]


class Agg(StrEnum):
    COUNT = "count"  # number of facts
    SUM = "sum"  # sum of values
    SUMSQ = "sumsq"  # sum of squared values (for the coefficient of variation)
    DISTINCT = "distinct"  # orders with at least one fact in the row (counted once)


class FactValue(msgspec.Struct, frozen=True, array_like=True):
    """One fact: at ``at_us`` (event time) with ``value``.

    ``dims_at_us`` is the moment whose dimension values apply (default: ``at_us``);
    a fact that undoes an earlier one must use the earlier one's moment.
    """

    at_us: int
    value: int = 1
    dims_at_us: int | None = None


class Fact(msgspec.Struct, frozen=True):
    name: str
    description: str
    stream: Callable[[OrderView], Iterable[FactValue]]
    #: SELECT order_id, t, value, dims_t FROM <views of dataflows.batch_metrics>
    batch_sql: str
    #: Output column -> aggregation.
    measures: dict[str, Agg]
    keep_values: bool = False


class WindowTotals(msgspec.Struct, frozen=True):
    """What a component formula sees for one window row."""

    measures: Mapping[str, int]
    #: Fact name -> all values (ascending) for facts with ``keep_values``.
    values: Mapping[str, Sequence[int]]
    #: Running total of ``late_open_in - late_open_out`` up to this window's end.
    late_open: int


class Component(msgspec.Struct, frozen=True):
    name: str
    unit: str
    formula: str
    #: One row's value (None: no data).  A :mod:`dataflows.formulas` formula
    #: (Ratio, MeanHours, ...) also evaluates an epoch's rows at once; any
    #: other callable is evaluated row by row.
    compute: Callable[[WindowTotals], float | None]
    #: Values outside [low, high] are impossible (None = unbounded).  The
    #: batch quality gate (quality/suites.py) quarantines a batch breaking it.
    valid_range: tuple[float | None, float | None] = (None, None)


# -- facts --------------------------------------------------------------------

_DELIVERED = "DELIVERED"


def _created_by(view: OrderView, at: int | None) -> bool:
    """Outcome facts count only from the order's creation on.

    A fact at time t may only depend on events at or before t (plus the
    watermark), or a late-arriving event could change a final window; an
    order's promise and attributes come from ORDER_CREATED.
    """
    return at is not None and view.created_us is not None and view.created_us <= at


def _delivered_kept(view: OrderView) -> int | None:
    """Delivery time of an order that was not cancelled before resolving."""
    if view.outcome.status is OutcomeStatus.CANCELLED:
        return None
    at = view.stage_us.get(_DELIVERED)
    return at if _created_by(view, at) else None


def _since_created(stage: str) -> Callable[[OrderView], Iterable[FactValue]]:
    def facts(view: OrderView) -> Iterable[FactValue]:
        at = view.stage_us.get(stage)
        if at is not None and view.created_us is not None and view.created_us <= at:
            yield FactValue(at, at - view.created_us)

    return facts


def _resolved(view: OrderView) -> Iterable[FactValue]:
    outcome = view.outcome
    at = outcome.resolved_at_us
    if outcome.status in (OutcomeStatus.ON_TIME, OutcomeStatus.LATE) and _created_by(view, at):
        assert at is not None
        yield FactValue(at, int(outcome.status is OutcomeStatus.ON_TIME))


def _delivered(view: OrderView) -> Iterable[FactValue]:
    at = _delivered_kept(view)
    if at is not None:
        yield FactValue(at)


def _deviation(view: OrderView) -> Iterable[FactValue]:
    at = _delivered_kept(view)
    if at is not None and view.first_promise_us is not None:
        yield FactValue(at, at - view.first_promise_us)


def _cycle(view: OrderView) -> Iterable[FactValue]:
    at = _delivered_kept(view)
    if at is not None and view.created_us is not None:
        yield FactValue(at, at - view.created_us)


def _cancelled(view: OrderView) -> Iterable[FactValue]:
    at = view.outcome.resolved_at_us
    if view.outcome.status is OutcomeStatus.CANCELLED and _created_by(view, at):
        assert at is not None
        yield FactValue(at)


def _shipped(view: OrderView) -> Iterable[FactValue]:
    at = view.stage_us.get("SHIPPED")
    if at is None:
        return
    warehouse = view.value_at(view.warehouse_timeline, at)
    if warehouse is not None:
        # The first routing is at or before ``at`` whenever a warehouse is known then.
        yield FactValue(at, int(warehouse == view.first_warehouse))


def _transitions(view: OrderView) -> Iterable[FactValue]:
    for transition in view.transitions:
        if transition.sla_us is not None:
            yield FactValue(transition.end_us, int(transition.breached))


def _active(view: OrderView) -> Iterable[FactValue]:
    for at in view.event_times:
        yield FactValue(at)
    for flag in view.flags:
        yield FactValue(flag.at_us)


def _anomalous(view: OrderView) -> Iterable[FactValue]:
    for flag in view.flags:
        yield FactValue(flag.at_us)


def _late_open_in(view: OrderView) -> Iterable[FactValue]:
    promise = view.first_promise_us
    if view.outcome.status is OutcomeStatus.LATE and _created_by(view, promise):
        assert promise is not None
        yield FactValue(promise)


def _late_open_out(view: OrderView) -> Iterable[FactValue]:
    promise = view.first_promise_us
    if view.outcome.status is not OutcomeStatus.LATE or not _created_by(view, promise):
        return
    assert promise is not None
    ends = [t for t in (view.stage_us.get(_DELIVERED), view.cancelled_us) if t is not None]
    if ends:
        yield FactValue(min(ends), 1, promise)


FACTS: tuple[Fact, ...] = (
    Fact(
        "created",
        "ORDER_CREATED, at its time",
        lambda v: [FactValue(v.created_us)] if v.created_us is not None else [],
        "SELECT order_id, created_t AS t, 1 AS value, created_t AS dims_t "
        "FROM orders WHERE created_t IS NOT NULL",
        {"orders_created": Agg.COUNT},
    ),
    Fact(
        "resolved",
        "promise resolved (value 1 = on time), at the resolution time",
        _resolved,
        "SELECT order_id, resolved_t AS t, CAST(status = 'on_time' AS BIGINT) AS value, "
        "resolved_t AS dims_t FROM outcomes WHERE status IN ('on_time', 'late') "
        "AND created_t <= resolved_t",
        {"orders_resolved": Agg.COUNT, "orders_on_time": Agg.SUM},
    ),
    Fact(
        "delivered",
        "delivered and not cancelled before resolving, at delivery",
        _delivered,
        "SELECT order_id, delivered_t AS t, 1 AS value, delivered_t AS dims_t "
        "FROM outcomes WHERE status <> 'cancelled' AND created_t <= delivered_t",
        {"orders_delivered": Agg.COUNT},
    ),
    Fact(
        "deviation",
        "delivered - first promise (us), at delivery",
        _deviation,
        "SELECT order_id, delivered_t AS t, delivered_t - promise_t AS value, "
        "delivered_t AS dims_t FROM outcomes "
        "WHERE status <> 'cancelled' AND created_t <= delivered_t",
        {"deviation_count": Agg.COUNT, "deviation_us_sum": Agg.SUM},
        keep_values=True,
    ),
    Fact(
        "cancelled",
        "cancelled before the promise resolved, at the cancellation",
        _cancelled,
        "SELECT order_id, resolved_t AS t, 1 AS value, resolved_t AS dims_t "
        "FROM outcomes WHERE status = 'cancelled' AND created_t <= resolved_t",
        {"orders_cancelled": Agg.COUNT},
    ),
    Fact(
        "shipped",
        "shipped (value 1 = from the first-routed warehouse), at shipment",
        _shipped,
        "SELECT s.order_id, s.t, CAST(w.warehouse_id = o.first_warehouse AS BIGINT) AS value, "
        "s.t AS dims_t FROM (SELECT order_id, stage_t AS t FROM stages WHERE stage = 'SHIPPED') s "
        "JOIN orders o USING (order_id) "
        "ASOF JOIN warehouse_changes w ON s.order_id = w.order_id AND s.t >= w.t",
        {"orders_shipped": Agg.COUNT, "shipped_from_first_warehouse": Agg.SUM},
    ),
    Fact(
        "cycle",
        "created -> delivered (us), at delivery",
        _cycle,
        "SELECT order_id, delivered_t AS t, delivered_t - created_t AS value, "
        "delivered_t AS dims_t FROM outcomes "
        "WHERE status <> 'cancelled' AND created_t <= delivered_t",
        {"cycle_count": Agg.COUNT, "cycle_us_sum": Agg.SUM, "cycle_us_sumsq": Agg.SUMSQ},
    ),
    Fact(
        "gray_zone",
        "created -> warehouse accepted (us), at acceptance",
        _since_created("WAREHOUSE_ACCEPTED"),
        "SELECT s.order_id, s.stage_t AS t, s.stage_t - o.created_t AS value, s.stage_t AS dims_t "
        "FROM stages s JOIN orders o USING (order_id) "
        "WHERE s.stage = 'WAREHOUSE_ACCEPTED' AND o.created_t <= s.stage_t",
        {"gray_zone_count": Agg.COUNT, "gray_zone_us_sum": Agg.SUM},
    ),
    Fact(
        "finance_review",
        "created -> finance approved (us), at approval",
        _since_created("FINANCE_APPROVED"),
        "SELECT s.order_id, s.stage_t AS t, s.stage_t - o.created_t AS value, s.stage_t AS dims_t "
        "FROM stages s JOIN orders o USING (order_id) "
        "WHERE s.stage = 'FINANCE_APPROVED' AND o.created_t <= s.stage_t",
        {"finance_review_count": Agg.COUNT, "finance_review_us_sum": Agg.SUM},
    ),
    Fact(
        "stage_transition",
        "a completed stage with an SLA (value 1 = over it), at the transition",
        _transitions,
        "SELECT order_id, end_t AS t, CAST(breached AS BIGINT) AS value, end_t AS dims_t "
        "FROM transitions",
        {"stage_transitions": Agg.COUNT, "stage_sla_breaches": Agg.SUM},
    ),
    Fact(
        "active",
        "the order had an event or an anomaly flag, at that time",
        _active,
        "SELECT order_id, t, 1 AS value, t AS dims_t FROM events "
        "UNION ALL SELECT order_id, t, 1, t FROM flags",
        {"orders_active": Agg.DISTINCT},
    ),
    Fact(
        "anomalous",
        "an anomaly flag was raised, at the flag time",
        _anomalous,
        "SELECT order_id, t, 1 AS value, t AS dims_t FROM flags",
        {"orders_anomalous": Agg.DISTINCT},
    ),
    Fact(
        "late_open_in",
        "the order became late and still open, at its first promise",
        _late_open_in,
        "SELECT order_id, promise_t AS t, 1 AS value, promise_t AS dims_t "
        "FROM outcomes WHERE status = 'late' AND created_t <= promise_t",
        {"late_open_in": Agg.COUNT},
    ),
    Fact(
        "late_open_out",
        "a late order was delivered or cancelled, at that time (dimensions as at the promise)",
        _late_open_out,
        "SELECT order_id, least(delivered_t, cancelled_t) AS t, 1 AS value, promise_t AS dims_t "
        "FROM outcomes WHERE status = 'late' AND created_t <= promise_t "
        "AND coalesce(delivered_t, cancelled_t) IS NOT NULL",
        {"late_open_out": Agg.COUNT},
    ),
)


def _plugins() -> tuple[tuple[Fact, ...], tuple[Component, ...]]:
    """Facts and components from the modules in ``ORDERHEALTH_METRIC_PLUGINS``.

    A plugin is a module with ``FACTS`` and ``COMPONENTS`` tuples, so a team can
    add a metric without forking the catalogue (``docs/extending.md``).  Give
    each plugin component a weight in ``health.toml``.
    """
    facts: list[Fact] = []
    components: list[Component] = []
    for name in os.environ.get("ORDERHEALTH_METRIC_PLUGINS", "").split(","):
        if name.strip():
            module = importlib.import_module(name.strip())
            facts += getattr(module, "FACTS", ())
            components += getattr(module, "COMPONENTS", ())
    return tuple(facts), tuple(components)


_PLUGIN_FACTS, _PLUGIN_COMPONENTS = _plugins()
FACTS += _PLUGIN_FACTS
if len({f.name for f in FACTS}) != len(FACTS):
    raise ValueError("two metric facts share a name; check ORDERHEALTH_METRIC_PLUGINS")

#: Measure columns, in vector order.
MEASURES: tuple[str, ...] = tuple(m for fact in FACTS for m in fact.measures)
#: How each measure aggregates.
MEASURE_AGGS: dict[str, Agg] = {m: agg for fact in FACTS for m, agg in fact.measures.items()}


# -- components ------------------------------------------------------------------


COMPONENTS: tuple[Component, ...] = (
    Component(
        "on_time_rate",
        "ratio",
        "orders_on_time / orders_resolved, over orders whose promise resolved in the window",
        Ratio("orders_on_time", "orders_resolved"),
        valid_range=(0.0, 1.0),
    ),
    Component(
        "promise_deviation_hours_avg",
        "hours",
        "mean(delivered_at - first promise) over orders delivered in the window; negative = early",
        MeanHours("deviation_us_sum", "deviation_count"),
    ),
    Component(
        "promise_deviation_hours_p90",
        "hours",
        "90th percentile (nearest rank) of delivered_at - first promise, same orders",
        Percentile("deviation", 0.9),
    ),
    Component(
        "promise_deviation_hours_p50",
        "hours",
        "median (nearest rank) of delivered_at - first promise, same orders (not scored)",
        Percentile("deviation", 0.5),
    ),
    Component(
        "promise_deviation_hours_p99",
        "hours",
        "99th percentile (nearest rank) of delivered_at - first promise, same orders (not scored)",
        Percentile("deviation", 0.99),
    ),
    Component(
        "anomaly_rate",
        "ratio",
        "orders with an anomaly flag raised in the window / orders active in the window",
        Ratio("orders_anomalous", "orders_active"),
        valid_range=(0.0, 1.0),
    ),
    Component(
        "cancellation_rate",
        "ratio",
        "orders cancelled before resolving / (those + orders resolved), in the window",
        Ratio("orders_cancelled", "orders_cancelled", "orders_resolved"),
        valid_range=(0.0, 1.0),
    ),
    Component(
        "routing_accuracy",
        "ratio",
        "orders shipped from their first-routed warehouse / orders shipped, in the window",
        Ratio("shipped_from_first_warehouse", "orders_shipped"),
        valid_range=(0.0, 1.0),
    ),
    Component(
        "cycle_time_hours_avg",
        "hours",
        "mean(delivered_at - created_at) over orders delivered in the window",
        MeanHours("cycle_us_sum", "cycle_count"),
        valid_range=(0.0, None),
    ),
    Component(
        "cycle_time_cv",
        "ratio",
        "population std / mean of the same cycle times (stability; needs 2 orders)",
        CycleCV("cycle_count", "cycle_us_sum", "cycle_us_sumsq"),
        valid_range=(0.0, None),
    ),
    Component(
        "order_to_warehouse_hours_avg",
        "hours",
        "mean(warehouse_accepted_at - created_at) over acceptances in the window (gray zone)",
        MeanHours("gray_zone_us_sum", "gray_zone_count"),
        valid_range=(0.0, None),
    ),
    Component(
        "finance_review_hours_avg",
        "hours",
        "mean(finance_approved_at - created_at) over approvals in the window",
        MeanHours("finance_review_us_sum", "finance_review_count"),
        valid_range=(0.0, None),
    ),
    Component(
        "stage_sla_breach_rate",
        "ratio",
        "stage transitions over their SLA / stage transitions completed in the window",
        Ratio("stage_sla_breaches", "stage_transitions"),
        valid_range=(0.0, 1.0),
    ),
    Component(
        "late_open_orders",
        "orders",
        "open orders already past their first promise at the window end "
        "(running sum of late_open_in - late_open_out)",
        LateOpen(),
        valid_range=(0.0, None),
    ),
)


COMPONENTS += _PLUGIN_COMPONENTS


def compute_components(totals: WindowTotals) -> dict[str, float | None]:
    """Every component for one window row; None where the component has no data."""
    return {c.name: c.compute(totals) for c in COMPONENTS}


def compute_component_columns(totals: ColumnTotals) -> dict[str, FloatColumn]:
    """Every component for many window rows at once; NaN where a row has no data.

    The same floats as :func:`compute_components` row by row
    (:mod:`dataflows.formulas`).
    """
    rows: list[WindowTotals] = []

    def row_totals() -> list[WindowTotals]:
        # Only for a formula without a column form (or with too-large sums).
        if not rows:
            rows.extend(_row_totals(totals))
        return rows

    return {c.name: columns_of(c.compute, totals, row_totals) for c in COMPONENTS}


def _row_totals(totals: ColumnTotals) -> list[WindowTotals]:
    names = list(totals.measures)
    kept = list(totals.values)
    return [
        WindowTotals(
            measures=dict(zip(names, vector, strict=True)),
            values={k: v for k, v in zip(kept, values, strict=True) if v is not None},
            late_open=late_open,
        )
        for vector, values, late_open in zip(
            zip(*map(totals.exact, names), strict=True),
            zip(*totals.values.values(), strict=True) if kept else ((),) * totals.size,
            python_ints(totals.late_open),
            strict=True,
        )
    ]


def components_markdown() -> str:
    """The catalogue tables of ``docs/metrics.md`` (kept in sync by a test)."""
    lines = ["| component | unit | formula |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.unit} | {c.formula} |" for c in COMPONENTS]
    lines += ["", "| fact | when and what | measures |", "|---|---|---|"]
    for fact in FACTS:
        measures = ", ".join(f"`{m}` ({agg.value})" for m, agg in fact.measures.items())
        if fact.keep_values:
            measures += ", values kept"
        lines.append(f"| `{fact.name}` | {fact.description} | {measures} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # `make docs`: refresh the generated tables in docs/metrics.md
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
    head, rest = doc.read_text().split("<!-- components:begin -->\n", 1)
    _, tail = rest.split("<!-- components:end -->", 1)
    doc.write_text(
        f"{head}<!-- components:begin -->\n{components_markdown()}<!-- components:end -->{tail}"
    )
    print(f"updated {doc}")
