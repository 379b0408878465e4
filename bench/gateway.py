"""Benchmark of the Intelligence Gateway with wrk; prints tables (not a test).

Against nginx serving a fixed JSON body on this machine, wrk pinned to its own core with
``taskset`` (the gateway, nginx and redis-server on the others; ``--no-pin`` to share):

1. direct to the upstream (nginx);
2. through the gateway: Bearer JWT auth + Redis rate limit + proxy (responses not cacheable);
3. cache hits: through the gateway, the upstream marks the response cacheable;
4. nginx as a plain reverse proxy in front of the same upstream, for reference.

Each case runs at peak (wrk, closed loop), then paced at 1,000 req/s and at 25 %, 50 % and
75 % of the gateway's proxied peak, where added latency is measured against the direct path
at the same rate. Every gateway request carries an allowed ``Origin`` (browser traffic does),
so CORS works on each. ``--compare`` runs the shipped gateway (``python -m services.gateway``,
granian) against the same app under uvicorn and against ``no-mux`` (the gate script on
redis-py's pool instead of RedisMux), each in a gateway of its own, for the one hand-written
piece that is left (docs/gateway.md has the earlier comparison that removed the others).

How a rate is paced: Debian has no wrk2, so a Lua script paces each wrk thread on a clock
(LuaJIT's ffi ``clock_gettime``): every request takes the thread's next time slot, slots
``threads / rate`` apart, so each case runs at the target rate whatever its latency (a slot
already past is not made up in a burst). Latency is wrk's, from send to response; the rates
achieved are printed next to the target.

The paced runs use as many connections as the peak runs (64): with 16, wrk's closed loop
capped the rate at 16 / latency, so the 75 % case reached 1,302 of 1,632 req/s once the
gateway's latency rose near its peak. Each paced case starts on a settled gateway (its CPU
idle for half a second after the run before) and after a 3 s warm-up run at its own rate,
discarded; the 1,000 req/s case runs again last, so an effect of the order of the cases (the
peak runs' backlog or garbage) shows as a difference between the first and the last row.

    .venv/bin/python bench/gateway.py [--duration 10] [--workers N] [--connections 64]
    .venv/bin/python bench/gateway.py --compare
    .venv/bin/python bench/gateway.py --ab /tmp/old-checkout [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "bench-jwt-secret-" + "b" * 40
INTERNAL_KEY = "bench-internal-key-" + "i" * 40
BODY = json.dumps({"contacts": [{"id": i, "name": f"Contact {i}"} for i in range(5)]})


def ensure_tools() -> None:
    missing = [
        pkg
        for tool, pkg in (
            ("wrk", "wrk"),
            ("nginx", "nginx-light"),
            ("redis-server", "redis-server"),
        )
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            env=env,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(what)


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                pids.extend(_tree(int(child)))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (the gateway's workers)."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def process(
    args: list[str], *, env: dict[str, str] | None = None, log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def nginx_conf(tmp: Path, *, upstream_port: int, proxy_port: int) -> Path:
    body = BODY.replace("'", "\\'")
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{upstream_port};
    default_type application/json;
    location /api/v2/bench/cached {{
      add_header Cache-Control "public, max-age=600";
      return 200 '{body}';
    }}
    location / {{ return 200 '{body}'; }}
  }}
  upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{proxy_port};
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    )
    return conf


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    requests: int = 0
    cpu_ms_per_request: float | None = None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

# Paces one wrk thread at a fixed rate: each request takes the thread's next slot on the clock.
_PACE_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } xyn_timespec;
int clock_gettime(int clk_id, xyn_timespec *tp);
]]
local ts = ffi.new("xyn_timespec")
local interval = INTERVAL_MS
local next_slot = nil
function delay()
  ffi.C.clock_gettime(1, ts)
  local now = tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  if next_slot == nil or next_slot < now then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + interval
  return wait
end
"""


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


ORIGIN = "https://app.xynergyos.com"
VARIANTS = ("shipped", "uvicorn", "no-mux")


def _cpus() -> tuple[str, str] | None:
    """(cores for the servers, the core for wrk), or None on one core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return ",".join(map(str, cores[:-1])), str(cores[-1])


PINNING: tuple[str, str] | None = None


def pinned(args: list[str], *, load_generator: bool = False) -> list[str]:
    if PINNING is None or shutil.which("taskset") is None:
        return args
    return ["taskset", "-c", PINNING[1] if load_generator else PINNING[0], *args]


def wrk(
    name: str,
    url: str,
    *,
    duration: int,
    connections: int,
    token: str | None,
    rate: float | None = None,
    tmp: Path,
    cpu_of: int | None = None,
) -> Result:
    script = tmp / f"wrk-{abs(hash(name))}.lua"
    lines = []
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
        lines.append(f'wrk.headers["Origin"] = "{ORIGIN}"')
    threads = min(2, connections)
    if rate is not None:
        lines.append(_PACE_LUA.replace("INTERVAL_MS", f"{threads * 1000.0 / rate:.6f}"))
    script.write_text("\n".join(lines) + "\n")
    cpu_before = cpu_seconds(cpu_of) if cpu_of else 0.0
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    out = subprocess.run(
        pinned([*cmd, "-s", str(script), url], load_generator=True),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu = (cpu_seconds(cpu_of) - cpu_before) * 1000 / n if cpu_of and n else None
    return Result(name, rps, p50, p99, int(m.group(1)) if m else 0, n, cpu)


# -- the gateway variants (built in the gateway's worker processes) ---------------------------


def variant_app() -> Any:
    """The gateway as ``XYN_BENCH_VARIANT`` asks (a server's factory)."""
    from services.gateway.app import create_app

    app = create_app()
    if os.environ.get("XYN_BENCH_VARIANT") == "no-mux":  # redis-py's pool for the gate script
        app.redis_mux = None
        app.proxy.gate._mux = None
    return app


def gateway_command(variant: str, *, workers: int, port: int) -> list[str]:
    """``shipped`` is ``python -m services.gateway`` itself (granian); ``uvicorn`` the same app
    under uvicorn's httptools protocol; ``no-mux`` granian with the gate script on redis-py."""
    target = "bench.gateway:variant_app"
    listen = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if variant == "shipped":
        return pinned([sys.executable, "-m", "services.gateway"])
    if variant == "uvicorn":
        quiet = ["--no-proxy-headers", "--no-access-log", "--no-server-header"]
        uvicorn = [sys.executable, "-m", "uvicorn", "--factory", target, "--http", "httptools"]
        return pinned([*uvicorn, *listen, *quiet, "--log-level", "warning"])
    granian = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory"]
    return pinned([*granian, *listen, "--log-level", "warning", target])


# -- one stack: nginx, redis-server, a gateway -------------------------------------------------


@dataclass
class Stack:
    tmp: Path
    token: str
    up_port: int
    proxy_port: int
    redis_port: int
    duration: int
    connections: int

    @property
    def direct(self) -> str:
        return f"http://127.0.0.1:{self.up_port}/api/v2/bench/data"

    @property
    def reverse(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/api/v2/bench/data"

    def env(self, variant: str, *, workers: int, access_log: bool) -> dict[str, str]:
        routes = self.tmp / "routes.json"
        service = {"name": "bench", "url": f"http://127.0.0.1:{self.up_port}"}
        routes.write_text(
            json.dumps({"services": [{**service, "routes": [{"prefix": "/api/v2/bench"}]}]})
        )
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "XYN_BENCH_VARIANT": variant,
            "JWT_SECRET": JWT_SECRET,
            "XYNERGY_AUTH_FIREBASE_ENABLED": "false",
            "XYNERGY_INTERNAL_SIGNING_KEY": INTERNAL_KEY,
            "XYNERGY_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "XYNERGY_GATEWAY_ROUTES_FILE": str(routes),
            "XYNERGY_GATEWAY_ROUTE_SOURCE": "file",
            # the limiter runs on every request; the limit is set out of the benchmark's reach
            "XYNERGY_GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000000",
            "XYNERGY_GATEWAY_IP_RATE_LIMIT_PER_MINUTE": "0",
            "XYNERGY_GATEWAY_TENANT_RATE_LIMIT_PER_MINUTE": "0",
            "XYNERGY_GATEWAY_ACCESS_LOG": "true" if access_log else "false",
            "XYNERGY_GATEWAY_CORS_ORIGINS": json.dumps([ORIGIN]),
            "XYNERGY_GATEWAY_HOST": "127.0.0.1",
            "XYNERGY_GATEWAY_WORKERS": str(workers),
        }

    def run(
        self, name: str, url: str, *, rate: float | None = None, duration: int = 0, **kw: Any
    ) -> Result:
        conns = self.connections
        duration = duration or self.duration
        return wrk(name, url, duration=duration, connections=conns, rate=rate, tmp=self.tmp, **kw)

    def paced(self, name: str, url: str, *, rate: float, settle_pid: int, **kw: Any) -> Result:
        """One paced case on a settled gateway: wait until the gateway is idle (the run
        before may leave work behind: a backlog, its garbage), then a warm-up run at the
        same rate (discarded: new connections, the pool, caches), then the measured run."""
        settle(settle_pid)
        warm = {k: v for k, v in kw.items() if k != "cpu_of"}
        self.run(f"warm-up {name}", url, rate=rate, duration=WARMUP_SECONDS, **warm)
        return self.run(name, url, rate=rate, **kw)


WARMUP_SECONDS = 3


def settle(pid: int, *, idle: float = 0.05, within: float = 15.0) -> None:
    """Return once the process tree ``pid`` uses less than ``idle`` of a core over half a
    second (or after ``within`` seconds: then say so)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if (cpu_seconds(pid) - before) / 0.5 < idle:
            return
    print(f"(the gateway was still busy {within:.0f} s after the previous run)", file=sys.stderr)


@contextlib.contextmanager
def gateway(
    stack: Stack, variant: str, *, workers: int, access_log: bool, tree: Path = ROOT
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A gateway of ``variant``, its code from ``tree`` (a checkout: this one by default)."""
    port = free_port()
    env = stack.env(variant, workers=workers, access_log=access_log)
    env["XYNERGY_GATEWAY_PORT"] = str(port)
    env["PYTHONPATH"] = str(tree)
    cmd = gateway_command(variant, workers=workers, port=port)
    log = stack.tmp / f"gateway-{variant}-{port}.log"
    with process(cmd, env=env, log=log, cwd=tree) as proc:
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {stack.token}", "Origin": ORIGIN}
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, f"gateway {variant}")
        r = httpx.get(f"{base}/api/v2/bench/data", headers=auth)
        assert r.status_code == 200, r.status_code
        assert r.headers["access-control-allow-origin"] == ORIGIN, r.headers
        httpx.get(f"{base}/api/v2/bench/cached", headers=auth)
        r = httpx.get(f"{base}/api/v2/bench/cached", headers=auth)
        assert r.headers["x-cache"] == "HIT", r.headers
        stack.run("warmup", f"{base}/api/v2/bench/data", token=stack.token)
        yield proc, base


def _token() -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"user_id": "bench-user", "tenant_id": "bench", "iss": "xynergy"}
    claims |= {"aud": "xynergy-api", "iat": now, "exp": now + 3600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@contextlib.contextmanager
def stack(args: argparse.Namespace) -> Iterator[Stack]:
    ensure_tools()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    with tempfile.TemporaryDirectory(prefix="xyn-bench-") as tmp_s:
        tmp = Path(tmp_s)
        for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir()
        up_port, proxy_port, redis_port = (free_port() for _ in range(3))
        conf = nginx_conf(tmp, upstream_port=up_port, proxy_port=proxy_port)
        redis_args = [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1"]
        redis_args += ["--save", "", "--appendonly", "no", "--dir", str(tmp)]
        s = Stack(tmp, _token(), up_port, proxy_port, redis_port, args.duration, args.connections)
        with (
            process(pinned([nginx, "-p", str(tmp), "-c", str(conf)]), log=tmp / "nginx.out"),
            process(pinned(redis_args), log=tmp / "redis.log"),
        ):
            wait_until(lambda: httpx.get(s.direct).status_code == 200, "nginx")
            wait_until(lambda: httpx.get(s.reverse).status_code == 200, "nginx proxy")
            yield s


# -- the two runs --------------------------------------------------------------------------


def full_table(args: argparse.Namespace) -> None:
    with stack(args) as s, gateway(s, "shipped", workers=args.workers, access_log=True) as gw:
        proc, base = gw
        proxied, cached = f"{base}/api/v2/bench/data", f"{base}/api/v2/bench/cached"
        own: dict[str, Any] = {"token": s.token, "cpu_of": proc.pid}
        peak = [
            s.run("direct (nginx upstream)", s.direct, token=None),
            s.run("gateway: auth + rate limit + proxy", proxied, **own),
            s.run("gateway: cache hits", cached, **own),
            s.run("nginx reverse proxy", s.reverse, token=None),
        ]
        rates = [("1000 req/s", 1000.0)] + [
            (f"{pct}% of peak", peak[1].rps * pct / 100) for pct in (25, 50, 75)
        ]
        rates.append(("1000 req/s again, last", 1000.0))  # shows an ordering effect, if any
        paced = []
        for label, rate in rates:
            kw: dict[str, Any] = {"rate": rate, "settle_pid": proc.pid}
            paced.append(
                (
                    label,
                    rate,
                    s.paced(f"direct @ {label}", s.direct, token=None, **kw),
                    s.paced(f"proxied @ {label}", proxied, **own, **kw),
                    s.paced(f"cache hits @ {label}", cached, **own, **kw),
                )
            )
    print_full(args, peak, paced)


def print_full(args: argparse.Namespace, peak: list[Result], paced: list[Any]) -> None:
    print(_header(args))
    print(f"{'case':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU ms/req':>11}")
    for r in peak:
        cpu = f"{r.cpu_ms_per_request:11.3f}" if r.cpu_ms_per_request is not None else " " * 11
        print(f"{r.name:40} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.non2xx:7d} {cpu}")
    print(
        f"\nPaced ({args.connections} connections, each case after the gateway settled and "
        f"a {WARMUP_SECONDS} s warm-up at its rate); added = gateway minus direct at that rate:"
    )
    print(f"{'case':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p99 ms':>8} {'CPU ms/req':>11}")
    for label, rate, direct, *cases in paced:
        print(f"-- {label} (target {rate:.0f} req/s)")
        for r in (direct, *cases):
            cpu = f"{r.cpu_ms_per_request:11.3f}" if r.cpu_ms_per_request is not None else ""
            added = f"{r.p99_ms - direct.p99_ms:8.2f}" if r is not direct else " " * 8
            print(f"{r.name:40} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {added} {cpu}")
    print(_footer())


def compare(args: argparse.Namespace) -> None:
    """Each hand-written part against what it replaces, in gateways of their own."""
    rows = []
    with stack(args) as s:
        for variant in VARIANTS:
            with gateway(s, variant, workers=args.workers, access_log=True) as (proc, base):
                own: dict[str, Any] = {"token": s.token, "cpu_of": proc.pid}
                at_1000: dict[str, Any] = {"rate": 1000.0, "settle_pid": proc.pid}
                direct = s.paced("direct @ 1000", s.direct, token=None, **at_1000)
                rows.append(
                    (
                        variant,
                        s.run(variant, f"{base}/api/v2/bench/data", **own),
                        s.run(variant, f"{base}/api/v2/bench/cached", **own),
                        s.paced(variant, f"{base}/api/v2/bench/data", **at_1000, **own),
                        direct,
                    )
                )
    print(_header(args))
    print(f"{'variant':22} {'proxied req/s':>14} {'CPU ms/req':>11} {'hits req/s':>11} "
          f"{'CPU ms/req':>11} {'+p99 ms @1000':>14}")  # fmt: skip
    for variant, proxied, hits, paced, direct in rows:
        print(
            f"{variant:22} {proxied.rps:14.0f} {proxied.cpu_ms_per_request or 0:11.3f} "
            f"{hits.rps:11.0f} {hits.cpu_ms_per_request or 0:11.3f} "
            f"{paced.p99_ms - direct.p99_ms:14.2f}"
        )
    print(_footer())


def ab(args: argparse.Namespace) -> None:
    """The shipped gateway of another checkout (``--ab DIR``, e.g. made by ``git worktree
    add DIR <commit>``) against this one's, both up at once, peak runs interleaved
    (A B, B A, ...) for ``--rounds``; the medians of each. CPU ms per request is the figure
    that moves least with the machine's other load."""
    trees = {"A (" + args.ab + ")": Path(args.ab).resolve(), "B (this checkout)": ROOT}
    runs: dict[tuple[str, str], list[Result]] = {}
    with stack(args) as s, contextlib.ExitStack() as up:
        gws = {
            name: up.enter_context(
                gateway(s, "shipped", workers=args.workers, access_log=True, tree=tree)
            )
            for name, tree in trees.items()
        }
        for r in range(args.rounds):
            for name in list(gws) if r % 2 == 0 else list(gws)[::-1]:
                proc, base = gws[name]
                for path in ("data", "cached"):
                    url = f"{base}/api/v2/bench/{path}"
                    res = s.run(name, url, token=s.token, cpu_of=proc.pid)
                    runs.setdefault((name, path), []).append(res)
    print(_header(args))
    print(f"{'gateway':40} {'path':7} {'req/s':>9} {'p99 ms':>8} {'CPU ms/req':>11}  (medians)")
    for (name, path), rs in runs.items():
        cpu = statistics.median(r.cpu_ms_per_request or 0.0 for r in rs)
        rps, p99 = statistics.median(r.rps for r in rs), statistics.median(r.p99_ms for r in rs)
        print(f"{name:40} {path:7} {rps:9.0f} {p99:8.2f} {cpu:11.3f}")
    print(_footer())


def _header(args: argparse.Namespace) -> str:
    pin = f"wrk on core {PINNING[1]}, servers on {PINNING[0]}" if PINNING else "not pinned"
    return (
        f"\nGateway benchmark: {os.cpu_count()} cores ({pin}), {args.workers} gateway workers, "
        f"{args.connections} connections at peak, {args.duration}s per run, "
        f"load average before: {LOAD_BEFORE:.2f}\n"
    )


def _footer() -> str:
    load = os.getloadavg()[0]
    return (
        f"\nLoad average at the end: {load:.2f} (other work on the machine counts in every "
        "figure but CPU ms/req, the gateway's own CPU per request, all workers).\n"
        "Targets: >= 2500 req/s proxied+authenticated, >= 5000 req/s cache hits, "
        "p99 added <= 5 ms at 1000 req/s."
    )


LOAD_BEFORE = 0.0


def main() -> int:
    global PINNING, LOAD_BEFORE
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=0, help="gateway workers (default: one per server core)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compare", action="store_true", help="hand-written parts vs stock")
    parser.add_argument("--ab", metavar="DIR", help="another checkout's gateway against this one")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --ab")
    args = parser.parse_args()
    PINNING = _cpus() if args.pin else None
    if not args.workers:  # one per core the gateway gets: two on one core cost more CPU each
        args.workers = len(PINNING[0].split(",")) if PINNING else os.cpu_count() or 1
    LOAD_BEFORE = os.getloadavg()[0]
    if args.ab:
        ab(args)
    elif args.compare:
        compare(args)
    else:
        full_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
