"""`kubectl xynergy get|status|connect|completion` and `-o json|yaml` on a fake lightkube client
that serves the objects captured from the local cluster in each state (tests/data/health)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import yaml
from click.shell_completion import BashComplete
from click.testing import CliRunner, Result
from lightkube import ApiError

from controllers.plugin import COMPLETE_VAR, PROG, main

DATA = Path(__file__).parents[2] / "data" / "health"


def captured(kind: str, state: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((DATA / kind / f"{state}.yaml").read_text())
    obj["metadata"]["namespace"] = "team-a"
    return obj


class Obj:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.metadata = SimpleNamespace(name=body["metadata"]["name"])

    def to_dict(self) -> dict[str, Any]:
        return self.body


class FakeClient:
    """get/list/watch of lightkube's Client over a fixed set of objects; `changes` are what a
    watch streams (a watch without changes blocks, as a quiet real one does)."""

    def __init__(self, objects: list[dict[str, Any]], changes: list[dict[str, Any]] = ()):  # type: ignore[assignment]
        self.objects, self.changes = objects, list(changes)
        self.listed: list[str | None] = []

    def _of(self, res: Any) -> list[dict[str, Any]]:
        kind = res._api_info.resource.kind
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, res: Any, name: str, *, namespace: str) -> Obj:
        for o in self._of(res):
            if (o["metadata"]["name"], o["metadata"]["namespace"]) == (name, namespace):
                return Obj(o)
        request = httpx.Request("GET", f"https://apiserver/{namespace}/{name}")
        body = {"kind": "Status", "code": 404, "message": f'"{name}" not found'}
        # lightkube 1.x annotates these as httpx2's Request/Response (httpx's work alike)
        raise ApiError(request=request, response=httpx.Response(404, json=body, request=request))  # type: ignore[arg-type]

    def list(self, res: Any, *, namespace: str) -> list[Obj]:
        self.listed.append(namespace)
        return [Obj(o) for o in self._of(res) if namespace in ("*", o["metadata"]["namespace"])]

    def watch(self, res: Any, *, namespace: str, fields: dict[str, str]) -> Iterator[Any]:
        for body in self.changes:
            yield "MODIFIED", Obj(body)
        threading.Event().wait()  # a quiet watch


def run(args: list[str], client: FakeClient) -> Result:
    return CliRunner().invoke(main, args, obj={"client_factory": lambda: client})


SERVICES = [captured("XynergyService", s) for s in ("ready", "reconciling", "stalled", "paused")]


def test_get_lists_each_object_with_its_kstatus_verdict() -> None:
    out = run(["get", "xs", "-n", "team-a"], FakeClient(SERVICES))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split()[:4] == ["NAME", "KSTATUS", "READY", "REASON"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert rows == {
        "web": ["Current", "True", "Ready"],
        "huge": ["InProgress", "Unknown", "Unschedulable"],
        "needs-secret": ["Failed", "False", "SecretNotFound"],
        "held": ["InProgress", "Unknown", "Creating"],
    }


def test_json_and_yaml_carry_the_same_data() -> None:
    client = FakeClient(SERVICES)
    as_json = json.loads(
        run(["get", "xynergyservices", "-n", "team-a", "-o", "json"], client).output
    )
    as_yaml = yaml.safe_load(
        run(["get", "XynergyService", "-n", "team-a", "-o", "yaml"], client).output
    )
    assert as_json == as_yaml
    assert [(r["name"], r["kstatus"]) for r in as_json][:1] == [("web", "Current")]
    assert as_json[2]["conditions"][1]["type"] == "Stalled"


def test_get_all_namespaces_lists_every_namespace() -> None:
    client = FakeClient(SERVICES)
    out = run(["get", "xs", "-A"], client)
    assert out.exit_code == 0, out.output
    assert client.listed == ["*"]
    assert out.output.splitlines()[1].split()[:2] == ["team-a", "web"]


def test_without_n_the_kubeconfig_contexts_namespace_is_used_as_kubectl_does() -> None:
    client = FakeClient(SERVICES)
    client.namespace = "team-a"  # type: ignore[attr-defined]  # lightkube's Client has it
    out = run(["get", "xs"], client)
    assert out.exit_code == 0, out.output
    assert client.listed == ["team-a"]
    assert out.output.splitlines()[1].split()[0] == "web"
    out = run(["status", "xs", "web"], client)
    assert out.exit_code == 0, out.output
    assert out.output.startswith("XynergyService team-a/web: Current")
    out = run(["get", "xs", "-n", "other"], client)  # -n still wins
    assert client.listed[-1] == "other"


def test_status_of_a_paused_rollout() -> None:
    client = FakeClient([captured("Rollout", "paused")])
    out = run(["status", "ro", "canary", "-n", "team-a"], client)
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "Rollout team-a/canary: InProgress (Paused)"
    assert "Reconciling=True PausedByStep: step 2/2: paused until promoted" in out.output
    data = yaml.safe_load(
        run(["status", "rollout", "canary", "-n", "team-a", "-o", "yaml"], client).output
    )
    assert (data["kstatus"], data["phase"], data["reason"]) == (
        "InProgress",
        "Paused",
        "PausedByStep",
    )


def test_bad_kind_and_missing_object_say_what_is_wrong() -> None:
    out = run(["status", "deployment", "x"], FakeClient([]))
    assert out.exit_code == 2
    assert "'deployment' is not a Xynergy kind; expected one of:" in out.output
    assert "xs" in out.output
    missing = run(["status", "oc", "nope", "-n", "team-a"], FakeClient([]))
    assert missing.exit_code == 1
    assert "oauthconnection team-a/nope:" in missing.output


def test_rollout_status_and_forecast_print_yaml() -> None:
    ro = run(["rollout", "status", "canary", "-n", "team-a", "-o", "yaml"],
             FakeClient([captured("Rollout", "paused")]))  # fmt: skip
    assert ro.exit_code == 0, ro.output
    assert yaml.safe_load(ro.output)["status"]["phase"] == "Paused"
    sp = run(["forecast", "scales", "-n", "team-a", "-o", "yaml"],
             FakeClient([captured("ScalingPolicy", "ready")]))  # fmt: skip
    assert sp.exit_code == 0, sp.output
    assert yaml.safe_load(sp.output)["currentInstances"] == 3


def test_connect_prints_the_url_and_waits_for_connected() -> None:
    pending, connected = (
        captured("OAuthConnection", "pending"),
        captured("OAuthConnection", "connected"),
    )
    connected["metadata"]["name"] = "pending"
    out = run(
        ["connect", "pending", "-n", "team-a"], FakeClient([pending], changes=[pending, connected])
    )
    assert out.exit_code == 0, out.output
    assert pending["status"]["authorizationURL"] in out.stdout
    assert out.stdout.splitlines()[-1].startswith(
        "Connected: team-a/pending account {'teamId': 'T0FAKETEAM'"
    )
    as_json = run(["connect", "pending", "-n", "team-a", "-o", "json"],
                  FakeClient([pending], changes=[connected]))  # fmt: skip
    assert json.loads(as_json.stdout)["phase"] == "Connected"
    assert pending["status"]["authorizationURL"] in as_json.stderr  # stdout stays JSON


def test_connect_fails_when_the_provider_refuses() -> None:
    pending = captured("OAuthConnection", "pending")
    refused = yaml.safe_load(yaml.safe_dump(pending))
    for c in refused["status"]["conditions"]:
        c["reason"] = "AuthorizationFailed"
        c["message"] = "the provider refused the code: access_denied"
    out = run(["connect", "pending", "-n", "team-a"], FakeClient([pending], changes=[refused]))
    assert out.exit_code == 1
    assert "PendingAuthorization: the provider refused the code: access_denied" in out.output


def test_connect_gives_up_after_the_timeout() -> None:
    pending = captured("OAuthConnection", "pending")
    out = run(["connect", "pending", "-n", "team-a", "--timeout", "1"], FakeClient([pending]))
    assert out.exit_code == 1
    assert "not connected after 1s" in out.output
    broken = run(
        ["connect", "broken", "-n", "team-a"], FakeClient([captured("OAuthConnection", "stalled")])
    )
    assert broken.exit_code == 1
    assert "Error: spec.clientSecretRef: Secret absent not found" in broken.output


def test_connect_on_a_degraded_connection_prints_its_message_and_url() -> None:
    """Connected, but Slack's user token is to be got (Degraded UserReauthRequired, a URL in
    status): the message and URL are printed, and it waits until the URL is gone."""
    degraded, connected = (
        captured("OAuthConnection", "degraded"),
        captured("OAuthConnection", "connected"),
    )
    url = degraded["status"]["authorizationURL"]
    out = run(
        ["connect", "relinked", "-n", "team-a"],
        FakeClient([degraded], changes=[degraded, connected]),
    )
    assert out.exit_code == 0, out.output
    assert (
        "oauthconnection team-a/relinked is connected but degraded: UserReauthRequired: no user "
        "token for spec.userScopes; the bot token still works" in out.stdout
    )
    assert f"Open this URL to authorize relinked again:\n{url}" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("Connected: team-a/relinked account")
    assert "Degraded" not in out.stdout.splitlines()[-1]
    as_json = run(["connect", "relinked", "-n", "team-a", "-o", "json"],
                  FakeClient([degraded], changes=[connected]))  # fmt: skip
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["degraded"] is None
    assert url in as_json.stderr
    assert "UserReauthRequired" in as_json.stderr
    no_wait = run(["connect", "relinked", "-n", "team-a", "--no-wait"], FakeClient([degraded]))
    assert no_wait.exit_code == 0, no_wait.output
    assert url in no_wait.stdout


def test_connect_on_a_degraded_connection_fails_when_a_new_url_replaces_its_own() -> None:
    degraded = captured("OAuthConnection", "degraded")
    failed = yaml.safe_load(yaml.safe_dump(degraded))
    failed["status"]["authorizationURL"] = degraded["status"]["authorizationURL"] + "&new=1"
    for c in failed["status"]["conditions"]:
        c["message"] = f"the provider refused the authorization code: invalid_code; {c['message']}"
    out = run(["connect", "relinked", "-n", "team-a"], FakeClient([degraded], changes=[failed]))
    assert out.exit_code == 1
    assert "still degraded, with a new authorization URL" in out.output
    assert "UserReauthRequired: the provider refused the authorization code" in out.output


def test_connect_on_a_connection_degraded_without_url_is_connected_with_the_message() -> None:
    out = run(
        ["connect", "linked", "-n", "team-a"],
        FakeClient([captured("OAuthConnection", "client-missing")]),
    )
    assert out.exit_code == 0, out.output
    assert "Open this URL" not in out.output
    assert out.stdout.splitlines()[-1] == (
        "Degraded: ClientSecretMissing: tokens are valid until 2026-12-01T16:15:10Z but cannot "
        "be refreshed: spec.clientSecretRef: Secret linked-client not found"
    )


def test_completion_script_and_names_from_the_cluster() -> None:
    script = CliRunner().invoke(main, ["completion", "bash"])
    assert script.exit_code == 0
    assert f"{COMPLETE_VAR}=bash_complete" in script.output
    client = FakeClient(SERVICES)
    complete = BashComplete(main, {"obj": {"client_factory": lambda: client}}, PROG, COMPLETE_VAR)
    kinds = [c.value for c in complete.get_completions(["status"], "sc")]
    assert kinds == ["scalingpolicies"]
    names = [c.value for c in complete.get_completions(["status", "xs", "-n", "team-a"], "h")]
    assert names == ["huge", "held"]
    assert [c.value for c in complete.get_completions(["connect"], "")] == []


def test_the_console_script_is_installed_next_to_python() -> None:
    """`kubectl xynergy` finds `kubectl-xynergy` on PATH: the package installs it."""
    script = Path(sys.executable).parent / "kubectl-xynergy"
    assert script.exists()
    out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("completion", "connect", "forecast", "get", "rollout", "status"):
        assert f"  {command} " in out.stdout


def _verified_rollout() -> dict[str, Any]:
    """The paused Rollout with smoke checks, an analysis run and verification runs: an older
    preTraffic run that failed, then (after a retry) one that failed again, and prePromotion."""
    obj = captured("Rollout", "paused")
    obj["spec"]["verification"] = {
        "smoke": [{"name": "healthz", "path": "/healthz"}, {"name": "list", "path": "/items"}]
    }
    at = "2026-12-01T15:20:00Z"
    pre = {"stage": "preTraffic", "time": at, "verdict": "Failed"}
    obj["status"]["analysisRuns"] = [
        {**pre, "evidence": ["preTraffic healthz failed: expected status 200, got status 500"]},
        {"stepIndex": 0, "time": at, "verdict": "Successful", "score": 97.5, "look": 1,
         "canaryWeight": 20, "evidence": ["latency: no regression"]},
        {**pre, "evidence": ["preTraffic healthz failed: expected status 200, got status 503"]},
        {"stage": "prePromotion", "time": at, "verdict": "Successful"},
    ]  # fmt: skip
    checks = [
        {"check": "healthz", "passed": False, "expected": "status 200", "actual": "status 503"},
        {"check": "list", "passed": False, "expected": '"ok"', "actual": '"no"', "field": "state"},
        {"check": "loadTest", "passed": False, "expected": "p99 <= 300 ms", "actual": "p99 812 ms"},
    ]
    ok = [{"check": "healthz", "passed": True}, {"check": "list", "passed": True}]
    obj["status"]["verification"] = [
        {"stage": "preTraffic", "revision": "r2", "time": at, "passed": False, "checks": checks},
        {"stage": "prePromotion", "revision": "r2", "time": at, "passed": True, "checks": ok},
    ]
    return obj


def test_rollout_status_prints_verification_runs_by_stage() -> None:
    out = run(["rollout", "status", "canary", "-n", "team-a"], FakeClient([_verified_rollout()]))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    shown = [line for line in lines if line.startswith(("Analysis:", "Verification"))]
    assert shown == [
        "Analysis:  step 0 look 1 Successful score 97.5 at 20%",
        "Verification preTraffic: Failed (healthz GET /healthz: expected status 200, got status "
        '503; list GET /items: field state expected "ok", got "no"; loadTest: expected p99 <= '
        "300 ms, got p99 812 ms)",
        "Verification prePromotion: Successful (2 checks passed)",
    ]
    assert "look None" not in out.output
    # runs[-3:] drops the oldest run; with four shown, the older preTraffic keeps its evidence
    obj = _verified_rollout()
    obj["status"]["analysisRuns"].pop(1)
    older = run(["rollout", "status", "canary", "-n", "team-a"], FakeClient([obj])).output
    at = older.splitlines().index("Verification preTraffic: Failed")
    assert older.splitlines()[at + 1].strip() == (
        "preTraffic healthz failed: expected status 200, got status 500"
    )
