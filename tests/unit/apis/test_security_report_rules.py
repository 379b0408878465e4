"""apis.policies: the admission rules evaluated over existing objects (the compliance report).
Agreement with the CEL policies themselves is checked against the real apiserver in
tests/integration/test_admission_policies.py; here each rule's edges, the parameters as the
shipped ConfigMap gives them, and the report's order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from apis.policies import CORS_PATTERNS_SHAPE, Params, evaluate, report

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).parents[3] / "manifests" / "policies"
PARAMS_FILE = POLICIES / "params.yaml"
SHIPPED = Params.from_data(yaml.safe_load(PARAMS_FILE.read_text())["data"])
DIGEST = "@sha256:" + "0123456789abcdef" * 4
GOOD = "ghcr.io/xynergy/crm:1" + DIGEST


def xs(name: str = "crm", namespace: str = "team", **spec: Any) -> dict[str, Any]:
    base = {"image": GOOD, "resources": {"cpu": "1", "memory": "1Gi"}}
    merged = {k: v for k, v in {**base, **spec}.items() if v is not None}
    meta = {"name": name, "namespace": namespace}
    return {"kind": "XynergyService", "metadata": meta, "spec": merged}


def oauth(provider: str, scopes: list[str]) -> dict[str, Any]:
    meta = {"name": "c", "namespace": "team"}
    return {
        "kind": "OAuthConnection",
        "metadata": meta,
        "spec": {"provider": provider, "scopes": scopes},
    }


def rules(obj: dict[str, Any], *, production: bool = True) -> list[str]:
    return [f.rule for f in evaluate(obj, params=SHIPPED, production=production)]


def test_shipped_parameters_parse_as_the_policies_split_them() -> None:
    assert SHIPPED.allowed_registries == ("us-docker.pkg.dev/xynergy-demo/", "ghcr.io/xynergy/")
    assert "users:read.email" in SHIPPED.allowed_scopes["slack"]
    assert "https://www.googleapis.com/auth/gmail.send" in SHIPPED.allowed_scopes["gmail"]
    odd = Params.from_data({"allowedRegistries": " a.io/x,b.io/ ,, ", "allowedScopes.s": "x\ny,z"})
    assert odd.allowed_registries == ("a.io/x/", "b.io/")
    assert odd.allowed_scopes == {"s": ("x", "y", "z")}


def test_a_compliant_service_has_no_findings() -> None:
    assert rules(xs()) == []


@pytest.mark.parametrize(
    ("image", "fragments"),
    [
        ("ghcr.io/xynergy-evil/x" + DIGEST, ["not from an allowed registry"]),
        ("ghcr.io/xynergy/crm:1", ["not pinned by digest"]),
        ("nginx:1", ["not from an allowed registry", "not pinned by digest"]),
    ],
)
def test_image_provenance_in_production_only(image: str, fragments: list[str]) -> None:
    found = evaluate(xs(image=image), params=SHIPPED, production=True)
    assert [f.rule for f in found] == ["xynergy-image-provenance"] * len(fragments)
    assert all(frag in f.message for frag, f in zip(fragments, found, strict=True))
    assert rules(xs(image=image), production=False) == []


def test_resources_both_set_on_services_and_resizing_rollout_templates() -> None:
    assert rules(xs(resources={"cpu": "1"})) == ["xynergy-resources-set"]
    assert rules(xs(resources=None)) == ["xynergy-resources-set"]
    rollout: dict[str, Any] = {
        "kind": "Rollout",
        "metadata": {},
        "spec": {"template": {"resources": {}}},
    }
    assert rules(rollout) == ["xynergy-resources-set"]
    rollout["spec"]["template"] = {"env": []}
    assert rules(rollout) == []


def test_secret_looking_literals_are_named_and_their_values_never_shown() -> None:
    env = [
        {"name": "db_Password", "value": "hunter2"},
        {"name": "API_TOKEN", "secretKeyRef": {"name": "s", "key": "k"}},
        {"name": "SIGNING_KEY", "value": ""},
        {"name": "LOG_LEVEL", "value": "info"},
    ]
    [found] = evaluate(xs(env=env), params=SHIPPED, production=False)
    assert found.rule == "xynergy-secret-env"
    assert found.severity == "high"
    assert found.message.startswith("spec.env db_Password looks like a secret")
    assert "hunter2" not in found.message


def test_key_file_paths_are_not_secrets_but_other_literals_still_are() -> None:
    files = [
        {"name": "XYNERGY_INTERNAL_SIGNING_KEY_FILE", "value": "/var/run/xynergy/internal/key"},
        {"name": "jwt_secret_file", "value": "/var/run/xynergy/jwt/secret"},
    ]
    assert rules(xs(env=files)) == []
    rollout = {"kind": "Rollout", "metadata": {}, "spec": {"template": {"env": files}}}
    assert rules(rollout) == []
    not_paths = [
        {"name": "A_KEY_FILE", "value": "key"},  # relative
        {"name": "B_KEY", "value": "/abc"},  # absolute, but not a *_FILE name
        {"name": "C_KEY_FILE_X", "value": "/abc"},
    ]
    [found] = evaluate(xs(env=files + not_paths), params=SHIPPED, production=True)
    assert found.rule == "xynergy-secret-env"
    assert found.message.startswith("spec.env A_KEY_FILE, B_KEY, C_KEY_FILE_X looks like")
    assert found.message.endswith("set a *_FILE variable to the absolute path of its file")


def test_wildcard_cors_in_a_rollout_template() -> None:
    env = [{"name": "XYNERGY_GATEWAY_CORS_ORIGINS", "value": '["https://*.x.com"]'}]
    rollout = {"kind": "Rollout", "metadata": {}, "spec": {"template": {"env": env}}}
    assert rules(rollout) == ["xynergy-gateway-cors"]
    env[0]["value"] = '["https://app.x.com"]'
    assert rules(rollout) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("XYNERGY_GATEWAY_CORS_ORIGINS", '["*"]'),
        ("xynergy_gateway_cors_origins", '["*"]'),  # the gateway reads names in any case
        ("XYNERGY_GATEWAY_CORS_ORIGINS", '["https://\\u002a.x.com"]'),  # a JSON escape of '*'
    ],
)
def test_wildcard_cors_origins_in_any_spelling(name: str, value: str) -> None:
    [found] = evaluate(xs(env=[{"name": name, "value": value}]), params=SHIPPED, production=True)
    assert found.rule == "xynergy-gateway-cors"
    assert found.message.startswith("XYNERGY_GATEWAY_CORS_ORIGINS must not contain '*'")


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("[]", False),
        ('["https://*.xynergyos.com"]', False),
        (' [ "HTTPS://*.App.Example.org:8443" ,\n "http://*.x.io" ] ', False),
        ('[".*"]', True),
        ('[".+"]', True),
        ('["^.*$"]', True),
        ('["*"]', True),
        ('["https://*.com"]', True),  # every .com website
        ('["https://*.xynergyos.com", "https://*.io"]', True),
        ('["https://app.*.com"]', True),
        ('["https:\\/\\/*.x.com"]', True),  # escapes are refused, not decoded
        ('"https://*.x.com"', True),  # not a list
    ],
)
def test_cors_origin_patterns_must_not_match_every_website(value: str, refused: bool) -> None:
    for name in ("XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS", "Xynergy_Gateway_Cors_Origin_Patterns"):
        found = evaluate(xs(env=[{"name": name, "value": value}]), params=SHIPPED, production=True)
        assert [f.rule for f in found] == (["xynergy-gateway-cors"] if refused else [])
        if refused:
            assert found[0].message.startswith(
                "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS must be a JSON list of patterns like"
            )


def test_cors_values_from_a_configmap_are_not_judged() -> None:
    """Admission cannot read a ConfigMap's value; the gateway refuses a bad one at start."""
    ref = {"configMapKeyRef": {"name": "gateway-settings", "key": "cors"}}
    env = [
        {"name": n, **ref}
        for n in ("XYNERGY_GATEWAY_CORS_ORIGINS", "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS")
    ]
    assert rules(xs(env=env)) == []


def test_the_policy_holds_the_reports_pattern_regex() -> None:
    """apis.policies and the CEL policy test the patterns with the same regex text."""
    [policy] = [
        d
        for d in yaml.safe_load_all((POLICIES / "gateway-cors.yaml").read_text())
        if d["kind"] == "ValidatingAdmissionPolicy"
    ]
    expressions = [v["expression"] for v in policy["spec"]["validations"]]
    assert sum(f"matches(r'{CORS_PATTERNS_SHAPE}')" in e for e in expressions) == 1


def test_oauth_scopes_outside_the_providers_set() -> None:
    [found] = evaluate(
        oauth("slack", ["chat:write", "admin", "x"]), params=SHIPPED, production=False
    )
    assert found.message.startswith("spec.scopes admin, x not allowed for provider slack;")
    assert rules(oauth("gmail", ["email", "openid"])) == []
    assert rules(oauth("github", ["repo"])) == ["xynergy-oauth-scopes"]  # no key: none allowed


def test_missing_parameters_fail_closed_for_the_rules_that_read_them() -> None:
    found = evaluate(oauth("slack", []), params=None, production=False)
    assert [f.rule for f in found] == ["xynergy-oauth-scopes"]
    assert "xynergy-policy-params is missing" in found[0].message
    assert rules(xs(image=GOOD), production=False) == []  # image rule: production only


def test_report_orders_by_severity_and_uses_the_namespace_labels() -> None:
    objs = [
        xs("a", "prod", image="nginx:1" + DIGEST, resources=None),
        xs("b", "dev", image="nginx:1", env=[{"name": "TOKEN", "value": "v"}]),
    ]
    found = report(objs, params=SHIPPED, production_namespaces=["prod"])
    assert [(f.severity, f.name, f.rule) for f in found] == [
        ("high", "b", "xynergy-secret-env"),
        ("medium", "a", "xynergy-image-provenance"),
        ("low", "a", "xynergy-resources-set"),
    ]
    assert found[0].as_dict()["object"] == {
        "kind": "XynergyService",
        "namespace": "dev",
        "name": "b",
    }
