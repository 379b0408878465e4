"""A report as PDF with reportlab: title and period, a summary, charts (reportlab's own
graphics: bar and line charts drawn as vectors), the main table (its header repeated on every
page) and notes. The table's cells are the CSV's, printed unwrapped."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from services.analytics.reports.model import Chart, Report

__all__ = ["render_pdf"]

PALETTE = [
    colors.HexColor(c) for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
]
WIDTH, HEIGHT = 240 * mm, 62 * mm
LABELS = 16
"""At most this many x-axis labels are printed (the others left blank)."""


def _plot(chart: Chart) -> Any:
    plot: Any = VerticalBarChart() if chart.kind == "bar" else HorizontalLineChart()
    plot.x, plot.y, plot.width, plot.height = 45, 35, WIDTH - 200, HEIGHT - 70
    plot.data = [tuple(v) for v in chart.series.values()]
    every = max(1, -(-len(chart.categories) // LABELS))
    plot.categoryAxis.categoryNames = [
        c if i % every == 0 else "" for i, c in enumerate(chart.categories)
    ]
    plot.categoryAxis.labels.fontName = "Helvetica"
    plot.categoryAxis.labels.fontSize = 7
    plot.categoryAxis.labels.angle = 30 if len(chart.categories) > 6 else 0
    plot.categoryAxis.labels.boxAnchor = "ne" if len(chart.categories) > 6 else "n"
    plot.valueAxis.valueMin = 0
    plot.valueAxis.labels.fontName = "Helvetica"
    plot.valueAxis.labels.fontSize = 7
    top = max((max(v) for v in chart.series.values() if v), default=0.0)
    if top <= 0:
        plot.valueAxis.valueMax = 1
    series = plot.bars if chart.kind == "bar" else plot.lines
    for i in range(len(chart.series)):
        series[i].fillColor = PALETTE[i % len(PALETTE)]
        series[i].strokeColor = PALETTE[i % len(PALETTE)]
        if chart.kind == "line":
            series[i].strokeWidth = 1.5
    return plot


def _drawing(chart: Chart) -> Drawing:
    drawing = Drawing(WIDTH, HEIGHT)
    drawing.add(String(0, HEIGHT - 12, chart.title, fontName="Helvetica-Bold", fontSize=10))
    drawing.add(_plot(chart))
    legend = Legend()
    legend.x, legend.y = WIDTH - 145, HEIGHT - 30
    legend.fontName = "Helvetica"
    legend.fontSize = 7
    legend.alignment = "right"
    legend.colorNamePairs = [
        (PALETTE[i % len(PALETTE)], name[:30]) for i, name in enumerate(chart.series)
    ]
    drawing.add(legend)
    return drawing


def _table(rows: Sequence[tuple[str, ...]], *, header: bool) -> Table:
    table = Table([list(r) for r in rows], repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 7.5),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
    if header:
        style += [
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7.5),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde6f0")),
        ]
    table.setStyle(TableStyle(style))
    return table


def render_pdf(report: Report) -> bytes:
    styles = getSampleStyleSheet()
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=landscape(A4),
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=f"{report.title}: {report.tenant}",
        author="Xynergy analytics",
    )
    story: list[Any] = [
        Paragraph(escape(report.title), styles["Title"]),
        Paragraph(
            escape(
                f"Tenant {report.tenant}, {report.period.label()}; generated "
                f"{report.generated.strftime('%Y-%m-%d %H:%M UTC')}"
            ),
            styles["Normal"],
        ),
        Spacer(1, 4 * mm),
    ]
    if report.summary:
        story += [_table(report.summary, header=False), Spacer(1, 4 * mm)]
    for chart in report.charts:
        story += [_drawing(chart), Spacer(1, 3 * mm)]
    story.append(Paragraph("Details", styles["Heading2"]))
    if report.table.rows:
        story.append(_table([report.table.columns, *report.table.rows], header=True))
    else:
        story.append(Paragraph("Nothing recorded in this period.", styles["Normal"]))
    if report.notes:
        story.append(Paragraph("Notes", styles["Heading2"]))
        story += [Paragraph(escape(n), styles["Normal"]) for n in report.notes]
    doc.build(story)
    return out.getvalue()
