"""Gather what a credit report may state: gated daily facts and the orders behind them.

Rules, in order:

1. Only ``gold/promise_fulfilment`` -- facts the quality gate published -- is
   reported, read at one pinned Delta version.
2. A day in the period is *not clean* when, for the subject or for the
   company (the report compares the two), its fact is provisional (the day is
   not final yet), it belongs to a quarantined batch that was not released
   and no newer gated batch superseded it, or a staged change to it still
   waits for the gate.  Not-clean days refuse the report, naming the batches,
   unless the caller excludes them -- then they are listed in the report.
3. The order-level evidence is recomputed from ``bronze/order_events`` by the
   batch oracle (an implementation independent of the stream that produced
   the facts) and must reconcile with the published facts day by day:
   kept, late, cancelled, deliveries and the deviation sum.  A day that does
   not reconcile refuses the report: the facts would not be provable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from dataflows.batch_metrics import order_outcomes
from dataflows.fulfilment import DAY_US
from dataflows.settings import KNOWN_DIMENSIONS, HealthSettings
from dataflows.timeutil import US_PER_HOUR
from lakehouse.reader import read_table, table_version
from lakehouse.tables import (
    BRONZE_EVENTS,
    HEALTH_METRICS_STAGING,
    PROMISE_FULFILMENT,
    QUARANTINE,
    QUARANTINE_ACTIONS,
    TIMESTAMP,
    VALIDATION_RUNS,
)
from orderhealth.credit.figures import EVIDENCE_SCHEMA, DayFigures, daily_figures

__all__ = ["ExcludedDay", "ReportData", "ReportRefused", "Subject", "gather"]

COMPANY = ("all", "all")

#: Bronze columns the batch oracle's outcome views read.
_BRONZE_COLUMNS = [
    "partition",
    "offset",
    "order_id",
    "event_id",
    "event_type",
    "event_time",
    "promised_delivery_at",
    "warehouse_id",
    "carrier_id",
    "region",
    "channel",
    "customer_segment",
    "seller_id",
    "is_duplicate",
    "is_late",
]


class ReportRefused(ValueError):
    """The report cannot be produced as asked; the message says why and what to do."""


class Subject(msgspec.Struct, frozen=True):
    type: str
    id: str

    def __str__(self) -> str:
        return "the whole company" if (self.type, self.id) == COMPANY else f"{self.type}={self.id}"


class ExcludedDay(msgspec.Struct, frozen=True):
    day: date
    subject: str
    reason: str
    batches: tuple[str, ...] = ()

    def describe(self) -> str:
        batches = f" ({', '.join(self.batches)})" if self.batches else ""
        return f"{self.day} {self.subject}: {self.reason}{batches}"


class ReportData(msgspec.Struct):
    subject: Subject
    start: date
    end: date
    #: Days of the period the report covers (clean), ascending.
    days: list[date]
    excluded: list[ExcludedDay]
    #: Published facts of the subject and of the company on the covered days.
    facts: pa.Table
    company_facts: pa.Table
    #: EVIDENCE_SCHEMA, with real order ids (pseudonymised when written).
    evidence: pa.Table
    #: Table path -> Delta version read.
    versions: dict[str, int]
    #: The validation runs that gated the facts used.
    runs: list[dict[str, Any]]
    #: "stream" (events inside the allowed lateness) or "restated" (all events).
    evidence_rule: str


Step = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def gather(
    root: str,
    subject: Subject,
    start: date | None = None,
    end: date | None = None,
    *,
    exclude_unclean: bool = False,
    settings: HealthSettings | None = None,
    step: Step = _noop,
) -> ReportData:
    """Everything a report states, checked.  Raises :class:`ReportRefused`."""
    settings = settings or HealthSettings.load()
    if subject.type not in KNOWN_DIMENSIONS:
        raise ReportRefused(
            f"unknown subject type {subject.type!r}; choose from {', '.join(KNOWN_DIMENSIONS)}"
        )
    if subject.type not in settings.dimensions:
        raise ReportRefused(f"dimension {subject.type!r} is not enabled in health.toml")
    step("pin table versions")
    versions = _versions(root)
    if PROMISE_FULFILMENT.path not in versions:
        raise ReportRefused(
            f"no published promise-fulfilment facts under {root}: run the pipeline first "
            "(orderhealth demo, or orderhealth run)"
        )
    step("read published facts")
    version = versions[PROMISE_FULFILMENT.path]
    subject_facts = _facts(root, version, subject)
    if subject_facts.num_rows == 0:
        raise ReportRefused(_no_data(root, version, subject))
    company_facts = (
        subject_facts if (subject.type, subject.id) == COMPANY else _facts(root, version, None)
    )
    start, end, last_final = _period(subject_facts, company_facts, start, end)

    step("check the quality gate")
    subjects = [subject] if (subject.type, subject.id) == COMPANY else [subject, Subject(*COMPANY)]
    tables = {subject: subject_facts, Subject(*COMPANY): company_facts}
    unclean = _provisional(tables, subjects, start, end, last_final)
    unclean += _quarantined(root, versions, tables, subjects, start, end)
    unclean += _ungated(root, subjects, start, end)
    unclean.sort(key=lambda d: (d.day, d.subject))
    if unclean and not exclude_unclean:
        raise ReportRefused(_refusal(unclean))
    excluded_days = {d.day for d in unclean}
    days = [
        start + timedelta(days=i)
        for i in range((end - start).days + 1)
        if start + timedelta(days=i) not in excluded_days
    ]
    if not days:
        raise ReportRefused(
            f"every day of {start}..{end} is excluded (not clean); nothing left to report"
        )
    facts = _on_days(subject_facts, days)
    company = _on_days(company_facts, days)
    if int(pc.sum(facts["promised"]).as_py() or 0) == 0:
        raise ReportRefused(
            f"{subject} has no promises that came due in {start}..{end} "
            f"({len(days)} clean days): nothing to report"
        )

    step("recompute orders from bronze")
    bronze = read_table(root, BRONZE_EVENTS, _BRONZE_COLUMNS, version=versions[BRONZE_EVENTS.path])
    evidence, rule = _reconciled_evidence(bronze, settings, subject, facts, days, step)
    step("collect validation runs")
    runs = _runs(root, versions, [facts, company])
    return ReportData(
        subject=subject,
        start=start,
        end=end,
        days=days,
        excluded=unclean,
        facts=facts,
        company_facts=company,
        evidence=evidence,
        versions=versions,
        runs=runs,
        evidence_rule=rule,
    )


# -- reading -------------------------------------------------------------------------


def _versions(root: str) -> dict[str, int]:
    out = {}
    for spec in (
        PROMISE_FULFILMENT,
        BRONZE_EVENTS,
        VALIDATION_RUNS,
        QUARANTINE,
        QUARANTINE_ACTIONS,
        HEALTH_METRICS_STAGING,
    ):
        version = table_version(root, spec)
        if version is not None:
            out[spec.path] = version
    return out


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _facts(root: str, version: int, subject: Subject | None) -> pa.Table:
    subject = subject or Subject(*COMPANY)
    where = f"subject_type = {_quote(subject.type)} AND subject_id = {_quote(subject.id)}"
    return read_table(root, PROMISE_FULFILMENT, where=where, version=version).sort_by("day")


def _no_data(root: str, version: int, subject: Subject) -> str:
    known = read_table(
        root,
        PROMISE_FULFILMENT,
        ["subject_id"],
        where=f"subject_type = {_quote(subject.type)}",
        version=version,
    )
    ids = sorted(set(known["subject_id"].to_pylist()))
    hint = f"; known {subject.type} values: {', '.join(ids[:12])}" if ids else ""
    more = f" and {len(ids) - 12} more" if len(ids) > 12 else ""
    return f"no published promise-fulfilment facts for {subject}{hint}{more}"


def _period(
    facts: pa.Table, company: pa.Table, start: date | None, end: date | None
) -> tuple[date, date, date | None]:
    """The period (default: all published data up to the last final day) and that day."""
    finals = company.filter(company["is_final"])["day"].to_pylist()
    last_final: date | None = max(finals) if finals else None
    if start is None:
        start = min(facts["day"].to_pylist())
    if end is None:
        if last_final is None:
            raise ReportRefused(
                "no day is final yet (the watermark has not passed the end of a day): "
                "let the stream run on, or pass --to to name a period"
            )
        end = last_final
    if start > end:
        raise ReportRefused(f"the period is empty: --from {start} is after --to {end}")
    return start, end, last_final


def _on_days(facts: pa.Table, days: Sequence[date]) -> pa.Table:
    return facts.filter(pc.is_in(facts["day"], pa.array(days, pa.date32())))


# -- is every day clean? --------------------------------------------------------------


def _provisional(
    tables: dict[Subject, pa.Table],
    subjects: list[Subject],
    start: date,
    end: date,
    last_final: date | None,
) -> list[ExcludedDay]:
    out = []
    for subject in subjects:
        facts = tables[subject]
        for row in facts.filter(pc.invert(facts["is_final"])).to_pylist():
            if start <= row["day"] <= end:
                out.append(ExcludedDay(row["day"], str(subject), "provisional: the day is open"))
    seen = {d.day for d in out}
    day = (last_final + timedelta(days=1)) if last_final else start
    while day <= end:
        if day >= start and day not in seen:
            out.append(ExcludedDay(day, "all", "not final yet: the watermark has not passed it"))
        day += timedelta(days=1)
    return out


def _day_rows(table: pa.Table) -> pa.Table:
    start = table["window_start"].cast(pa.int64())
    mask = pc.equal(pc.subtract(table["window_end"].cast(pa.int64()), start), DAY_US)
    return table.filter(pc.fill_null(mask, False))


def _quarantined(
    root: str,
    versions: dict[str, int],
    tables: dict[Subject, pa.Table],
    subjects: list[Subject],
    start: date,
    end: date,
) -> list[ExcludedDay]:
    if QUARANTINE.path not in versions:
        return []
    rows = _day_rows(
        read_table(
            root,
            QUARANTINE,
            [
                "batch_id",
                "staging_version",
                "window_start",
                "window_end",
                "dimension",
                "dimension_value",
            ],
            version=versions[QUARANTINE.path],
        )
    )
    if rows.num_rows == 0:
        return []
    actions: dict[str, str] = {}
    if QUARANTINE_ACTIONS.path in versions:
        decided = read_table(
            root, QUARANTINE_ACTIONS, version=versions[QUARANTINE_ACTIONS.path]
        ).to_pylist()
        actions = {r["batch_id"]: r["action"] for r in decided}
    found: dict[tuple[date, str], set[str]] = {}
    for subject in subjects:
        published = {
            r["day"]: r["staging_version"]
            for r in tables[subject].select(["day", "staging_version"]).to_pylist()
        }
        mine = rows.filter(
            pc.and_(
                pc.equal(rows["dimension"], subject.type),
                pc.equal(rows["dimension_value"], subject.id),
            )
        )
        for row in mine.to_pylist():
            day = row["window_start"].date()
            status = actions.get(row["batch_id"], "pending")
            if not start <= day <= end or status == "released":
                continue
            if published.get(day, -1) >= row["staging_version"]:
                continue  # a newer gated batch superseded it
            found.setdefault((day, str(subject)), set()).add(f"{row['batch_id']} {status}")
    return [
        ExcludedDay(day, who, "quarantined", tuple(sorted(batches)))
        for (day, who), batches in found.items()
    ]


def _ungated(root: str, subjects: list[Subject], start: date, end: date) -> list[ExcludedDay]:
    from lakehouse.publication import Publisher

    if table_version(root, HEALTH_METRICS_STAGING) is None:
        return []
    publisher = Publisher(root)
    pending = publisher.pending()
    if pending is None:
        return []
    rows = _day_rows(publisher.changed_rows(*pending))
    out = []
    for subject in subjects:
        mine = rows.filter(
            pc.and_(
                pc.equal(rows["dimension"], subject.type),
                pc.equal(rows["dimension_value"], subject.id),
            )
        )
        for day in sorted({r.date() for r in mine["window_start"].to_pylist()}):
            if start <= day <= end:
                out.append(
                    ExcludedDay(
                        day,
                        str(subject),
                        "staged, not gated yet",
                        (f"staging versions {pending[0]}-{pending[1]}",),
                    )
                )
    return out


def _refusal(unclean: list[ExcludedDay]) -> str:
    shown = "; ".join(d.describe() for d in unclean[:6])
    more = f"; and {len(unclean) - 6} more" if len(unclean) > 6 else ""
    return (
        f"refused: {len(unclean)} day(s) of the period are not cleanly published: {shown}{more}. "
        "Decide quarantined batches (orderhealth quality list / release / discard), wait for "
        "the gate and for days to become final, choose another period, or pass "
        "--exclude-unclean to leave these days out (they are listed in the report)"
    )


# -- order-level evidence ----------------------------------------------------------------


def _reconciled_evidence(
    bronze: pa.Table,
    settings: HealthSettings,
    subject: Subject,
    facts: pa.Table,
    days: list[date],
    step: Step,
) -> tuple[pa.Table, str]:
    """Evidence whose daily figures equal the published facts, and the rule that made it.

    The stream ignores events beyond the allowed lateness; a restatement
    counts them.  Published facts come from one or the other, so the
    stream's rule is tried first and the restatement's second.
    """
    published = {
        r["day"]: DayFigures(
            kept=r["kept"],
            late=r["late"],
            cancelled=r["cancelled"],
            delivered=r["delivered"],
            deviation_us_sum=r["deviation_us_sum"],
        )
        for r in facts.to_pylist()
    }
    rules = [("stream", False)]
    if pc.any(bronze["is_late"]).as_py():
        rules.append(("restated", True))
    first_mismatch: list[str] = []
    for name, include_late in rules:
        step(f"reconcile {len(days)} days ({name} rule)")
        outcomes = order_outcomes(bronze, settings, subject.type, include_late=include_late)
        evidence = evidence_table(outcomes, subject.id, days)
        mismatches = _mismatches(published, daily_figures(evidence), days)
        if not mismatches:
            return evidence, name
        first_mismatch = first_mismatch or mismatches
    shown = "; ".join(first_mismatch[:4])
    raise ReportRefused(
        f"the published facts of {subject} do not reconcile with the orders in "
        f"bronze/order_events on {len(first_mismatch)} day(s): {shown}. "
        "Restate the period (orderhealth restate) so the published facts match the events"
    )


def _mismatches(
    published: dict[date, DayFigures], recomputed: dict[date, DayFigures], days: list[date]
) -> list[str]:
    out = []
    empty = DayFigures()
    for day in days:
        a, b = published.get(day, empty), recomputed.get(day, empty)
        if a != b:
            diffs = [
                f"{field} {getattr(a, field)} published vs {getattr(b, field)} from orders"
                for field in DayFigures.__struct_fields__
                if getattr(a, field) != getattr(b, field)
            ]
            out.append(f"{day}: {', '.join(diffs)}")
    return out


def _us(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(pa.int64()).cast(TIMESTAMP)


def evidence_table(outcomes: pa.Table, subject_id: str, days: Sequence[date]) -> pa.Table:
    """The subject's evidence rows on ``days`` from :func:`order_outcomes` output."""
    wanted = pa.array(days, pa.date32())
    outcome_day = _us(outcomes["resolved_t"]).cast(pa.date32())
    delivery_day = _us(outcomes["delivered_t"]).cast(pa.date32())
    has_outcome = pc.fill_null(
        pc.and_(pc.equal(outcomes["outcome_subject"], subject_id), pc.is_in(outcome_day, wanted)),
        False,
    )
    has_delivery = pc.fill_null(
        pc.and_(pc.equal(outcomes["delivery_subject"], subject_id), pc.is_in(delivery_day, wanted)),
        False,
    )
    keep = pc.or_(has_outcome, has_delivery)
    rows = outcomes.filter(keep)
    has_outcome, has_delivery = has_outcome.filter(keep), has_delivery.filter(keep)
    outcome_day, delivery_day = outcome_day.filter(keep), delivery_day.filter(keep)
    n = rows.num_rows
    deviation = pc.subtract(rows["delivered_t"], rows["promise_t"])
    deviation = pc.if_else(has_delivery, deviation, pa.nulls(n, pa.int64()))
    # The oracle's on_time is finance's "kept"; late and cancelled keep their names.
    label = pc.if_else(pc.equal(rows["status"], "on_time"), "kept", rows["status"])
    columns: dict[str, Any] = {
        "order_ref": rows["order_id"],
        "created_at": _us(rows["created_t"]),
        "first_promised_at": _us(rows["promise_t"]),
        "delivered_at": _us(rows["delivered_t"]),
        "cancelled_at": _us(rows["cancelled_t"]),
        "outcome": pc.if_else(has_outcome, label, pa.nulls(n, pa.string())),
        "outcome_at": pc.if_else(has_outcome, _us(rows["resolved_t"]), pa.nulls(n, TIMESTAMP)),
        "outcome_day": pc.if_else(has_outcome, outcome_day, pa.nulls(n, pa.date32())),
        "deviation_us": deviation,
        "deviation_hours": pc.divide(deviation.cast(pa.float64()), float(US_PER_HOUR)),
        "delivery_day": pc.if_else(has_delivery, delivery_day, pa.nulls(n, pa.date32())),
    }
    return pa.table([columns[f.name] for f in EVIDENCE_SCHEMA], schema=EVIDENCE_SCHEMA)


# -- lineage -----------------------------------------------------------------------------


def _runs(root: str, versions: dict[str, int], tables: list[pa.Table]) -> list[dict[str, Any]]:
    used: dict[str, dict[str, Any]] = {}
    for table in tables:
        for row in table.select(["validation_run_id", "batch_id", "quality_status"]).to_pylist():
            entry = used.setdefault(row["validation_run_id"], dict(row, facts=0))
            entry["facts"] += 1
    if not used:
        return []
    recorded = {
        r["run_id"]: r
        for r in read_table(
            root,
            VALIDATION_RUNS,
            ["run_id", "batch_id", "suite", "outcome", "success", "validated_at"],
            version=versions[VALIDATION_RUNS.path],
        ).to_pylist()
    }
    out = []
    for run_id, entry in sorted(used.items()):
        run = recorded.get(run_id)
        if run is None:
            raise ReportRefused(
                f"published facts cite validation run {run_id}, which quality/validation_runs "
                "does not hold: the lakehouse is inconsistent"
            )
        out.append(
            {
                "run_id": run_id,
                "batch_id": run["batch_id"],
                "suite": run["suite"],
                "outcome": run["outcome"],
                "quality_status": entry["quality_status"],
                "validated_at": run["validated_at"].isoformat(),
                "facts": entry["facts"],
            }
        )
    return out
