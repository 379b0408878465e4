"""Reports for a period (cost, scaling, anomaly, deployment) as CSV and PDF, from the data
the analytics service keeps; :func:`generate_report` is the one entry point."""

from services.analytics.reports.generate import (
    MEDIA_TYPES,
    ReportFile,
    build_report,
    generate_report,
    render,
)
from services.analytics.reports.model import (
    FORMATS,
    KINDS,
    Period,
    Report,
    ReportError,
    parse_format,
    parse_kind,
    parse_period,
)
from services.analytics.reports.sources import Sources

__all__ = [
    "FORMATS",
    "KINDS",
    "MEDIA_TYPES",
    "Period",
    "Report",
    "ReportError",
    "ReportFile",
    "Sources",
    "build_report",
    "generate_report",
    "parse_format",
    "parse_kind",
    "parse_period",
    "render",
]
