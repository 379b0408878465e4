"""`kubectl xynergy audit` on a fake lightkube client: the text table, `-o yaml`, the
parameters missing (the rules that read them fail closed, as the bindings do) and `--fail-on`.
Agreement with the real policies is tested in tests/integration/test_admission_policies.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result
from lightkube import ApiError

from controllers.plugin import main

pytestmark = pytest.mark.unit

DIGEST = "@sha256:" + "0123456789abcdef" * 4


class Item:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.metadata = SimpleNamespace(name=body["metadata"]["name"])
        self.data = body.get("data")

    def to_dict(self) -> dict[str, Any]:
        return self.body


class FakeClient:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects

    def _kind(self, res: Any) -> str:
        return str(res._api_info.resource.kind)

    def list(self, res: Any, **_: Any) -> list[Item]:
        return [Item(o) for o in self.objects if o["kind"] == self._kind(res)]

    def get(self, res: Any, name: str, *, namespace: str) -> Item:
        for o in self.list(res):
            if (o.body["metadata"]["name"], o.body["metadata"].get("namespace")) == (
                name,
                namespace,
            ):
                return o
        request = httpx.Request("GET", f"https://apiserver/{namespace}/{name}")
        body = {"kind": "Status", "code": 404, "message": f'"{name}" not found'}
        # lightkube 1.x annotates these as httpx2's Request/Response (httpx's work alike)
        raise ApiError(request=request, response=httpx.Response(404, json=body, request=request))  # type: ignore[arg-type]


def obj(kind: str, name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}


PARAMS = {
    "kind": "ConfigMap",
    "metadata": {"name": "xynergy-policy-params", "namespace": "xynergy-system"},
    "data": {"allowedRegistries": "ghcr.io/xynergy", "allowedScopes.slack": "chat:write"},
}
PROD = {"kind": "Namespace", "metadata": {"name": "prod"}}
SIZED = {"cpu": "1", "memory": "1Gi"}


def run(objects: list[dict[str, Any]], *args: str) -> Result:
    factory = lambda: FakeClient(objects)  # noqa: E731
    return CliRunner().invoke(main, ["audit", *args], obj={"client_factory": factory})


def test_text_lists_findings_most_severe_first() -> None:
    objects = [
        PROD,
        PARAMS,
        obj("XynergyService", "web", "prod", {"image": "nginx:1", "resources": SIZED}),
        obj("OAuthConnection", "chat", "prod", {"provider": "slack", "scopes": ["admin"]}),
    ]
    done = run(objects, "-A")
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == (
        "Parameters: xynergy-system/xynergy-policy-params. Findings: 1 high, 2 medium, 0 low."
    )
    assert lines[1].split()[:3] == ["SEVERITY", "RULE", "OBJECT"]
    assert lines[2].split()[:3] == ["high", "xynergy-oauth-scopes", "OAuthConnection/prod/chat"]
    assert [line.split()[1] for line in lines[3:]] == ["xynergy-image-provenance"] * 2


def test_missing_parameters_fail_closed_and_fail_on_sets_the_exit_status() -> None:
    objects = [
        PROD,
        obj(
            "XynergyService",
            "ok",
            "prod",
            {"image": "ghcr.io/xynergy/a" + DIGEST, "resources": SIZED},
        ),
        obj("XynergyService", "small", "dev", {"image": "x"}),
    ]
    done = run(objects, "-A", "-o", "yaml", "--fail-on", "medium")
    assert done.exit_code == 1, done.output
    data = yaml.safe_load(done.output)
    assert data["params"] is None
    rules = [(f["object"]["name"], f["rule"]) for f in data["findings"]]
    assert rules == [("ok", "xynergy-image-provenance"), ("small", "xynergy-resources-set")]
    assert "xynergy-policy-params is missing" in data["findings"][0]["message"]
    assert run(objects[2:], "-A", "--fail-on", "medium").exit_code == 0  # only a low one
