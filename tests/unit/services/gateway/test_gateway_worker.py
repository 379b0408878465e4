"""The worker process of ``python -m services.gateway``: its logging tunings keep the access
log's lines whole while skipping the lookups no formatter reads."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterator

import pytest

from services.common.telemetry import JsonFormatter
from services.gateway.__main__ import GC_YOUNG_THRESHOLD, tune_worker

pytestmark = pytest.mark.unit

_SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    saved = {name: getattr(logging, name) for name in _SWITCHES}
    thresholds = gc.get_threshold()
    yield
    for name, value in saved.items():
        setattr(logging, name, value)
    gc.set_threshold(*thresholds)


class _Keep(logging.Handler):
    """Keeps each record it is given."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record() -> logging.LogRecord:
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("xynergy.test.worker")
    handler = _Keep(records)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("request", extra={"fields": {"status": 200, "route": "/api/v2/crm"}})
    finally:
        logger.removeHandler(handler)
    return records[0]


@pytest.mark.usefixtures("restored_logging")
def test_tuned_worker_skips_caller_thread_and_process_lookups() -> None:
    before = _record()
    assert before.funcName == "_record"  # the default: a stack walk per record
    assert before.threadName is not None
    assert before.process is not None
    tune_worker()
    after = _record()
    assert after.funcName != "_record"
    assert (after.threadName, after.processName, after.process) == (None, None, None)
    line = json.loads(JsonFormatter().format(after))
    assert (line["msg"], line["status"], line["route"]) == ("request", 200, "/api/v2/crm")


@pytest.mark.usefixtures("restored_logging")
def test_tuned_worker_collects_the_young_generation_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    tune_worker()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
    assert gc.isenabled()
