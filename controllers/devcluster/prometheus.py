"""Prometheus for `xynergy dev up`: Debian's `prometheus` (hack/deps/prometheus.sh) on a free
port of 127.0.0.1, scraping every dev component that serves /metrics.

It starts before the operator and the services (they are given its URL), so its targets come
from a file (`file_sd_configs`) that `ScrapeTargets.add` rewrites as each component comes up;
Prometheus reloads the file on change. Every series carries `component="<name>"`; the gateway's
request series also get `service="<upstream>"` from their `route` label (the dev route table),
which is what the analytics anomaly engine's default queries select on.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from controllers.devcluster.cluster import DevCluster
from controllers.devcluster.processes import ClusterError, Probe, free_port, wait_healthy

__all__ = ["ScrapeTargets", "prometheus_config", "start_prometheus"]

SCRAPE_SECONDS = 5


class ScrapeTargets:
    """The file Prometheus discovers its targets in (one entry per component)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries: list[dict[str, Any]] = json.loads(self.path.read_text())
        return entries

    def add(self, component: str, address: str) -> None:
        """Scrape http://ADDRESS/metrics as COMPONENT (replacing an earlier entry of it)."""
        entries = [e for e in self.read() if e["labels"]["component"] != component]
        entries.append({"targets": [address], "labels": {"component": component}})
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=2))
        tmp.replace(self.path)  # Prometheus never reads a half-written file


def prometheus_config(*, targets: Path, routes: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The config: one job over the targets file; `routes` (service -> gateway route
    prefixes) become relabel rules adding `service` to the gateway's series."""
    relabel = [
        {
            "source_labels": ["component", "route"],
            "separator": ";",
            "regex": "gateway;(?:" + "|".join(re.escape(p) for p in prefixes) + ")",
            "target_label": "service",
            "replacement": service,
        }
        for service, prefixes in sorted(routes.items())
        if prefixes
    ]
    job: dict[str, Any] = {
        "job_name": "xynergy-dev",
        "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "5s"}],
    }
    if relabel:
        job["metric_relabel_configs"] = relabel
    interval = f"{SCRAPE_SECONDS}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [job],
    }


def start_prometheus(
    cluster: DevCluster,
    *,
    routes: Mapping[str, Sequence[str]],
    progress: Callable[[str], None],
    timeout: float = 120.0,
) -> tuple[str, ScrapeTargets]:
    """Start Prometheus (registered with the cluster, so `dev down` stops it); returns its URL
    and the targets file components are added to."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise ClusterError("prometheus: not installed; run `make deps` (hack/deps/prometheus.sh)")
    folder = cluster.workdir / "prometheus"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    targets = ScrapeTargets(folder / "targets.json")
    targets.path.write_text("[]")
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(targets=targets.path, routes=routes)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    progress(f"starting Prometheus on {url}")
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=15d",
    ]
    proc = cluster.add_process(
        name="prometheus", argv=argv, probe=Probe(url=f"{url}/-/ready", what="/-/ready")
    )
    wait_healthy(proc, timeout=timeout)
    return url, targets
