"""The operator's RBAC, written once: the API calls the controllers and kopf make, as rules.

Both packagings render from here (`xynergy crds generate` writes them, `make verify` checks
them): the helm chart reads `charts/xynergy/files/rules-*.yaml`, kustomize takes
`manifests/base/rbac.yaml`. kopf's peering CRDs (for `XYNERGY_PEERING`, two replicas with one
active) are generated here too, for the chart's `crds/` and the kustomize base.

Rules come in two scopes: NAMESPACED rules are bound cluster-wide (ClusterRoleBinding) or, when
the operator watches one namespace, only there (RoleBinding); CLUSTER rules are cluster-scoped
resources and always bound cluster-wide. tests/integration/test_rbac_audit.py runs every kind
under these rules and checks each audited call is allowed and nothing else is granted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CLUSTER_RULES",
    "NAMESPACED_RULES",
    "Rule",
    "generated_files",
    "peering_crds",
    "rules_yaml",
]


@dataclass(frozen=True)
class Rule:
    """One PolicyRule and why the operator needs it."""

    groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiGroups": list(self.groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


_KINDS = ("xynergyservices", "scalingpolicies", "rollouts", "oauthconnections")

NAMESPACED_RULES: tuple[Rule, ...] = (
    Rule(
        ("xynergy.io",),
        _KINDS,
        ("get", "list", "watch", "patch"),
        "watch every kind; read before converging; kopf patches finalizers; Rollout patches "
        "its target's image",
    ),
    Rule(("xynergy.io",), tuple(f"{k}/status" for k in _KINDS), ("patch",), "status writer"),
    Rule(
        ("xynergy.io",), ("xynergyservices/scale",), ("patch",), "ScalingPolicy scales its target"
    ),
    Rule(
        ("autoscaling",),
        ("horizontalpodautoscalers",),
        ("list", "watch"),
        "ScalingPolicy finds HPAs that would fight it",
    ),
    Rule(
        ("apps",),
        ("deployments",),
        ("get", "list", "watch", "create", "patch", "delete"),
        "XynergyService children (server-side apply creates them)",
    ),
    Rule(
        ("",),
        ("services",),
        ("get", "list", "watch", "create", "patch", "delete"),
        "XynergyService children (server-side apply creates them)",
    ),
    Rule(("",), ("pods",), ("list",), "XynergyService explains a stuck rollout"),
    Rule(
        ("",),
        ("configmaps",),
        ("get", "list", "watch", "patch"),
        "XynergyService reads env references, labels them and watches the labelled ones",
    ),
    Rule(
        ("",),
        ("secrets",),
        ("get", "list", "watch", "create", "update", "patch", "delete"),
        "env references; OAuthConnection owns its token Secret and watches labelled ones",
    ),
    Rule(("",), ("events",), ("create",), "Events about our objects"),
    Rule(
        ("kopf.dev",),
        ("kopfpeerings",),
        ("list", "watch", "patch"),
        "kopf peering when watching one namespace",
    ),
)

CLUSTER_RULES: tuple[Rule, ...] = (
    Rule(
        ("apiextensions.k8s.io",),
        ("customresourcedefinitions",),
        ("list", "watch"),
        "kopf notices CRDs installed after it started",
    ),
    Rule(
        ("kopf.dev",),
        ("clusterkopfpeerings",),
        ("list", "watch", "patch"),
        "kopf peering (one active replica) when watching the whole cluster",
    ),
)


def rules_yaml(rules: tuple[Rule, ...]) -> str:
    """A YAML list of PolicyRules, each preceded by a comment saying why."""
    out = []
    for rule in rules:
        out.append(f"# {rule.why}\n")
        out.append(yaml.safe_dump([rule.as_dict()], default_flow_style=None, sort_keys=False))
    return "".join(out)


def _peering_crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": plural[:-1]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def peering_crds() -> str:
    """kopf's peering CRDs (as kopf's docs give them): where replicas see each other."""
    docs = [
        _peering_crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        _peering_crd("KopfPeering", "kopfpeerings", "Namespaced"),
    ]
    return "# GENERATED by `xynergy crds generate` from controllers/rbac.py\n" + "---\n".join(
        yaml.safe_dump(d, sort_keys=False) for d in docs
    )


def _kustomize_rbac(name: str = "xynergy-operator", namespace: str = "xynergy-system") -> str:
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
    ]
    for suffix, rules in (("", NAMESPACED_RULES), ("-cluster", CLUSTER_RULES)):
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole"}
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name + suffix},
                "rules": [r.as_dict() for r in rules],
            }
        )
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name + suffix},
                "roleRef": {**ref, "name": name + suffix},
                "subjects": [subject],
            }
        )
    head = "# GENERATED by `xynergy crds generate` from controllers/rbac.py; do not edit.\n"
    return head + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def generated_files(root: Path) -> dict[Path, str]:
    """Every file this module generates, by path under the repository `root`."""
    head = "# GENERATED by `xynergy crds generate` from controllers/rbac.py; do not edit.\n"
    chart = root / "charts" / "xynergy"
    return {
        chart / "files" / "rules-namespaced.yaml": head + rules_yaml(NAMESPACED_RULES),
        chart / "files" / "rules-cluster.yaml": head + rules_yaml(CLUSTER_RULES),
        chart / "crds" / "kopf-peerings.kopf.dev.yaml": peering_crds(),
        root / "manifests" / "base" / "crds" / "kopf-peerings.kopf.dev.yaml": peering_crds(),
        root / "manifests" / "base" / "rbac.yaml": _kustomize_rbac(),
    }
