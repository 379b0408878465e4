"""What the reliability tests share: the objects they put in flight, the convergence check
(every object Ready or Stalled at its generation, children exactly one per owner) and reading
an operator's own Prometheus counters.

The operator always runs as its own process (`python -m controllers`, test_rollout_support's
`Operator`), so a test can SIGKILL it as a crash would.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from kube_support import Kube
from prometheus_client.parser import text_string_to_metric_families
from test_rollout_support import create_rollout
from test_xynergyservice import create_xs, xs_url

from apis.conditions import Condition, check_invariants

GROUP = "/apis/xynergy.io/v1alpha1"
MANAGED = "app.kubernetes.io/managed-by=xynergy"
# A Prometheus nobody serves: ScalingPolicies then converge on their fallback with a reason.
NO_PROMETHEUS = "http://127.0.0.1:9"
CANARY_STEPS = [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]


@dataclass
class Fleet:
    """The objects a test put in one namespace, by kind."""

    ns: str
    services: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    rollouts: list[str] = field(default_factory=list)

    def add_service(self, kube: Kube, name: str) -> None:
        create_xs(kube, self.ns, name, scaling={"minInstances": 1, "maxInstances": 3})
        self.services.append(name)

    def add_policy(self, kube: Kube, name: str, target: str) -> None:
        body = {
            "apiVersion": "xynergy.io/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name},
            "spec": {
                "targetRef": {"name": target},
                "metric": {"source": "prometheus", "prometheusUrl": NO_PROMETHEUS,
                           "query": "sum(up)", "targetPerInstance": 10},
                "mode": "reactive", "interval": "5s", "minInstances": 1, "maxInstances": 3,
            },
        }  # fmt: skip
        resp = kube.create(f"{GROUP}/namespaces/{self.ns}/scalingpolicies", body)
        assert resp.status_code == 201, resp.text
        self.policies.append(name)

    def add_rollout(self, kube: Kube, name: str, target: str) -> None:
        create_rollout(kube, self.ns, name, target=target, image=f"reg.example/app:{name}",
                       strategy={"canary": {"steps": CANARY_STEPS}})  # fmt: skip
        self.rollouts.append(name)

    def bump(self, kube: Kube, name: str, image: str) -> None:
        """A spec change (a new generation) of one XynergyService."""
        resp = kube.http.patch(
            xs_url(self.ns, name),
            json={"spec": {"image": image}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert resp.status_code == 200, resp.text


def items(kube: Kube, path: str, **params: Any) -> list[dict[str, Any]]:
    """A list, waiting out the apiserver's transient answers (429 while a new CRD's storage
    initialises, 5xx while it restarts)."""
    found: list[dict[str, Any]] = []

    def listed() -> bool:
        resp = kube.get(path, **params)
        assert resp.status_code == 200 or resp.status_code == 429 or resp.status_code >= 500, (
            resp.text
        )
        if resp.status_code == 200:
            found[:] = resp.json()["items"]
        return resp.status_code == 200

    kube.wait_for(f"a list of {path}", listed, timeout=30)
    return found


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == type_), {})


def settled(obj: dict[str, Any]) -> bool:
    """Decided at its generation: observedGeneration == generation, not Reconciling, and a
    Ready condition with a reason (True; or False with the reason, e.g. metrics unavailable;
    or Stalled). The status invariants hold on every read."""
    meta, status = obj["metadata"], obj.get("status") or {}
    conditions = [Condition.model_validate(c) for c in status.get("conditions", [])]
    facts = {
        "generation": meta["generation"],
        "observed_generation": status.get("observedGeneration"),
    }
    if conditions:
        problems = check_invariants(conditions=conditions, **facts)
        assert problems == [], (meta["name"], problems)
    if status.get("observedGeneration") != meta["generation"]:
        return False
    if condition(obj, "Reconciling").get("status") == "True":
        return False
    return bool(condition(obj, "Ready").get("reason"))


def unsettled(kube: Kube, fleet: Fleet) -> list[str]:
    """Names of the fleet's objects not yet settled (and every service not yet Ready)."""
    out = []
    for plural, names in (("xynergyservices", fleet.services),
                          ("scalingpolicies", fleet.policies),
                          ("rollouts", fleet.rollouts)):  # fmt: skip
        objs = {
            o["metadata"]["name"]: o for o in items(kube, f"{GROUP}/namespaces/{fleet.ns}/{plural}")
        }
        for name in names:
            obj = objs.get(name)
            if obj is None or not settled(obj):
                out.append(f"{plural}/{name}")
            elif plural == "xynergyservices" and condition(obj, "Ready").get("status") != "True":
                out.append(f"{plural}/{name} (not Ready)")
    return out


def converge(
    kube: Kube,
    fleet: Fleet,
    timeout: float = 120,
    *,
    more: Callable[[Kube, Fleet], list[str]] | None = None,
    explain: Callable[[list[str]], object] | None = None,
) -> float:
    """Wait until every object of the fleet has settled (and `more` lists nothing); the
    seconds it took. The failure names what is left (`explain` says more of it)."""
    left: list[str] = []
    start = time.monotonic()

    def done() -> bool:
        left[:] = unsettled(kube, fleet) + (more(kube, fleet) if more else [])
        return not left

    try:
        kube.wait_for("every object of the fleet to settle", done, timeout=timeout)
    except BaseException as exc:
        shown = explain(left) if explain else left[:10]
        raise AssertionError(f"not converged: {shown} ({len(left)} in all)") from exc
    return time.monotonic() - start


def rollout_done(kube: Kube, fleet: Fleet) -> list[str]:
    """Rollouts not yet Promoted."""
    objs = items(kube, f"{GROUP}/namespaces/{fleet.ns}/rollouts")
    return [
        o["metadata"]["name"] for o in objs if (o.get("status") or {}).get("phase") != "Promoted"
    ]


def children_problems(kube: Kube, fleet: Fleet) -> list[str]:
    """Orphans (owner gone), duplicates (two children of one kind for one owner and role) and
    missing children (a XynergyService without its Deployment or Service)."""
    owners = {}
    for plural in ("xynergyservices", "rollouts"):
        for obj in items(kube, f"{GROUP}/namespaces/{fleet.ns}/{plural}"):
            owners[obj["metadata"]["uid"]] = (obj["kind"], obj["metadata"]["name"])
    problems = []
    for kind, path in (("Deployment", f"/apis/apps/v1/namespaces/{fleet.ns}/deployments"),
                       ("Service", f"/api/v1/namespaces/{fleet.ns}/services")):  # fmt: skip
        per_owner: collections.Counter[tuple[str, str]] = collections.Counter()
        for child in items(kube, path, labelSelector=MANAGED):
            refs = [r for r in child["metadata"].get("ownerReferences", []) if r.get("controller")]
            uid = refs[0]["uid"] if refs else None
            if uid not in owners:
                problems.append(f"orphan {kind} {child['metadata']['name']}")
                continue
            per_owner[owners[uid]] += 1
        for owner, n in per_owner.items():
            if n > 1:
                problems.append(f"{n} {kind}s owned by {owner[0]} {owner[1]}")
        for name in fleet.services:
            if per_owner[("XynergyService", name)] != 1:
                problems.append(f"XynergyService {name} has no {kind}")
    return problems


def history_repeats(kube: Kube, fleet: Fleet) -> list[str]:
    """Rollouts whose revision history records one revision twice (a step replayed)."""
    out = []
    for obj in items(kube, f"{GROUP}/namespaces/{fleet.ns}/rollouts"):
        revs = [h["revision"] for h in (obj.get("status") or {}).get("history") or []]
        if len(revs) != len(set(revs)):
            out.append(f"{obj['metadata']['name']}: {revs}")
    return out


# Status fields that record progress a crash must not lose (wording and timestamps move on
# their own, and a Rollout finishing its last step may still add to its history).
DURABLE = ("observedGeneration", "latestReadyRevision", "url", "phase", "currentStepIndex",
           "canaryRevision")  # fmt: skip


def statuses(kube: Kube, fleet: Fleet) -> dict[str, dict[str, Any]]:
    """Every object's durable status fields and its Ready status."""
    out = {}
    for plural in ("xynergyservices", "scalingpolicies", "rollouts"):
        for obj in items(kube, f"{GROUP}/namespaces/{fleet.ns}/{plural}"):
            status = obj.get("status") or {}
            kept = {k: status.get(k) for k in DURABLE}
            kept["ready"] = condition(obj, "Ready").get("status")
            out[f"{plural}/{obj['metadata']['name']}"] = kept
    return out


def metric_total(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of counter `name` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


class RolloutSteps:
    """Every status of the namespace's Rollouts as the apiserver stored it, in order: a watch
    from the list's resourceVersion (resumed from the last one seen when a stream ends), on a
    thread of its own, so no intermediate status is missed the way polling would miss it."""

    def __init__(self, kube: Kube, ns: str) -> None:
        self.http = Kube.from_kubeconfig(kube.kubeconfig).http  # a connection of its own
        self.http.timeout = httpx.Timeout(10, read=None)
        self.path = f"{GROUP}/namespaces/{ns}/rollouts"
        self.seen: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RolloutSteps:
        listed = self.http.get(self.path)
        listed.raise_for_status()
        self.rv = listed.json()["metadata"]["resourceVersion"]
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.http.close()
        self.thread.join(timeout=15)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._stream()
            except (httpx.HTTPError, ValueError) as exc:
                if not self.stopping.is_set():
                    self.errors.append(repr(exc))
                    self.stopping.wait(0.5)

    def _stream(self) -> None:
        params = {"watch": "1", "resourceVersion": self.rv, "timeoutSeconds": "60"}
        with self.http.stream("GET", self.path, params=params) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":  # 410 Gone: history compacted; steps may be missed
                    raise ValueError(f"watch error: {obj.get('message')}")
                self.rv = obj["metadata"]["resourceVersion"]
                status = obj.get("status") or {}
                self.seen[obj["metadata"]["name"]].append(
                    {k: status.get(k) for k in ("phase", "currentStepIndex", "canaryWeight")}
                )

    def problems(self, steps: list[dict[str, Any]]) -> list[str]:
        """Per Rollout: a step index that went back (a step repeated), a canary weight that fell
        while progressing, or promotion without each `setWeight` of `steps` below 100 seen."""
        out = [f"watch: {e}" for e in self.errors]
        weights = [s["setWeight"] for s in steps if 0 < s.get("setWeight", 0) < 100]
        for name, states in self.seen.items():
            index = weight = 0
            for s in states:
                if (s["currentStepIndex"] or 0) < index:
                    out.append(f"{name}: step {index} -> {s['currentStepIndex']}: {states}")
                index = max(index, s["currentStepIndex"] or 0)
                live = s["phase"] in ("Progressing", "Paused")
                if live and (s["canaryWeight"] or 0) < weight:
                    out.append(f"{name}: weight {weight} -> {s['canaryWeight']}: {states}")
                weight = max(weight, s["canaryWeight"] or 0) if live else weight
            seen_weights = {s["canaryWeight"] for s in states}
            promoted = any(s["phase"] == "Promoted" for s in states)
            if promoted and not set(weights) <= seen_weights:
                out.append(f"{name}: promoted without weights {weights} all seen: {states}")
        return out
