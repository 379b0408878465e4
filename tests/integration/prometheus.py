"""A real Prometheus for integration tests (Debian's `prometheus`, hack/deps/prometheus.sh):
started on a free port with a temp config and data dir, history backfilled with
`promtool tsdb create-blocks-from openmetrics`, and a live scrape target whose values a test sets.

Registered from conftest.py (`pytest_plugins`); fixtures: `scrape_target` (function scope) and
`prometheus_factory` (start one server per test with its own backfill). Other kinds' tests
(Rollout analysis) reuse them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from reaper import reap_with_parent

__all__ = ["PrometheusServer", "ScrapeTarget", "Series", "free_port", "openmetrics"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _labels(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}" if inner else ""


@dataclass
class ScrapeTarget:
    """An HTTP /metrics endpoint serving gauges the test sets (a live scrape target)."""

    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    def set(self, name: str, value: float, **labels: str) -> None:
        self.values[(name, tuple(sorted(labels.items())))] = value

    def render(self) -> str:
        lines = []
        for (name, labels), value in sorted(self.values.items()):
            lines.append(f"{name}{_labels(dict(labels))} {value}")
        return "\n".join(lines) + "\n"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ScrapeTarget:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass(frozen=True)
class Series:
    """One series to backfill: metric name, labels, (timestamp seconds, value) samples."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]]


def openmetrics(series: Sequence[Series]) -> str:
    """The OpenMetrics text promtool backfills from (gauges, seconds timestamps, # EOF)."""
    out: list[str] = []
    for name in sorted({s.name for s in series}):
        out.append(f"# TYPE {name} gauge")
        for s in (s for s in series if s.name == name):
            labels = _labels(s.labels)
            out.extend(f"{name}{labels} {v} {t:.3f}" for t, v in s.samples)
    out.append("# EOF")
    return "\n".join(out) + "\n"


class PrometheusServer:
    """One Prometheus process: `start`, `stop` (the data dir stays), `start` again."""

    def __init__(self, workdir: Path, *, targets: Sequence[str] = (), scrape_seconds: int = 1):
        for tool in ("prometheus", "promtool"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is not installed (hack/deps/prometheus.sh)")
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = workdir / "prometheus.yml"
        jobs = "".join(
            f"  - job_name: load{i}\n    static_configs:\n      - targets: ['{t}']\n"
            for i, t in enumerate(targets)
        )
        self.config.write_text(
            f"global:\n  scrape_interval: {scrape_seconds}s\n"
            f"  evaluation_interval: {scrape_seconds}s\nscrape_configs:\n{jobs}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backfill(self, series: Sequence[Series]) -> None:
        """Write history as TSDB blocks (before `start`, or picked up at the next start)."""
        source = self.workdir / "backfill.om"
        source.write_text(openmetrics(series))
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(self.data)],
            check=True,
            capture_output=True,
        )

    def start(self, *, timeout: float = 60.0) -> None:
        log = (self.workdir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=3650d",
                "--query.lookback-delta=5m",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        reap_with_parent(self.proc.pid)  # gone with a SIGKILLed test process too
        self._wait(lambda: self._ready(), "ready", timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def query(self, promql: str) -> list[dict[str, object]]:
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        resp.raise_for_status()
        result: list[dict[str, object]] = resp.json()["data"]["result"]
        return result

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.workdir / "prometheus.log").read_text()[-2000:]
            raise RuntimeError(f"prometheus exited ({self.proc.returncode}): {log}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _wait(check: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        raise TimeoutError(f"prometheus not {what} after {timeout}s")


@pytest.fixture
def scrape_target() -> Iterator[ScrapeTarget]:
    with ScrapeTarget() as target:
        yield target


@pytest.fixture
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PrometheusServer]]:
    """`make(targets=[...], backfill=[Series...])` -> a started Prometheus, stopped at the end."""
    servers: list[PrometheusServer] = []

    def make(*, targets: Sequence[str] = (), backfill: Sequence[Series] = ()) -> PrometheusServer:
        server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets=targets)
        if backfill:
            server.backfill(backfill)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
