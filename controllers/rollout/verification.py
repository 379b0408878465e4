"""Release verification: a Rollout's HTTP smoke checks and bounded load test, run against the
new revision before it gets traffic and again before promotion (`spec.verification`).

The evaluation is pure (`judge_smoke`, `judge_load`: a response or a set of measurements in,
a `CheckResult` with its evidence out); `verify` sends the requests with httpx. The evidence
says which check, what was expected and what came back (status code, the mismatching field,
p99 latency, error ratio), never a whole body: values are truncated and fields whose names
look secret (token, password, key...) are redacted.

The load test is a bounded async loop: requests start at `requestsPerSecond` for
`durationSeconds` (the API caps their product), at most `MAX_IN_FLIGHT` at once, and the whole
test stops at a hard deadline (duration + one request timeout) whatever the spec says;
requests that never got an answer by then count as errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from apis.v1alpha1.rollout import (
    MAX_LOAD_REQUESTS,
    CheckResult,
    LoadTest,
    SmokeCheck,
    VerificationRun,
    VerificationSpec,
    VerificationStage,
)
from services.common.idtokens import IdTokens

__all__ = [
    "LOAD_TEST",
    "MAX_IN_FLIGHT",
    "LoadMeasurement",
    "Verify",
    "evidence",
    "judge_load",
    "judge_smoke",
    "run_load",
    "verify",
]

LOAD_TEST = "loadTest"
MAX_IN_FLIGHT = 64
"""Load-test requests in flight at once, at most."""
MAX_SHOWN = 120
"""Characters of a value or body shown in the evidence."""
_SECRET_NAME = re.compile(
    r"(?i)(token|secret|passw|pwd|api[-_]?key|private[-_]?key|authorization|cookie|credential"
    r"|session|signature|^key$)"
)
_SECRET_PAIR = re.compile(
    r"(?i)((?:token|secret|password|api[-_]?key|authorization|cookie|session)\w*"
    r"[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token|digest)\s+)?[^\"'&,\s}]+"
)
_AUTH_SCHEME = re.compile(r"\b([Bb]earer|BEARER|Basic|BASIC|Digest)(\s+)[A-Za-z0-9._~+/=-]+")
"""An HTTP credential after its scheme (`Bearer eyJ...`), wherever it appears."""
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"'<>]+@")
"""The user:password of a URL (`postgres://app:hunter2@db`)."""
_MISSING = object()

Verify = Callable[[str, VerificationSpec, VerificationStage, str], Awaitable[VerificationRun]]
"""(base URL, spec, stage, revision) -> the run."""


@functools.cache
def _id_tokens() -> IdTokens:
    """The operator's one token cache (made on first use)."""
    return IdTokens()


# ---- pure evaluation ---------------------------------------------------------------------


def _clip(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scrub(text: str) -> str:
    """Free text with credentials redacted: `Bearer`/`Basic` tokens, a URL's user:password,
    and the value of a secret-looking `name=value` / `"name": value` pair."""
    text = _AUTH_SCHEME.sub(r"\1\2<redacted>", text)
    text = _URL_USERINFO.sub(r"\1<redacted>@", text)
    return _SECRET_PAIR.sub(r"\1<redacted>", text)


def _secret_entry(value: dict[Any, Any]) -> bool:
    """A `{"name": "DB_PASSWORD", "value": ...}` entry (an env var, a header) naming a secret."""
    name = value.get("name", value.get("key"))
    return isinstance(name, str) and bool(_SECRET_NAME.search(name))


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        entry = _secret_entry(value)
        return {
            k: "<redacted>"
            if _SECRET_NAME.search(str(k)) or (entry and k == "value")
            else _redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, str):
        return _scrub(value)
    return value


def _shown(value: Any) -> str:
    """A JSON value as evidence: secret-looking fields and credentials redacted, truncated."""
    text = (
        _scrub(value)
        if isinstance(value, str)
        else json.dumps(_redact(value), separators=(",", ":"))
    )
    return _clip(text)


def _snippet(body: bytes) -> str:
    """The start of a response body, secret-looking fields and credentials redacted."""
    try:
        return _shown(json.loads(body))
    except ValueError:
        text = body[: 4 * MAX_SHOWN].decode("utf-8", errors="replace")
        return _clip(_scrub(text))


def _lookup(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return _MISSING
    return doc


def _matches(actual: Any, equals: str) -> bool:
    if isinstance(actual, str):
        return actual == equals
    try:
        wanted = json.loads(equals)
    except ValueError:
        return False
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return type(actual) is type(wanted) and actual == wanted
    return bool(actual == wanted)


def _field_result(check: SmokeCheck, status: int, doc: Any) -> CheckResult | None:
    """The first expected body field that is missing or differs (None: all match)."""
    for want in check.expected_body or []:
        actual = _lookup(doc, want.path)
        secret = any(_SECRET_NAME.search(part) for part in want.path.split("."))
        if actual is _MISSING:
            got = "missing"
        elif want.equals is None or _matches(actual, want.equals):
            continue
        else:
            got = "<redacted>" if secret else _shown(actual)
        expected = "present" if want.equals is None else want.equals
        return CheckResult(
            check=check.name,
            passed=False,
            status_code=status,
            field=want.path,
            expected=_clip("<redacted>" if secret and want.equals else expected),
            actual=got,
        )
    return None


def judge_smoke(
    check: SmokeCheck, *, status: int | None, body: bytes = b"", error: str | None = None
) -> CheckResult:
    """A smoke check's outcome from its response (`status` None: no response, `error` why)."""
    expected = f"status {check.expected_status}"
    if status is None:
        return CheckResult(
            check=check.name,
            passed=False,
            expected=expected,
            actual=_clip(_scrub(error or "no answer")),
        )
    if status != check.expected_status:
        actual = f"status {status}: {_snippet(body)}" if body else f"status {status}"
        return CheckResult(
            check=check.name, passed=False, status_code=status, expected=expected, actual=actual
        )
    if check.expected_body:
        try:
            doc = json.loads(body)
        except ValueError:
            return CheckResult(
                check=check.name,
                passed=False,
                status_code=status,
                expected="a JSON body",
                actual=_snippet(body) or "empty body",
            )
        failed = _field_result(check, status, doc)
        if failed is not None:
            return failed
    return CheckResult(check=check.name, passed=True, status_code=status, expected=expected)


@dataclass(frozen=True)
class LoadMeasurement:
    """What a load test saw: the latency of each answered request (seconds) and the count of
    errors among `planned` requests (failed, 5xx, or never answered)."""

    latencies: Sequence[float]
    errors: int
    planned: int


def _p99(latencies: Sequence[float]) -> float | None:
    """Nearest-rank 99th percentile (None without data)."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def judge_load(spec: LoadTest, seen: LoadMeasurement) -> CheckResult:
    """The load test's outcome: p99 latency and error ratio against their budgets."""
    p99 = _p99(seen.latencies)
    p99_ms = None if p99 is None else round(p99 * 1000.0, 1)
    ratio = round(seen.errors / seen.planned, 4) if seen.planned else 1.0
    problems = []
    if p99_ms is None:
        problems.append("no request answered")
    elif p99_ms > spec.max_p99_milliseconds:
        problems.append(f"p99 {p99_ms:g}ms")
    if ratio > spec.max_error_ratio:
        problems.append(f"error ratio {ratio:g} ({seen.errors}/{seen.planned})")
    expected = f"p99 <= {spec.max_p99_milliseconds:g}ms, error ratio <= {spec.max_error_ratio:g}"
    measured = f"p99 {p99_ms:g}ms" if p99_ms is not None else "no answer"
    return CheckResult(
        check=LOAD_TEST,
        passed=not problems,
        expected=expected,
        actual="; ".join(problems) or f"{measured}, error ratio {ratio:g}",
        p99_milliseconds=p99_ms,
        error_ratio=ratio,
        requests=seen.planned,
    )


def evidence(run: VerificationRun) -> list[str]:
    """One line per failed check (all checks when every one passed)."""
    shown = [c for c in run.checks if not c.passed] or run.checks
    lines = []
    for c in shown:
        where = f" field {c.field}" if c.field else ""
        verdict = "passed" if c.passed else "failed"
        got = c.actual or "as expected"
        line = f"{run.stage.value} {c.check} {verdict}:{where} expected {c.expected}, got {got}"
        lines.append(_clip(line, 512))
    return lines


# ---- requests ----------------------------------------------------------------------------


async def _smoke(http: httpx.AsyncClient, check: SmokeCheck) -> CheckResult:
    headers = {"Content-Type": "application/json"} if check.body is not None else None
    try:
        resp = await http.request(
            check.method,
            check.path,
            content=check.body,
            headers=headers,
            timeout=check.timeout_seconds,
        )
    except httpx.HTTPError as exc:
        return judge_smoke(check, status=None, error=f"{type(exc).__name__}: {exc}")
    return judge_smoke(check, status=resp.status_code, body=resp.content)


async def run_load(http: httpx.AsyncClient, spec: LoadTest) -> LoadMeasurement:
    """The load test's requests, paced and bounded (see the module docstring)."""
    planned = min(spec.requests_per_second * spec.duration_seconds, MAX_LOAD_REQUESTS)
    latencies: list[float] = []
    failed = server_errors = 0
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one() -> None:
        nonlocal failed, server_errors
        async with gate:
            started = time.perf_counter()
            try:
                resp = await http.request(spec.method, spec.path, timeout=spec.timeout_seconds)
            except httpx.HTTPError:
                failed += 1
                return
            latencies.append(time.perf_counter() - started)
            server_errors += resp.status_code >= 500

    loop = asyncio.get_running_loop()
    begin = loop.time()
    deadline = begin + spec.duration_seconds + spec.timeout_seconds
    tasks: list[asyncio.Task[None]] = []
    for i in range(planned):
        due = begin + i / spec.requests_per_second
        if due >= deadline:
            break
        await asyncio.sleep(max(0.0, due - loop.time()))
        tasks.append(asyncio.create_task(one()))
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    unanswered = planned - len(latencies) - failed
    return LoadMeasurement(latencies, failed + server_errors + unanswered, planned)


async def verify(
    base_url: str,
    spec: VerificationSpec,
    stage: VerificationStage,
    revision: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    id_tokens: IdTokens | None = None,
) -> VerificationRun:
    """Every smoke check, then the load test (skipped when a smoke check failed). A Cloud Run
    URL (a tag URL) gets the operator's Google ID token (services/common/idtokens.py), so a
    service that requires authentication answers the checks, not 403."""
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    checks: list[CheckResult] = []
    caller = await (id_tokens or _id_tokens()).header(base_url)
    async with httpx.AsyncClient(
        base_url=base_url,
        limits=limits,
        transport=transport,
        follow_redirects=False,
        headers=dict([caller]) if caller else None,
    ) as http:
        for check in spec.smoke or []:
            checks.append(await _smoke(http, check))
        if spec.load_test is not None and all(c.passed for c in checks):
            checks.append(judge_load(spec.load_test, await run_load(http, spec.load_test)))
    return VerificationRun(
        stage=stage,
        revision=revision,
        time=dt.datetime.now(dt.UTC),
        passed=all(c.passed for c in checks),
        checks=checks,
    )
