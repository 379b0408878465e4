"""Pure: a report's main table as CSV (RFC 4180, a header row then one row per line)."""

from __future__ import annotations

import csv
import io

from services.analytics.reports.model import Report

__all__ = ["render_csv"]


def render_csv(report: Report) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(report.table.columns)
    writer.writerows(report.table.rows)
    return out.getvalue().encode()
