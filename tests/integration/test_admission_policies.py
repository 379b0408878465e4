"""The security-governance ValidatingAdmissionPolicies of manifests/policies, against the real
apiserver: for each rule an admitted and a rejected object, with the rule's message (refused in
a production namespace, warned about elsewhere); and the compliance report's rules
(apis.policies, `kubectl xynergy audit`) agreeing with the policies on shared fixtures.

The policies are applied once for the module, as shipped except that (a) names get a suffix,
(b) every binding also selects only this module's namespaces (the cluster is shared with other
modules, whose objects these rules must not judge) and (c) the parameters ConfigMap lives in a
namespace of this module. Requests are dry runs: admission runs in full, nothing is stored.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from kube_support import Kube
from lightkube import Client, KubeConfig

from apis.policies import Params, evaluate
from controllers.devcluster import repo_root
from controllers.plugin import main as plugin

pytestmark = pytest.mark.integration

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
XY = "/apis/xynergy.io/v1alpha1"
POLICY_DIR = repo_root() / "manifests" / "policies"
TEST_LABEL = "xynergy.io/policy-test"
DIGEST = "@sha256:" + "0123456789abcdef" * 4
GOOD_IMAGE = "us-docker.pkg.dev/xynergy-demo/platform/crm:1.4.2" + DIGEST
POLICY_KIND = "ValidatingAdmissionPolicy"
PLURALS = {
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


def shipped_documents() -> list[dict[str, Any]]:
    """Every object of manifests/policies, in its kustomization's order."""
    kustomization = yaml.safe_load((POLICY_DIR / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((POLICY_DIR / name).read_text()) if d]
    return docs


@dataclass(frozen=True)
class Env:
    """This module's view of the applied policies."""

    kube: Kube
    suffix: str
    production: str  # labelled xynergy.io/environment=production
    plain: str  # not labelled; also holds the parameters ConfigMap

    def policy(self, name: str) -> str:
        return f"{name}-{self.suffix}"


def scoped(doc: dict[str, Any], *, suffix: str, params_ns: str) -> dict[str, Any]:
    """A shipped policy or binding, renamed and narrowed to this module's namespaces."""
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] += f"-{suffix}"
    spec = doc["spec"]
    if doc["kind"] == "ValidatingAdmissionPolicyBinding":
        spec["policyName"] += f"-{suffix}"
        if "paramRef" in spec:
            spec["paramRef"]["namespace"] = params_ns
        selector = spec.setdefault("matchResources", {}).setdefault("namespaceSelector", {})
        selector.setdefault("matchExpressions", []).append(
            {"key": TEST_LABEL, "operator": "In", "values": [suffix]}
        )
    return doc


def make_namespace(kube: Kube, name: str, labels: dict[str, str]) -> None:
    resp = kube.create("/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}})
    assert resp.status_code == 201, resp.text


def apply_policies(kube: Kube, env: Env) -> list[str]:
    """Create the shipped objects; return the paths to delete afterwards."""
    created = []
    for doc in shipped_documents():
        if doc["kind"] == "ConfigMap":
            doc = {**doc, "metadata": {**doc["metadata"], "namespace": env.plain}}
            resp = kube.create(f"/api/v1/namespaces/{env.plain}/configmaps", doc)
            assert resp.status_code == 201, resp.text
            continue
        plural = PLURALS[doc["kind"]]
        doc = scoped(doc, suffix=env.suffix, params_ns=env.plain)
        resp = kube.create(f"{ADMISSION}/{plural}", doc)
        assert resp.status_code == 201, resp.text
        created.append(f"{ADMISSION}/{plural}/{doc['metadata']['name']}")
    return created


@pytest.fixture(scope="module")
def env(kube: Kube, crds_installed: list[str]) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:8]
    env = Env(kube, suffix, production=f"t-prod-{suffix}", plain=f"t-plain-{suffix}")
    make_namespace(
        kube, env.production, {TEST_LABEL: suffix, "xynergy.io/environment": "production"}
    )
    make_namespace(kube, env.plain, {TEST_LABEL: suffix})
    created = apply_policies(kube, env)
    try:
        wait_active(env)
        yield env
    finally:
        for path in reversed(created):
            kube.delete(path)
        for ns in (env.production, env.plain):
            kube.delete(f"/api/v1/namespaces/{ns}")


def submit(env: Env, ns: str, plural: str, body: dict[str, Any]) -> httpx.Response:
    """Create `body` as a dry run (admission runs in full; nothing is stored)."""
    body = {**body, "metadata": {"name": f"x-{uuid.uuid4().hex[:6]}"}}
    return env.kube.http.post(
        f"{XY}/namespaces/{ns}/{plural}",
        json=body,
        params={"dryRun": "All", "fieldValidation": "Strict"},
    )


def warnings(resp: httpx.Response) -> list[str]:
    return resp.headers.get_list("warning")


def service(**spec: Any) -> dict[str, Any]:
    """A XynergyService every rule admits, changed by `spec` (None removes a field)."""
    base: dict[str, Any] = {"image": GOOD_IMAGE, "resources": {"cpu": "250m", "memory": "256Mi"}}
    merged = {k: v for k, v in {**base, **spec}.items() if v is not None}
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "XynergyService", "spec": merged}


def rollout(**spec: Any) -> dict[str, Any]:
    base = {"targetRef": {"name": "crm"}, "strategy": {"immediate": {}}, **spec}
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "Rollout", "spec": base}


def oauth(provider: str, scopes: list[str]) -> dict[str, Any]:
    spec = {
        "provider": provider,
        "clientSecretRef": {"name": "client"},
        "scopes": scopes,
        "redirectURL": "https://app.xynergyos.com/oauth/callback",
        "tenant": "acme",
        "tokenSecretName": "tokens",
    }
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "OAuthConnection", "spec": spec}


def assert_denied(env: Env, resp: httpx.Response, policy: str, *fragments: str) -> None:
    assert resp.status_code in (403, 422), resp.text
    message = resp.json()["message"]
    assert f"ValidatingAdmissionPolicy '{env.policy(policy)}'" in message, message
    for fragment in fragments:
        assert fragment in message, message


def assert_admitted(resp: httpx.Response) -> None:
    assert resp.status_code in (200, 201), resp.text
    assert not warnings(resp), warnings(resp)


def assert_warned(env: Env, resp: httpx.Response, policy: str, fragment: str) -> None:
    assert resp.status_code in (200, 201), resp.text  # Warn mode: admitted
    mine = [w for w in warnings(resp) if env.policy(policy) in w]
    assert mine, warnings(resp)
    assert all(fragment in w for w in mine), mine


# One known-rejected request per binding: the module waits until each is judged
BAD_SERVICES = {
    "xynergy-resources-set": service(resources=None),
    "xynergy-secret-env": service(env=[{"name": "API_TOKEN", "value": "t"}]),
    "xynergy-gateway-cors": service(env=[{"name": "XYNERGY_GATEWAY_CORS_ORIGINS", "value": "*"}]),
}
PROBES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "xynergy-image-provenance": ("production", "xynergyservices", service(image="nginx:1")),
    "xynergy-oauth-scopes": ("production", "oauthconnections", oauth("slack", ["admin"])),
    "xynergy-oauth-scopes-warn": ("plain", "oauthconnections", oauth("slack", ["admin"])),
    **{name: ("production", "xynergyservices", body) for name, body in BAD_SERVICES.items()},
    **{f"{name}-warn": ("plain", "xynergyservices", body) for name, body in BAD_SERVICES.items()},
}


def judges_probe(env: Env, binding: str) -> bool:
    """Whether `binding` rejects (or warns about) its probe yet."""
    which, plural, body = PROBES[binding]
    resp = submit(env, env.production if which == "production" else env.plain, plural, body)
    return f"binding '{env.policy(binding)}'" in resp.text + " ".join(warnings(resp))


def wait_active(env: Env) -> None:
    """Wait until every binding judges its probe (the admission plugin syncs asynchronously)."""
    for binding in PROBES:
        env.kube.wait_for(
            f"binding {binding} to judge its probe", lambda b=binding: judges_probe(env, b)
        )


# --- images: allowed registry and digest, in production namespaces (Warn mode) ---


def test_pinned_image_from_an_allowed_registry_is_admitted_without_warning(env: Env) -> None:
    assert_admitted(submit(env, env.production, "xynergyservices", service()))
    image = "ghcr.io/xynergy/operator:0.1.0" + DIGEST
    assert_admitted(submit(env, env.production, "xynergyservices", service(image=image)))


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ("docker.io/library/nginx:1.27" + DIGEST, "is not from an allowed registry"),
        ("ghcr.io/xynergy-evil/x" + DIGEST, "is not from an allowed registry"),
        ("us-docker.pkg.dev/xynergy-demo/platform/crm:1.4.2", "is not pinned by digest"),
    ],
)
def test_production_image_outside_the_rules_is_admitted_with_a_warning(
    env: Env, image: str, fragment: str
) -> None:
    resp = submit(env, env.production, "xynergyservices", service(image=image))
    assert_warned(env, resp, "xynergy-image-provenance", fragment)
    assert f"spec.image {image} " in " ".join(warnings(resp))


def test_registry_warning_names_the_allowed_registries(env: Env) -> None:
    resp = submit(env, env.production, "xynergyservices", service(image="nginx" + DIGEST))
    expected = "[us-docker.pkg.dev/xynergy-demo/, ghcr.io/xynergy/]"
    assert_warned(env, resp, "xynergy-image-provenance", expected)


def test_rollout_image_by_tag_warns_in_production(env: Env) -> None:
    image = "us-docker.pkg.dev/xynergy-demo/platform/crm:1.5.0"
    resp = submit(env, env.production, "rollouts", rollout(image=image))
    assert_warned(env, resp, "xynergy-image-provenance", "is not pinned by digest")


def merge_patch(env: Env, path: str, patch: dict[str, Any]) -> httpx.Response:
    headers = {"Content-Type": "application/merge-patch+json"}
    return env.kube.http.patch(path, json=patch, headers=headers)


def test_only_spec_changes_of_an_existing_object_are_judged(env: Env) -> None:
    """Labels, annotations and finalizers (the operator's writes) on an object that predates a
    rule pass unjudged; a change to its spec is judged."""
    body = {**service(image="nginx:1"), "metadata": {"name": f"old-{env.suffix}"}}
    resp = env.kube.create(f"{XY}/namespaces/{env.production}/xynergyservices", body)
    assert resp.status_code == 201, resp.text
    path = f"{XY}/namespaces/{env.production}/xynergyservices/old-{env.suffix}"
    try:
        resp = merge_patch(env, path, {"metadata": {"labels": {"team": "crm"}}})
        assert_admitted(resp)
        resp = merge_patch(env, path, {"spec": {"image": "nginx:2"}})
        assert_warned(env, resp, "xynergy-image-provenance", "spec.image nginx:2 is not")
    finally:
        env.kube.delete(path)


def test_image_rules_do_not_apply_outside_production(env: Env) -> None:
    assert_admitted(submit(env, env.plain, "xynergyservices", service(image="nginx:1")))


# --- outside production: the same rules warn ---


@pytest.mark.parametrize("policy", sorted(BAD_SERVICES))
def test_outside_production_a_rule_warns_and_admits(env: Env, policy: str) -> None:
    resp = submit(env, env.plain, "xynergyservices", BAD_SERVICES[policy])
    assert_warned(env, resp, policy, f"with binding '{env.policy(policy + '-warn')}'")
    resp = submit(env, env.plain, "oauthconnections", oauth("slack", ["admin"]))
    assert_warned(env, resp, "xynergy-oauth-scopes", "spec.scopes admin not allowed")


# --- resources set ---


def test_service_without_cpu_or_memory_is_denied(env: Env) -> None:
    for resources in (None, {"cpu": "1"}, {"memory": "1Gi"}):
        resp = submit(env, env.production, "xynergyservices", service(resources=resources))
        assert_denied(env, resp, "xynergy-resources-set", "spec.resources.cpu and spec.resources")


def test_rollout_template_that_resizes_must_set_both(env: Env) -> None:
    half = rollout(image=GOOD_IMAGE, template={"resources": {"cpu": "2"}})
    resp = submit(env, env.production, "rollouts", half)
    assert_denied(env, resp, "xynergy-resources-set", "spec.template.resources must set both")
    whole = rollout(template={"resources": {"cpu": "2", "memory": "2Gi"}})
    assert_admitted(submit(env, env.production, "rollouts", whole))
    assert_admitted(submit(env, env.production, "rollouts", rollout(image=GOOD_IMAGE)))


# --- no secret-looking literal env values ---


@pytest.mark.parametrize("name", ["DB_PASSWORD", "client_secret", "API_TOKEN", "SIGNING_KEY"])
def test_secret_looking_literal_env_is_denied(env: Env, name: str) -> None:
    literal = {"name": name, "value": "s3cr3t-value"}
    body = service(env=[{"name": "LOG_LEVEL", "value": "info"}, literal])
    resp = submit(env, env.production, "xynergyservices", body)
    assert_denied(env, resp, "xynergy-secret-env", f"spec.env {name} looks like a secret")
    assert "secretKeyRef" in resp.json()["message"]
    assert "s3cr3t" not in resp.text  # the value is never echoed


def test_secret_env_from_a_secret_or_a_plain_literal_is_admitted(env: Env) -> None:
    body = service(
        env=[
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": "password"}},
        ]
    )
    assert_admitted(submit(env, env.production, "xynergyservices", body))


KEY_FILES = [
    {"name": "XYNERGY_INTERNAL_SIGNING_KEY_FILE", "value": "/var/run/xynergy/internal/key"},
    {"name": "jwt_secret_file", "value": "/var/run/xynergy/jwt/secret"},
]


def test_key_file_paths_are_admitted(env: Env) -> None:
    """A *_FILE variable holding an absolute path names a mounted Secret's file, not a key."""
    body = service(env=KEY_FILES)
    assert_admitted(submit(env, env.production, "xynergyservices", body))
    template = {"env": [KEY_FILES[0]]}
    assert_admitted(submit(env, env.production, "rollouts", rollout(template=template)))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIGNING_KEY_FILE", "var/run/xynergy/key"),  # not absolute
        ("SIGNING_KEY_FILE", "s3cr3t-value"),
        ("SIGNING_KEY", "/s3cr3t-value"),  # absolute, but not a *_FILE name
        ("KEY_FILE_CONTENT", "/s3cr3t-value"),
    ],
)
def test_secret_looking_literal_that_is_not_a_key_file_path_is_denied(
    env: Env, name: str, value: str
) -> None:
    body = service(env=[*KEY_FILES, {"name": name, "value": value}])
    resp = submit(env, env.production, "xynergyservices", body)
    assert_denied(env, resp, "xynergy-secret-env", f"spec.env {name} looks like a secret")
    assert "*_FILE variable to the absolute path" in resp.json()["message"]
    assert value not in resp.text


def test_rollout_template_literal_secret_is_denied(env: Env) -> None:
    body = rollout(template={"env": [{"name": "JWT_SECRET", "value": "s3cr3t"}]})
    resp = submit(env, env.production, "rollouts", body)
    assert_denied(env, resp, "xynergy-secret-env", "spec.template.env JWT_SECRET looks like")
    assert "s3cr3t" not in resp.text


# --- no wildcard CORS origins ---


def cors(value: str, name: str = "XYNERGY_GATEWAY_CORS_ORIGINS") -> list[dict[str, str]]:
    return [{"name": name, "value": value}]


def cors_patterns(
    value: str, name: str = "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS"
) -> list[dict[str, str]]:
    return cors(value, name)


@pytest.mark.parametrize(
    ("origins", "name"),
    [
        ('["*"]', "XYNERGY_GATEWAY_CORS_ORIGINS"),
        ('["https://*.example.com"]', "XYNERGY_GATEWAY_CORS_ORIGINS"),
        ('["*"]', "xynergy_gateway_cors_origins"),  # the gateway reads names in any case
        ('["https://\\u002a.example.com"]', "XYNERGY_GATEWAY_CORS_ORIGINS"),  # '*' escaped
    ],
)
def test_wildcard_cors_origins_are_denied(env: Env, origins: str, name: str) -> None:
    resp = submit(env, env.production, "xynergyservices", service(env=cors(origins, name)))
    assert_denied(env, resp, "xynergy-gateway-cors", "must not contain '*'")


def test_exact_cors_origins_are_admitted(env: Env) -> None:
    body = service(env=cors('["https://app.xynergyos.com"]'))
    assert_admitted(submit(env, env.production, "xynergyservices", body))


@pytest.mark.parametrize(
    ("patterns", "name"),
    [
        ('[".*"]', "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS"),
        ('["^.*$"]', "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS"),
        ('["*"]', "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS"),
        ('["https://*.com"]', "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS"),
        ('["https://*.xynergyos.com", ".+"]', "xynergy_gateway_cors_origin_patterns"),
    ],
)
def test_cors_origin_patterns_any_website_matches_are_denied(
    env: Env, patterns: str, name: str
) -> None:
    resp = submit(
        env, env.production, "xynergyservices", service(env=cors_patterns(patterns, name))
    )
    assert_denied(env, resp, "xynergy-gateway-cors", "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS must be")
    rollout_body = rollout(template={"env": cors_patterns(patterns, name)})
    resp = submit(env, env.production, "rollouts", rollout_body)
    assert_denied(env, resp, "xynergy-gateway-cors", "a domain of two labels or more")


def test_subdomain_patterns_and_configmap_values_are_admitted(env: Env) -> None:
    """A value from a ConfigMap is not visible at admission (the gateway checks it at start)."""
    for patterns in ("[]", '["https://*.xynergyos.com", "http://*.dev.example.org:8080"]'):
        body = service(env=cors_patterns(patterns))
        assert_admitted(submit(env, env.production, "xynergyservices", body))
    ref = {"configMapKeyRef": {"name": "gateway-settings", "key": "cors_origin_patterns"}}
    body = service(env=[{"name": "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS", **ref}])
    assert_admitted(submit(env, env.production, "xynergyservices", body))


# --- OAuth scopes within the allowed set ---


def test_oauth_scope_outside_the_allowed_set_is_denied(env: Env) -> None:
    resp = submit(env, env.production, "oauthconnections", oauth("slack", ["chat:write", "admin"]))
    assert_denied(
        env, resp, "xynergy-oauth-scopes", "spec.scopes admin not allowed for provider slack"
    )
    assert "allowedScopes.slack" in resp.json()["message"]
    gmail = oauth("gmail", ["https://mail.google.com/"])
    resp = submit(env, env.production, "oauthconnections", gmail)
    assert_denied(env, resp, "xynergy-oauth-scopes", "https://mail.google.com/ not allowed")


def test_oauth_scopes_in_the_allowed_set_are_admitted(env: Env) -> None:
    slack = oauth("slack", ["channels:read", "chat:write", "users:read.email"])
    assert_admitted(submit(env, env.production, "oauthconnections", slack))
    gmail = oauth("gmail", ["https://www.googleapis.com/auth/gmail.readonly", "email"])
    assert_admitted(submit(env, env.production, "oauthconnections", gmail))


# --- the policies themselves ---


def create_policy_copy(env: Env, doc: dict[str, Any], name: str) -> str:
    """An unbound copy of a policy (judges nothing); return its path."""
    doc = {**copy.deepcopy(doc), "metadata": {"name": name}}
    resp = env.kube.create(f"{ADMISSION}/validatingadmissionpolicies", doc)
    assert resp.status_code == 201, resp.text
    return f"{ADMISSION}/validatingadmissionpolicies/{name}"


def type_checked(env: Env, path: str) -> dict[str, Any] | None:
    """The policy's typeChecking status once written for its generation, else None."""
    body = env.kube.get(path).json()
    status = body.get("status", {})
    done = status.get("observedGeneration") == body["metadata"]["generation"]
    return status.get("typeChecking", {}) if done else None


def test_policies_type_check_against_the_crd_schemas(env: Env) -> None:
    """The apiserver checks validation expressions against the matched kinds' schemas: a
    misspelt field shows as a warning. A copy with a typo proves the checker has the CRD
    schemas (it treats unknown kinds as dynamic); then fresh copies of the shipped policies
    must check clean."""
    policies = {d["metadata"]["name"]: d for d in shipped_documents() if d["kind"] == POLICY_KIND}
    typo = copy.deepcopy(policies["xynergy-resources-set"])
    typo["spec"]["validations"][0]["expression"] = "has(object.spec.resouces)"
    paths = [create_policy_copy(env, typo, f"typo-{env.suffix}")]
    try:
        env.kube.wait_for(
            "the type checker to flag the typo",
            lambda: bool((type_checked(env, paths[0]) or {}).get("expressionWarnings")),
        )
        paths += [create_policy_copy(env, d, f"{n}-tc-{env.suffix}") for n, d in policies.items()]
        for path in paths[1:]:
            env.kube.wait_for(
                f"type checking of {path}", lambda p=path: type_checked(env, p) is not None
            )
            assert type_checked(env, path) == {}, path
    finally:
        for path in paths:
            env.kube.delete(path)


# --- the compliance report agrees with the policies ---

PLURAL_OF = {"XynergyService": "xynergyservices", "Rollout": "rollouts"}
PLURAL_OF["OAuthConnection"] = "oauthconnections"
# Allowed and denied objects of every rule, stored in a production namespace where every
# policy is bound in Warn mode: the apiserver's warnings are its verdict.
FIXTURES: list[dict[str, Any]] = [
    service(),
    service(image="docker.io/library/nginx:1.27"),
    service(image="ghcr.io/xynergy-evil/x" + DIGEST, resources={"cpu": "1"}),
    service(
        env=[
            {"name": "DB_PASSWORD", "value": "x"},
            {"name": "signing_key", "value": "y"},
            *cors('["https://*.xynergyos.com"]'),
        ]
    ),
    service(
        env=[
            {"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": "password"}},
            {"name": "API_TOKEN", "value": ""},
            *cors('["https://app.xynergyos.com"]'),
        ]
    ),
    service(env=KEY_FILES),
    service(env=[*cors('["*"]', "xynergy_gateway_cors_origins"), *cors_patterns('[".*"]')]),
    service(env=cors_patterns('["https://*.com"]', "Xynergy_Gateway_Cors_Origin_Patterns")),
    service(env=[*cors('["https://app.xynergyos.com"]'), *cors_patterns('["https://*.x.io"]')]),
    rollout(template={"env": cors('["https://\\u002a.x.io"]')}),
    service(
        env=[
            *KEY_FILES,
            {"name": "SIGNING_KEY_FILE", "value": "key"},
            {"name": "API_TOKEN", "value": "/t"},
        ]
    ),
    rollout(
        image="us-docker.pkg.dev/xynergy-demo/platform/crm:1.5.0",
        template={"resources": {"cpu": "2"}, "env": [{"name": "JWT_SECRET", "value": "s"}]},
    ),
    rollout(image=GOOD_IMAGE, template={"resources": {"cpu": "2", "memory": "2Gi"}}),
    oauth("slack", ["chat:write", "admin", "channels:manage"]),
    oauth("slack", ["channels:read", "users:read.email"]),
    oauth("gmail", ["https://mail.google.com/", "openid"]),
]


def warning_text(header: str) -> str:
    """The text of one Warning header (`299 - "text"`, quotes escaped)."""
    match = re.fullmatch(r'\d{3} - "(.*)"', header)
    assert match, header
    return re.sub(r"\\(.)", r"\1", match.group(1))


def verdicts(env: Env, resp: httpx.Response) -> list[tuple[str, str]]:
    """(policy, message) of each warning of this module's agreement bindings."""
    pattern = rf"Validation failed for ValidatingAdmissionPolicy '(.+)-{env.suffix}' with binding '[^']+-agree-{env.suffix}': (.*)"
    found = [re.fullmatch(pattern, warning_text(w)) for w in warnings(resp)]
    return sorted((m.group(1), m.group(2)) for m in found if m)


def agreement_binding(doc: dict[str, Any], *, suffix: str, params_ns: str) -> dict[str, Any]:
    """A shipped production binding in Warn mode, for the agreement namespace only."""
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] += f"-agree-{suffix}"
    spec = doc["spec"]
    spec["policyName"] += f"-{suffix}"
    spec["validationActions"] = ["Warn"]
    if "paramRef" in spec:
        spec["paramRef"]["namespace"] = params_ns
    selector = spec["matchResources"]["namespaceSelector"]
    selector["matchExpressions"] = [
        {"key": TEST_LABEL, "operator": "In", "values": [f"agree-{suffix}"]}
    ]
    return doc


@pytest.fixture(scope="module")
def agree(env: Env) -> Iterator[str]:
    """A production namespace where every policy only warns; its name."""
    ns = f"t-agree-{env.suffix}"
    make_namespace(
        env.kube, ns, {TEST_LABEL: f"agree-{env.suffix}", "xynergy.io/environment": "production"}
    )
    bindings = [
        agreement_binding(d, suffix=env.suffix, params_ns=env.plain)
        for d in shipped_documents()
        if d["kind"] == "ValidatingAdmissionPolicyBinding"
        and not d["metadata"]["name"].endswith("-warn")
    ]
    paths = []
    try:
        for doc in bindings:
            resp = env.kube.create(f"{ADMISSION}/validatingadmissionpolicybindings", doc)
            assert resp.status_code == 201, resp.text
            paths.append(f"{ADMISSION}/validatingadmissionpolicybindings/{doc['metadata']['name']}")
        for policy, (_, plural, body) in PROBES.items():
            if not policy.endswith("-warn"):
                env.kube.wait_for(
                    f"agreement binding of {policy}",
                    lambda p=plural, b=body, n=policy: any(
                        v[0] == n for v in verdicts(env, submit(env, ns, p, b))
                    ),
                )
        yield ns
    finally:
        for path in paths:
            env.kube.delete(path)
        env.kube.delete(f"/api/v1/namespaces/{ns}")


def shipped_params() -> Params:
    [doc] = [d for d in shipped_documents() if d["kind"] == "ConfigMap"]
    return Params.from_data(doc["data"])


def test_the_report_and_the_policies_agree_on_every_fixture(
    env: Env, agree: str, cluster: Path
) -> None:
    apiserver, python = {}, {}
    for i, body in enumerate(FIXTURES):
        doc = {**body, "metadata": {"name": f"f{i}"}}
        resp = env.kube.create(f"{XY}/namespaces/{agree}/{PLURAL_OF[body['kind']]}", doc)
        assert resp.status_code == 201, resp.text
        stored = resp.json()
        key = (body["kind"], f"f{i}")
        apiserver[key] = verdicts(env, resp)
        found = evaluate(stored, params=shipped_params(), production=True)
        python[key] = sorted((f.rule, f.message) for f in found)
    assert apiserver == python
    judged = {rule for v in apiserver.values() for rule, _ in v}
    assert judged == {p for p in PROBES if not p.endswith("-warn")}, "every rule is exercised"
    assert sum(not v for v in apiserver.values()) >= 4, "and allowed objects too"

    factory = lambda: Client(config=KubeConfig.from_file(str(cluster)))  # noqa: E731
    args = ["audit", "-n", agree, "--params-namespace", env.plain, "-o", "json"]
    done = CliRunner().invoke(plugin, args, obj={"client_factory": factory})
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["params"] == f"{env.plain}/xynergy-policy-params"
    audited: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for f in report["findings"]:
        key = (f["object"]["kind"], f["object"]["name"])
        audited.setdefault(key, []).append((f["rule"], f["message"]))
    assert {k: sorted(v) for k, v in audited.items()} == {k: v for k, v in apiserver.items() if v}
