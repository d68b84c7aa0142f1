"""The report's figures, computed from the order-level evidence alone.

Pure functions over the evidence table (no I/O), used twice on purpose: by
``credit-report`` to state the figures and by ``credit-verify`` to recompute
them from the file the bank received.  The formulas are those of the PDF's
methodology section:

* promised = kept + late + cancelled, counted on the day the promise resolved
  (kept: delivered at or before the first promise, on the delivery day; late:
  not delivered by the first promise, on the promise day) or was withdrawn
  (cancelled before resolving, on the cancellation day);
* kept rate = kept / (kept + late), with a 95% Wilson score interval;
* deviation = delivered_at - first promise, over orders delivered in the
  period, percentiles by nearest rank (an observed value);
* stability = coefficient of variation (population std / mean) of the daily
  kept rates, over days with at least one resolved promise.
"""

from __future__ import annotations

import math
from datetime import date

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from dataflows.metrics import nearest_rank
from dataflows.timeutil import US_PER_HOUR
from lakehouse.tables import TIMESTAMP

__all__ = [
    "EVIDENCE_SCHEMA",
    "DayFigures",
    "Headline",
    "MonthFigures",
    "daily_figures",
    "headline",
    "monthly_figures",
    "totals_headline",
    "wilson_interval",
]

#: z for a two-sided 95% interval.
Z95 = 1.959963984540054

KEPT, LATE, CANCELLED = "kept", "late", "cancelled"

#: One row per order that counts for the subject in the period.
EVIDENCE_SCHEMA = pa.schema(
    [
        # The order id, or its keyed-hash pseudonym.
        pa.field("order_ref", pa.string(), False),
        pa.field("created_at", TIMESTAMP),
        pa.field("first_promised_at", TIMESTAMP),
        pa.field("delivered_at", TIMESTAMP),
        pa.field("cancelled_at", TIMESTAMP),
        # kept | late | cancelled; null when only the order's delivery falls in the period.
        pa.field("outcome", pa.string()),
        pa.field("outcome_at", TIMESTAMP),
        pa.field("outcome_day", pa.date32()),
        # delivered_at - first promise; null unless the delivery falls in the period.
        pa.field("deviation_us", pa.int64()),
        pa.field("deviation_hours", pa.float64()),
        pa.field("delivery_day", pa.date32()),
    ]
)


class DayFigures(msgspec.Struct, frozen=True):
    """What the evidence says about one day (compared with the published facts)."""

    kept: int = 0
    late: int = 0
    cancelled: int = 0
    delivered: int = 0
    deviation_us_sum: int = 0

    @property
    def promised(self) -> int:
        return self.kept + self.late + self.cancelled


class MonthFigures(msgspec.Struct, frozen=True):
    month: str  # YYYY-MM
    promised: int
    kept: int
    late: int
    cancelled: int
    kept_rate: float | None
    kept_rate_ci_low: float | None
    kept_rate_ci_high: float | None


class Headline(msgspec.Struct, frozen=True):
    promised: int
    kept: int
    late: int
    cancelled: int
    kept_rate: float | None
    kept_rate_ci_low: float | None
    kept_rate_ci_high: float | None
    delivered: int
    deviation_hours_avg: float | None
    deviation_hours_p50: float | None
    deviation_hours_p90: float | None
    deviation_hours_p99: float | None
    #: CV of the daily kept rates (None with fewer than 2 such days).
    stability_cv: float | None
    days_with_outcomes: int


def wilson_interval(kept: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for kept / n (None when n = 0)."""
    if n <= 0:
        return None
    p = kept / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At p = 0 or 1 the bound is exactly 0 or 1; rounding would miss it by an ulp.
    low = 0.0 if kept == 0 else max(centre - half, 0.0)
    high = 1.0 if kept == n else min(centre + half, 1.0)
    return low, high


def _count(table: pa.Table, outcome: str) -> int:
    return int(pc.sum(pc.equal(table["outcome"], outcome)).as_py() or 0)


def daily_figures(evidence: pa.Table) -> dict[date, DayFigures]:
    """Per day: outcomes by ``outcome_day``, deliveries by ``delivery_day``."""
    out: dict[date, dict[str, int]] = {}
    outcomes = evidence.filter(pc.is_valid(evidence["outcome"]))
    grouped = outcomes.group_by(["outcome_day", "outcome"]).aggregate([("outcome", "count")])
    for row in grouped.to_pylist():
        out.setdefault(row["outcome_day"], {})[row["outcome"]] = row["outcome_count"]
    deliveries = evidence.filter(pc.is_valid(evidence["delivery_day"]))
    grouped = deliveries.group_by("delivery_day").aggregate(
        [("deviation_us", "count"), ("deviation_us", "sum")]
    )
    for row in grouped.to_pylist():
        day = out.setdefault(row["delivery_day"], {})
        day["delivered"] = row["deviation_us_count"]
        day["deviation_us_sum"] = row["deviation_us_sum"]
    return {
        day: DayFigures(
            kept=v.get(KEPT, 0),
            late=v.get(LATE, 0),
            cancelled=v.get(CANCELLED, 0),
            delivered=v.get("delivered", 0),
            deviation_us_sum=v.get("deviation_us_sum", 0),
        )
        for day, v in sorted(out.items())
    }


def _stability(days: dict[date, DayFigures]) -> float | None:
    rates = [d.kept / (d.kept + d.late) for d in days.values() if d.kept + d.late]
    if len(rates) < 2:
        return None
    mean = sum(rates) / len(rates)
    if mean <= 0:
        return None
    variance = sum((r - mean) ** 2 for r in rates) / len(rates)
    return math.sqrt(variance) / mean


def headline(evidence: pa.Table) -> Headline:
    """The report's summary figures."""
    kept, late, cancelled = (_count(evidence, o) for o in (KEPT, LATE, CANCELLED))
    deviations = pc.drop_null(
        evidence.filter(pc.is_valid(evidence["delivery_day"]))["deviation_us"]
    )
    values = pc.sort_indices(deviations)
    ordered = pc.take(deviations, values).to_pylist()

    def hours(q: float) -> float | None:
        value = nearest_rank(ordered, q)
        return None if value is None else value / US_PER_HOUR

    days = daily_figures(evidence)
    return msgspec.structs.replace(
        totals_headline(kept, late, cancelled),
        delivered=len(ordered),
        deviation_hours_avg=sum(ordered) / len(ordered) / US_PER_HOUR if ordered else None,
        deviation_hours_p50=hours(0.5),
        deviation_hours_p90=hours(0.9),
        deviation_hours_p99=hours(0.99),
        stability_cv=_stability(days),
        days_with_outcomes=sum(1 for d in days.values() if d.promised),
    )


def monthly_figures(evidence: pa.Table) -> list[MonthFigures]:
    """Outcomes per calendar month (UTC) of the outcome day."""
    months: dict[str, dict[str, int]] = {}
    for day, figures in daily_figures(evidence).items():
        counts = months.setdefault(f"{day:%Y-%m}", {KEPT: 0, LATE: 0, CANCELLED: 0})
        counts[KEPT] += figures.kept
        counts[LATE] += figures.late
        counts[CANCELLED] += figures.cancelled
    out = []
    for month, m in months.items():
        n = m[KEPT] + m[LATE]
        interval = wilson_interval(m[KEPT], n)
        if n + m[CANCELLED] == 0:
            continue  # a month with deliveries only
        out.append(
            MonthFigures(
                month=month,
                promised=n + m[CANCELLED],
                kept=m[KEPT],
                late=m[LATE],
                cancelled=m[CANCELLED],
                kept_rate=m[KEPT] / n if n else None,
                kept_rate_ci_low=interval[0] if interval else None,
                kept_rate_ci_high=interval[1] if interval else None,
            )
        )
    return out


def totals_headline(kept: int, late: int, cancelled: int) -> Headline:
    """Outcome figures from totals alone (the company comparison, from daily facts)."""
    interval = wilson_interval(kept, kept + late)
    return Headline(
        promised=kept + late + cancelled,
        kept=kept,
        late=late,
        cancelled=cancelled,
        kept_rate=kept / (kept + late) if kept + late else None,
        kept_rate_ci_low=interval[0] if interval else None,
        kept_rate_ci_high=interval[1] if interval else None,
        delivered=0,
        deviation_hours_avg=None,
        deviation_hours_p50=None,
        deviation_hours_p90=None,
        deviation_hours_p99=None,
        stability_cv=None,
        days_with_outcomes=0,
    )
