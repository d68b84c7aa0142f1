"""The human-readable credit report (PDF, reportlab).

Four parts: summary (headline figures, company comparison, excluded days),
trend (monthly kept rate with its Wilson interval, daily kept rate against
the company's, stability), methodology (definitions and formulas) and lineage
(table versions, gate runs, pipeline version, file digests, signing key).
Every figure comes from :class:`ReportContent`, computed before rendering.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, Line, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from orderhealth.credit.figures import Headline, MonthFigures

__all__ = ["ReportContent", "render_pdf"]

_INK = colors.HexColor("#1f2d3d")
_ACCENT = colors.HexColor("#2f6f9f")
_GREY = colors.HexColor("#8a97a5")
_WARN = colors.HexColor("#b0413e")


class ReportContent(msgspec.Struct, frozen=True):
    report_id: str
    subject: str
    period: str
    generated_at: str
    headline: Headline
    company: Headline | None
    months: list[MonthFigures]
    #: (day, subject kept rate, company kept rate) for the daily chart.
    daily_rates: list[tuple[date, float | None, float | None]]
    excluded: list[str]
    lineage: dict[str, Any]
    files: dict[str, str]
    key_id: str
    pseudonymised: bool


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _hours(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} h"


def _table(rows: Sequence[Sequence[Any]], widths: Sequence[float], header: bool = True) -> Table:
    table = Table([list(r) for r in rows], colWidths=list(widths), hAlign="LEFT")
    style: list[Any] = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
        ("TEXTCOLOR", (0, 0), (-1, -1), _INK),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#d5dbe1")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
    ]
    if header:
        style += [
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2f6")),
        ]
    table.setStyle(TableStyle(style))
    return table


def _pt(millimetres: float) -> int:
    """Whole points (reportlab's chart geometry is typed as int)."""
    return round(millimetres * mm)


def _month_chart(months: list[MonthFigures]) -> Drawing:
    drawing = Drawing(170 * mm, 62 * mm)
    chart = VerticalBarChart()
    # About 12 mm per month, so a short period does not draw one slab.
    width = min(150.0, 12.0 * len(months) + 10.0)
    chart.x, chart.y, chart.width, chart.height = _pt(14), _pt(10), _pt(width), _pt(46)
    chart.data = [[100 * (m.kept_rate or 0.0) for m in months]]
    chart.categoryAxis.categoryNames = [m.month for m in months]
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = 100
    chart.valueAxis.valueStep = 20
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = "%d%%"
    chart.bars[0].fillColor = _ACCENT
    chart.barLabelFormat = "%.1f%%"
    chart.barLabels.fontSize = 6.5
    # Inside the bar, below the interval whisker, in white.
    chart.barLabels.nudge = -26
    chart.barLabels.fillColor = colors.white
    drawing.add(chart)
    # Wilson intervals as whiskers over each bar.
    n = len(months)
    for i, m in enumerate(months):
        if m.kept_rate_ci_low is None or m.kept_rate_ci_high is None:
            continue
        x = chart.x + chart.width * (i + 0.5) / n
        y0 = chart.y + chart.height * m.kept_rate_ci_low
        y1 = chart.y + chart.height * m.kept_rate_ci_high
        drawing.add(Line(x, y0, x, y1, strokeColor=_INK, strokeWidth=0.8))
        for y in (y0, y1):
            drawing.add(Line(x - 3, y, x + 3, y, strokeColor=_INK, strokeWidth=0.8))
    drawing.add(
        String(chart.x, 58 * mm, "Kept rate by month (bars) with 95% Wilson interval", fontSize=8)
    )
    return drawing


def _daily_chart(rates: list[tuple[date, float | None, float | None]]) -> Drawing:
    drawing = Drawing(170 * mm, 62 * mm)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = _pt(14), _pt(10), _pt(150), _pt(44)
    ordinal0 = rates[0][0].toordinal()
    subject = [(d.toordinal() - ordinal0, 100 * r) for d, r, _ in rates if r is not None]
    company = [(d.toordinal() - ordinal0, 100 * c) for d, _, c in rates if c is not None]
    plot.data = [subject or [(0, 0)], company or [(0, 0)]]
    plot.lines[0].strokeColor = _ACCENT
    plot.lines[0].strokeWidth = 1.4
    plot.lines[1].strokeColor = _GREY
    plot.lines[1].strokeDashArray = [3, 2]
    plot.yValueAxis.valueMin = 0
    plot.yValueAxis.valueMax = 100
    plot.yValueAxis.valueStep = 20
    plot.yValueAxis.labels.fontSize = 7
    plot.yValueAxis.labelTextFormat = "%d%%"
    span = max(rates[-1][0].toordinal() - ordinal0, 1)
    plot.xValueAxis.valueMin = 0
    plot.xValueAxis.valueMax = span
    plot.xValueAxis.valueStep = max(span // 6, 1)
    plot.xValueAxis.labels.fontSize = 7
    plot.xValueAxis.labelTextFormat = lambda v: date.fromordinal(int(v) + ordinal0).isoformat()
    drawing.add(plot)
    legend = Legend()
    legend.x, legend.y = _pt(110), _pt(60)
    legend.fontSize = 7
    legend.colorNamePairs = [(_ACCENT, "subject"), (_GREY, "company")]
    legend.alignment = "right"
    legend.columnMaximum = 1
    drawing.add(legend)
    drawing.add(String(plot.x, 58 * mm, "Daily kept rate", fontSize=8))
    return drawing


def render_pdf(content: ReportContent, path: Path) -> None:
    styles = getSampleStyleSheet()
    h1 = ParagraphStyle("h1", parent=styles["Title"], textColor=_INK, fontSize=18, spaceAfter=4)
    h2 = ParagraphStyle("h2", parent=styles["Heading2"], textColor=_INK, spaceBefore=8)
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=9, leading=12)
    small = ParagraphStyle("small", parent=body, fontSize=7.5, leading=9.5, textColor=_GREY)
    mono = ParagraphStyle("mono", parent=body, fontName="Courier", fontSize=7, leading=9)
    warn = ParagraphStyle("warn", parent=body, textColor=_WARN)
    h = content.headline
    story: list[Any] = [
        Paragraph("Promise-fulfilment credit evidence", h1),
        Paragraph(
            f"<b>Subject:</b> {content.subject} &nbsp; <b>Period:</b> {content.period} "
            f"&nbsp; <b>Generated:</b> {content.generated_at}",
            body,
        ),
        Paragraph(f"Report {content.report_id} &middot; signed, key {content.key_id}", small),
        Spacer(1, 4 * mm),
        Paragraph("Summary", h2),
    ]
    ci = f"{_pct(h.kept_rate_ci_low)} to {_pct(h.kept_rate_ci_high)}"
    summary = [
        ["Figure", "Value"],
        ["Promises that came due or were withdrawn", f"{h.promised:,}"],
        ["Kept (delivered by the first promise)", f"{h.kept:,}"],
        ["Late", f"{h.late:,}"],
        ["Cancelled before resolving", f"{h.cancelled:,}"],
        ["Kept rate = kept / (kept + late)", _pct(h.kept_rate)],
        ["95% Wilson interval", ci],
        ["Deliveries measured for deviation", f"{h.delivered:,}"],
        [
            "Deviation p50 / p90 / p99",
            " / ".join(
                _hours(v)
                for v in (h.deviation_hours_p50, h.deviation_hours_p90, h.deviation_hours_p99)
            ),
        ],
        ["Mean deviation (negative = early)", _hours(h.deviation_hours_avg)],
        [
            "Stability: CV of the daily kept rate",
            "n/a"
            if h.stability_cv is None
            else f"{h.stability_cv:.4f} over {h.days_with_outcomes} days",
        ],
    ]
    story.append(_table(summary, [95 * mm, 70 * mm]))
    if content.company is not None:
        c = content.company
        diff = (
            None
            if h.kept_rate is None or c.kept_rate is None
            else 100 * (h.kept_rate - c.kept_rate)
        )
        story += [
            Paragraph("Comparison with the company", h2),
            _table(
                [
                    ["", "Subject", "Company"],
                    ["Promises", f"{h.promised:,}", f"{c.promised:,}"],
                    ["Kept rate", _pct(h.kept_rate), _pct(c.kept_rate)],
                    [
                        "95% Wilson interval",
                        ci,
                        f"{_pct(c.kept_rate_ci_low)} to {_pct(c.kept_rate_ci_high)}",
                    ],
                    ["Difference", "n/a" if diff is None else f"{diff:+.2f} points", ""],
                ],
                [55 * mm, 55 * mm, 55 * mm],
            ),
        ]
    story.append(Paragraph("Data quality", h2))
    if content.excluded:
        story.append(
            Paragraph(
                f"<b>{len(content.excluded)} day(s) are EXCLUDED</b> because they were not "
                "cleanly published (quarantined, not yet gated or not final). The figures "
                "above do not include them:",
                warn,
            )
        )
        story += [Paragraph(f"&bull; {line}", warn) for line in content.excluded[:40]]
        if len(content.excluded) > 40:
            story.append(Paragraph(f"... and {len(content.excluded) - 40} more (manifest)", warn))
    else:
        story.append(
            Paragraph(
                "Every day of the period was published by the quality gate; no day is excluded.",
                body,
            )
        )
    story.append(
        Paragraph(
            f"All figures use only facts that passed the quality gate; "
            f"{len(content.lineage['validation_runs'])} validation run(s) are cited in the "
            "lineage section. The order-level evidence was recomputed from the raw events "
            "and reconciles with the published daily facts on every day.",
            body,
        )
    )

    story += [PageBreak(), Paragraph("Trend", h2)]
    if content.months:
        story.append(_month_chart(content.months))
    if len(content.daily_rates) >= 2:
        story.append(_daily_chart(content.daily_rates))
    story.append(
        _table(
            [["Month", "Promised", "Kept", "Late", "Cancelled", "Kept rate", "95% interval"]]
            + [
                [
                    m.month,
                    f"{m.promised:,}",
                    f"{m.kept:,}",
                    f"{m.late:,}",
                    f"{m.cancelled:,}",
                    _pct(m.kept_rate),
                    f"{_pct(m.kept_rate_ci_low)}-{_pct(m.kept_rate_ci_high)}",
                ]
                for m in content.months
            ],
            [22 * mm, 22 * mm, 20 * mm, 18 * mm, 22 * mm, 22 * mm, 40 * mm],
        )
    )

    story += [PageBreak(), Paragraph("Methodology", h2)]
    for text in _METHODOLOGY:
        story.append(Paragraph(text, body))
        story.append(Spacer(1, 1.5 * mm))

    story += [PageBreak(), Paragraph("Lineage", h2)]
    lineage = content.lineage
    story.append(
        _table(
            [["Item", "Value"]]
            + [
                ["Pipeline version", lineage["pipeline_version"]],
                ["Pipeline commit", lineage.get("pipeline_commit") or "n/a"],
                ["Generated at (UTC)", content.generated_at],
                ["Evidence rule", lineage["evidence_rule"]],
                ["Order ids", "pseudonymised (HMAC-SHA256)" if content.pseudonymised else "as is"],
            ]
            + [[f"Delta version of {t}", str(v)] for t, v in lineage["table_versions"].items()],
            [70 * mm, 95 * mm],
        )
    )
    story.append(Paragraph("Validation runs that gated the facts used", h2))
    runs = lineage["validation_runs"]
    shown = runs[:60]
    story.append(
        _table(
            [["Run id", "Outcome", "Validated at", "Facts"]]
            + [
                [r["run_id"], r["quality_status"], r["validated_at"][:19], r["facts"]]
                for r in shown
            ],
            [92 * mm, 22 * mm, 36 * mm, 15 * mm],
        )
    )
    if len(runs) > len(shown):
        story.append(Paragraph(f"... {len(runs) - len(shown)} more in the manifest", small))
    files = [["File", "SHA-256"]] + [[n, Paragraph(d, mono)] for n, d in content.files.items()]
    story.append(
        KeepTogether(
            [
                Paragraph("Evidence files", h2),
                _table(files, [35 * mm, 130 * mm]),
                Spacer(1, 2 * mm),
                Paragraph(
                    "The digests of every file, this PDF included, are in manifest.json, which "
                    f"is signed with Ed25519 (key {content.key_id}). Verify with: "
                    "<font face='Courier'>orderhealth credit-verify manifest.json "
                    "--public-key KEY.pub.pem</font>",
                    body,
                ),
            ]
        )
    )

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(_GREY)
        canvas.drawString(18 * mm, 10 * mm, f"{content.subject} · {content.period}")
        canvas.drawRightString(192 * mm, 10 * mm, f"report {content.report_id} · page {doc.page}")
        canvas.restoreState()

    document = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=f"Promise-fulfilment credit evidence: {content.subject}",
        author="orderhealth",
        invariant=1,
    )
    document.build(story, onFirstPage=footer, onLaterPages=footer)


_METHODOLOGY = [
    "<b>Source.</b> Order lifecycle events are consumed from Kafka, validated against the "
    "event contract and stored in <i>bronze/order_events</i>. A streaming job computes daily "
    "facts per subject; a batch of facts is published to <i>gold/promise_fulfilment</i> only "
    "after its Great Expectations suites pass (quality gate). This report reads only that "
    "published table.",
    "<b>Promise.</b> The first promised delivery time stated when the order was created. "
    "Later promise updates do not move it.",
    "<b>Outcome rule.</b> A promise resolves at min(delivered_at, first promise). Delivered at "
    "or before the promise: <i>kept</i>, on the delivery day. Otherwise <i>late</i>, on the "
    "promise day (known as soon as the promise passes, delivered or not). Cancelled before "
    "resolving: <i>cancelled</i>, on the cancellation day; cancelled orders are not in the "
    "kept rate.",
    "<b>Days and subjects.</b> Days are UTC calendar days. An order counts for the subject "
    "it had when its outcome occurred (for warehouse and carrier: the one in effect then).",
    "<b>Kept rate.</b> p = kept / n with n = kept + late. <b>95% Wilson interval:</b> "
    "(p + z&sup2;/2n &plusmn; z &radic;(p(1-p)/n + z&sup2;/4n&sup2;)) / (1 + z&sup2;/n), "
    "z = 1.959964.",
    "<b>Deviation.</b> delivered_at - first promise, in hours, over orders delivered in the "
    "period (negative = early). Percentiles by nearest rank: the value at rank "
    "ceil(q &middot; N) of the sorted deviations, so each is an observed value.",
    "<b>Stability.</b> Coefficient of variation of the daily kept rate: population standard "
    "deviation / mean, over days with at least one resolved promise. Lower is steadier.",
    "<b>Company comparison.</b> The same figures for subject <i>all</i>, on the same days.",
    "<b>Excluded days.</b> A day is excluded (only with the explicit flag; otherwise the "
    "report is refused) when its facts are provisional, quarantined by the quality gate and "
    "not released, or not yet gated.",
    "<b>Evidence.</b> evidence.csv and evidence.parquet hold one row per order that counts: "
    "its times, its outcome and outcome day, and its deviation and delivery day. Every figure "
    "in this report can be recomputed from them; the daily totals equal the published facts "
    "(daily_facts.csv), which the generator checked against the raw events.",
    "<b>Integrity.</b> manifest.json lists each file's SHA-256 and the figures, and is "
    "signed with Ed25519. <i>orderhealth credit-verify</i> checks the signature and the "
    "digests and recomputes the figures.",
]
