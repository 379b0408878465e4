"""The security-governance rules of manifests/policies (ValidatingAdmissionPolicies, CEL),
evaluated in Python over objects that already exist: the compliance report of
``GET /api/v1/security/report`` (analytics) and ``kubectl xynergy audit``.

Pure: objects are the apiserver's JSON bodies (what admission sees, defaults applied), the
parameters are the data of the ConfigMap the policies read (``xynergy-policy-params``), and
the answer is a list of findings. Each check mirrors one CEL validation and produces the same
message; tests/integration/test_admission_policies.py runs shared fixtures through the real
apiserver and this module and compares the two.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PARAMS_NAME",
    "PRODUCTION_LABEL",
    "RULES",
    "SEVERITIES",
    "Finding",
    "Params",
    "Rule",
    "evaluate",
    "report",
    "report_body",
]

PARAMS_NAME = "xynergy-policy-params"
PRODUCTION_LABEL = ("xynergy.io/environment", "production")
SEVERITIES = ("high", "medium", "low")
CORS_VARIABLE = "XYNERGY_GATEWAY_CORS_ORIGINS"
CORS_PATTERNS_VARIABLE = "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS"
_LABEL_RE = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_CORS_PATTERN = f'"https?://[*][.]{_LABEL_RE}([.]{_LABEL_RE})+(:[0-9]{{1,5}})?"'
_JSON_SPACE = r"[ \t\n\r]*"
CORS_PATTERNS_SHAPE = (
    rf"(?i)^{_JSON_SPACE}\[{_JSON_SPACE}"
    rf"({_CORS_PATTERN}({_JSON_SPACE},{_JSON_SPACE}{_CORS_PATTERN})*)?{_JSON_SPACE}\]{_JSON_SPACE}$"
)
"""What a literal XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS may be: a JSON list of
``http(s)://*.`` patterns over a domain of two labels or more (RE2 and Python ``re`` read it
alike; the CEL policy holds the same text, tests/unit/apis/test_security_report_rules.py)."""
SECRET_NAME = re.compile("PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
DIGEST = re.compile("@sha256:[0-9a-f]{64}$")
WORKLOADS = ("XynergyService", "Rollout")


@dataclass(frozen=True)
class Rule:
    """One policy: its name (the ValidatingAdmissionPolicy's), the kinds it judges, the
    severity of a finding and whether it judges production namespaces only."""

    name: str
    kinds: tuple[str, ...]
    severity: str
    production_only: bool = False


RULES = {
    r.name: r
    for r in (
        Rule("xynergy-image-provenance", WORKLOADS, "medium", production_only=True),
        Rule("xynergy-resources-set", WORKLOADS, "low"),
        Rule("xynergy-secret-env", WORKLOADS, "high"),
        Rule("xynergy-gateway-cors", WORKLOADS, "high"),
        Rule("xynergy-oauth-scopes", ("OAuthConnection",), "high"),
    )
}


@dataclass(frozen=True)
class Finding:
    """One failed rule on one object."""

    rule: str
    severity: str
    kind: str
    namespace: str
    name: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "rule": self.rule,
            "object": {"kind": self.kind, "namespace": self.namespace, "name": self.name},
            "message": self.message,
        }


def _words(text: str) -> list[str]:
    """A list parameter as the policies split it: commas and spaces (newlines for scopes)."""
    return [w for w in text.replace(",", " ").replace("\n", " ").split(" ") if w]


@dataclass(frozen=True)
class Params:
    """The policies' parameters: the ConfigMap's data, parsed as the CEL expressions parse it."""

    allowed_registries: tuple[str, ...]
    allowed_scopes: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_data(cls, data: Mapping[str, str] | None) -> Params:
        data = data or {}
        registries = [
            r if r.endswith("/") else r + "/"
            for r in data.get("allowedRegistries", "").replace(",", " ").split(" ")
            if r
        ]
        scopes = {
            key.removeprefix("allowedScopes."): tuple(_words(value))
            for key, value in data.items()
            if key.startswith("allowedScopes.")
        }
        return cls(tuple(registries), scopes)


def _env(obj: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "XynergyService":
        return "spec.env", list(spec.get("env") or [])
    return "spec.template.env", list((spec.get("template") or {}).get("env") or [])


def _image(obj: Mapping[str, Any], params: Params) -> list[str]:
    image = (obj.get("spec") or {}).get("image")
    if image is None:
        return []
    out = []
    registries = params.allowed_registries
    if not any(image.startswith(r) for r in registries):
        out.append(
            f"spec.image {image} is not from an allowed registry; production images must come"
            f" from one of [{', '.join(registries)}] (ConfigMap {PARAMS_NAME}, key"
            " allowedRegistries)"
        )
    if not DIGEST.search(image):
        out.append(
            f"spec.image {image} is not pinned by digest; production images must end in"
            f" @sha256:<64 hex digits> (e.g. {image.split('@')[0]}@sha256:...)"
        )
    return out


def _sized(resources: Any) -> bool:
    return isinstance(resources, Mapping) and "cpu" in resources and "memory" in resources


def _resources(obj: Mapping[str, Any], _: Params) -> list[str]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "XynergyService" and not _sized(spec.get("resources")):
        return [
            "spec.resources.cpu and spec.resources.memory must both be set (they become the"
            " container's requests and memory limit); the profile's defaults are not accepted"
        ]
    template = spec.get("template") or {}
    if obj.get("kind") == "Rollout" and "resources" in template:
        return (
            []
            if _sized(template["resources"])
            else [
                "spec.template.resources must set both cpu and memory when it resizes the new"
                " revision"
            ]
        )
    return []


def _key_file(name: str, value: str) -> bool:
    """A `*_FILE` variable holding an absolute path: where a mounted Secret's key is, no key."""
    return name.upper().endswith("_FILE") and value.startswith("/")


def _secret_env(obj: Mapping[str, Any], _: Params) -> list[str]:
    field, env = _env(obj)
    literals = [
        e["name"]
        for e in env
        if e.get("value") and SECRET_NAME.search(e["name"]) and not _key_file(e["name"], e["value"])
    ]
    if not literals:
        return []
    return [
        f"{field} {', '.join(literals)} looks like a secret but has a literal value; put it in"
        " a Secret and use secretKeyRef {name, key} instead of value, or mount it"
        " (spec.volumes) and set a *_FILE variable to the absolute path of its file"
    ]


def _literals(env: list[dict[str, Any]], name: str) -> list[str]:
    """The literal values of ``name`` in ``env``, the name in any case (the gateway's settings
    read the environment case-insensitively)."""
    return [e["value"] for e in env if e.get("name", "").upper() == name and "value" in e]


def _cors(obj: Mapping[str, Any], __: Params) -> list[str]:
    _, env = _env(obj)
    out = []
    if any("*" in v or "\\" in v for v in _literals(env, CORS_VARIABLE)):
        out.append(
            f"{CORS_VARIABLE} must not contain '*' or '\\' (a JSON escape can spell '*'): list"
            ' the exact origins, e.g. ["https://app.xynergyos.com"] (a wildcard lets any website'
            " call the gateway)"
        )
    if any(not re.match(CORS_PATTERNS_SHAPE, v) for v in _literals(env, CORS_PATTERNS_VARIABLE)):
        out.append(
            f"{CORS_PATTERNS_VARIABLE} must be a JSON list of patterns like"
            " [\"https://*.xynergyos.com\"], each '*.' and a domain of two labels or more (the"
            " gateway allows credentials: a pattern such as '*', '.*' or https://*.com lets any"
            " website call it)"
        )
    return out


def _scopes(obj: Mapping[str, Any], params: Params) -> list[str]:
    spec = obj.get("spec") or {}
    provider = spec.get("provider", "")
    allowed = params.allowed_scopes.get(provider, ())
    denied = [s for s in spec.get("scopes") or [] if s not in allowed]
    if not denied:
        return []
    return [
        f"spec.scopes {', '.join(denied)} not allowed for provider {provider}; allowed:"
        f" [{', '.join(allowed)}] (ConfigMap {PARAMS_NAME}, key allowedScopes.{provider})"
    ]


CHECKS = {
    "xynergy-image-provenance": _image,
    "xynergy-resources-set": _resources,
    "xynergy-secret-env": _secret_env,
    "xynergy-gateway-cors": _cors,
    "xynergy-oauth-scopes": _scopes,
}
NEEDS_PARAMS = ("xynergy-image-provenance", "xynergy-oauth-scopes")


def evaluate(obj: Mapping[str, Any], *, params: Params | None, production: bool) -> list[Finding]:
    """The findings of every rule on one object (``production``: its namespace is labelled
    xynergy.io/environment=production). ``params`` None: the ConfigMap is missing, and the
    rules that read it fail closed, as their bindings do (parameterNotFoundAction: Deny)."""
    kind, meta = obj.get("kind", ""), obj.get("metadata") or {}
    out = []
    for rule in RULES.values():
        if kind not in rule.kinds or (rule.production_only and not production):
            continue
        if params is None and rule.name in NEEDS_PARAMS:
            messages = [f"the parameters ConfigMap {PARAMS_NAME} is missing: the rule refuses"]
        else:
            messages = CHECKS[rule.name](obj, params or Params((), {}))
        out += [
            Finding(
                rule.name, rule.severity, kind, meta.get("namespace", ""), meta.get("name", ""), m
            )
            for m in messages
        ]
    return out


def report(
    objects: Iterable[Mapping[str, Any]],
    *,
    params: Params | None,
    production_namespaces: Iterable[str],
) -> list[Finding]:
    """The findings over many objects, most severe first, then by object and rule."""
    production = set(production_namespaces)
    findings = [
        f
        for obj in objects
        for f in evaluate(
            obj,
            params=params,
            production=(obj.get("metadata") or {}).get("namespace") in production,
        )
    ]
    return sorted(
        findings, key=lambda f: (SEVERITIES.index(f.severity), f.namespace, f.kind, f.name, f.rule)
    )


def report_body(findings: list[Finding], *, params_source: str | None) -> dict[str, Any]:
    """The report as data (the API's answer and ``kubectl xynergy audit -o json``): where the
    parameters came from (None: missing), counts per severity, and the findings."""
    return {
        "params": params_source,
        "summary": {s: sum(f.severity == s for f in findings) for s in SEVERITIES},
        "findings": [f.as_dict() for f in findings],
    }
