"""Pure builders of the Deployment and Service, checked with the provider's subset check that
avoids writes."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from apis.v1alpha1 import XynergyService
from controllers.providers.kubediff import is_subset
from controllers.xynergyservice.resources import (
    build_deployment,
    build_service,
    revision_name,
    service_url,
)


def _svc(**spec: Any) -> XynergyService:
    return XynergyService.model_validate(
        {
            "metadata": {"name": "crm", "namespace": "prod", "uid": "u-1", "generation": 3},
            "spec": {"image": "reg/crm:1", **spec},
        }
    )


def test_deployment_applies_profile_env_probe_and_owner() -> None:
    svc = _svc(
        profile="ai-intensive",
        env=[
            {"name": "A", "value": "1"},
            {"name": "B", "secretKeyRef": {"name": "db", "key": "password"}},
            {"name": "C", "configMapKeyRef": {"name": "cfg", "key": "level", "optional": True}},
        ],
        healthCheck={"path": "/ready", "periodSeconds": 5, "timeoutSeconds": 2},
        scaling={"minInstances": 2},
        kubernetes={"nodeSelector": {"pool": "gpu"}},
    )
    dep = build_deployment(svc)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/crm:1"
    assert container["resources"]["requests"] == {"cpu": "2000m", "memory": "4Gi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["A"]["value"] == "1"
    assert env["B"]["valueFrom"]["secretKeyRef"] == {
        "name": "db",
        "key": "password",
        "optional": False,
    }
    assert env["C"]["valueFrom"]["configMapKeyRef"]["optional"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("XynergyService", "u-1", True)
    assert dep["metadata"]["annotations"]["xynergy.io/revision"] == "crm-00003"
    assert revision_name(svc) == "crm-00003"


def test_service_and_url() -> None:
    svc = _svc(kubernetes={"serviceType": "NodePort"})
    service = build_service(svc)
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == {"xynergy.io/service": "crm"}
    assert service_url(svc) == "http://crm.prod.svc.cluster.local"


def test_replicas_follow_the_scale_subresource_within_bounds() -> None:
    assert build_deployment(_svc(replicas=7))["spec"]["replicas"] == 7
    assert build_deployment(_svc(replicas=0, scaling={"minInstances": 1}))["spec"]["replicas"] == 1


def _live(desired: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver returns: our fields plus defaults, quantities normalised."""
    live = copy.deepcopy(desired)
    live["metadata"]["resourceVersion"] = "42"
    live["metadata"]["labels"]["added-by-hand"] = "x"
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["resources"]["requests"]["cpu"] = "2"
    live["status"] = {"replicas": 1}
    return live


def test_subset_ignores_defaults_and_normalised_quantities() -> None:
    desired = build_deployment(_svc(profile="ai-intensive"))
    assert is_subset(desired, _live(desired))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replicas"), 5),
        (("spec", "template", "spec", "containers", 0, "image"), "reg/crm:hacked"),
        (("spec", "template", "spec", "containers", 0, "resources", "requests", "memory"), "1Gi"),
    ],
)
def test_subset_detects_drift(path: tuple[Any, ...], value: Any) -> None:
    desired = build_deployment(_svc(profile="ai-intensive"))
    live = _live(desired)
    node: Any = live
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert not is_subset(desired, live)


REVISION_FROM_POD: dict[str, Any] = {
    "name": "K_REVISION",
    "valueFrom": {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations['xynergy.io/revision']"}
    },
}
"""K_REVISION as the Kubernetes backend sets it: from the Pod's own annotation."""


def _env_of(dep: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def _field(pod: dict[str, Any], path: str) -> str | None:
    """What the kubelet puts in a downward-API variable: `metadata.annotations['k']` or
    `metadata.labels['k']` of the Pod (its template here), None when absent."""
    head, _, key = path.partition("['")
    assert head in ("metadata.annotations", "metadata.labels"), path
    assert key.endswith("']"), path
    return (pod["metadata"].get(head.partition(".")[2]) or {}).get(key[:-2])


def test_the_container_is_told_the_cloud_run_contract() -> None:
    """PORT, K_SERVICE, K_REVISION and K_CONFIGURATION as Cloud Run sets them, before spec.env
    (Kubernetes expands `$(VAR)` only for variables defined earlier in the list)."""
    dep = build_deployment(_svc(port=9000, env=[{"name": "A", "value": "1"}]))
    assert _env_of(dep) == [
        {"name": "PORT", "value": "9000"},
        {"name": "K_SERVICE", "value": "crm"},
        REVISION_FROM_POD,
        {"name": "K_CONFIGURATION", "value": "crm"},
        {"name": "A", "value": "1"},
    ]
    assert [e["name"] for e in _env_of(build_deployment(_svc()))] == [
        "PORT",
        "K_SERVICE",
        "K_REVISION",
        "K_CONFIGURATION",
    ]


def test_k_revision_is_the_revision_the_deployment_reports() -> None:
    """The Pods' K_REVISION resolves to the Deployment's revision (status.latestCreatedRevision),
    also when a scale keeps the live one; the name is outside the digested Pod spec, so it
    does not make the Pod spec a new revision (no circularity)."""
    from controllers.xynergyservice.resources.kubernetes import pod_spec_digest, revision_of

    dep = build_deployment(_svc())
    template = dep["spec"]["template"]
    path = REVISION_FROM_POD["valueFrom"]["fieldRef"]["fieldPath"]
    assert _field(template, path) == dep["metadata"]["annotations"]["xynergy.io/revision"]
    assert _field(template, path) == "crm-00003"
    scaled = _svc(replicas=4)
    scaled.metadata.generation = 4
    kept = build_deployment(scaled, revision=revision_of(scaled, _live(dep)))
    assert _field(kept["spec"]["template"], path) == "crm-00003"
    assert kept["spec"]["template"] == template  # the Pods are not rolled by a scale
    renamed = build_deployment(_svc(), revision="crm-00009")
    assert pod_spec_digest(renamed["spec"]["template"]["spec"]) == pod_spec_digest(template["spec"])


def test_the_users_own_contract_variables_win() -> None:
    """As for PORT before: a variable spec.env sets is the user's (an object that set
    K_SERVICE by hand before the operator did keeps it), the others are still added."""
    svc = _svc(
        port=9000,
        env=[
            {"name": "PORT", "value": "7000"},
            {"name": "K_SERVICE", "value": "crm-legacy"},
            {"name": "K_REVISION", "secretKeyRef": {"name": "build", "key": "revision"}},
        ],
    )
    env = _env_of(build_deployment(svc))
    # ours first (only the one spec.env leaves), then spec.env as written: no name twice
    assert [e["name"] for e in env] == ["K_CONFIGURATION", "PORT", "K_SERVICE", "K_REVISION"]
    assert env[0] == {"name": "K_CONFIGURATION", "value": "crm"}
    assert env[1:3] == [
        {"name": "PORT", "value": "7000"},
        {"name": "K_SERVICE", "value": "crm-legacy"},
    ]
    assert env[3]["valueFrom"] == {
        "secretKeyRef": {"name": "build", "key": "revision", "optional": False}
    }


def _expand(template: dict[str, Any]) -> dict[str, str]:
    """Each variable's value as the kubelet makes it: a `$(VAR)` reference is replaced only
    when VAR is defined earlier in the list (`$$` is a literal `$`), else kept as written;
    a downward-API entry reads the Pod's (the template's) metadata."""
    seen: dict[str, str] = {}
    for entry in template["spec"]["containers"][0]["env"]:
        if "value" not in entry:
            seen[entry["name"]] = str(_field(template, entry["valueFrom"]["fieldRef"]["fieldPath"]))
            continue
        seen[entry["name"]] = re.sub(
            r"\$\$|\$\(([A-Za-z_][-._A-Za-z0-9]*)\)",
            lambda m: "$" if m[0] == "$$" else seen.get(m[1], m[0]),
            entry["value"],
        )
    return seen


def test_a_users_variable_can_read_the_contract_variables() -> None:
    """`$(K_SERVICE)` and the others resolve in spec.env (they come first); a user's own
    variable read by a later one of spec.env still resolves (spec.env keeps its order)."""
    svc = _svc(
        env=[
            {"name": "SELF", "value": "http://$(K_SERVICE).prod:$(PORT)"},
            {"name": "BUILD", "value": "$(K_CONFIGURATION)/$(K_REVISION)"},
            {"name": "K_SERVICE", "value": "crm-$(ZONE)"},  # ZONE comes later: kept as written
            {"name": "ZONE", "value": "eu"},
            {"name": "WHERE", "value": "$(ZONE)/$(K_SERVICE)/$$(PORT)"},
        ]
    )
    got = _expand(build_deployment(svc)["spec"]["template"])
    assert got["SELF"] == "http://$(K_SERVICE).prod:8080"  # the user's K_SERVICE is after it
    assert got["BUILD"] == "crm/crm-00003"
    assert got["K_SERVICE"] == "crm-$(ZONE)"
    assert got["WHERE"] == "eu/crm-$(ZONE)/$(PORT)"
    plain = _svc(env=[{"name": "SELF", "value": "http://$(K_SERVICE).prod:$(PORT)"}])
    assert _expand(build_deployment(plain)["spec"]["template"])["SELF"] == "http://crm.prod:8080"


def test_moving_the_contract_first_keeps_the_revision() -> None:
    """A Deployment the operator wrote with the contract after spec.env (its order before)
    is written once (the Pods roll), but under the revision name it had: where the operator
    puts its own variables is not a new revision (no Updated event, a Kubernetes Rollout in
    flight keeps its `-ro-<digest>` revision)."""
    from controllers.rollout.resources import revision_digest
    from controllers.xynergyservice.resources.kubernetes import pod_spec_digest, revision_of

    svc = _svc(port=9000, env=[{"name": "A", "value": "1"}])
    desired = build_deployment(svc)
    old = copy.deepcopy(desired)
    old_pod = old["spec"]["template"]["spec"]
    old_pod["containers"][0]["env"] = [  # as the operator before this change built it
        {"name": "A", "value": "1"},
        {"name": "PORT", "value": "9000"},
        {"name": "K_SERVICE", "value": "crm"},
        REVISION_FROM_POD,
        {"name": "K_CONFIGURATION", "value": "crm"},
    ]
    old["metadata"]["annotations"]["xynergy.io/template"] = pod_spec_digest(old_pod)
    old["metadata"]["annotations"]["xynergy.io/revision"] = "crm-00002"
    live = _live(old)
    assert not is_subset(desired, live)  # written once: the new order reaches the Pods
    assert revision_of(svc, live) == "crm-00002"
    assert revision_digest(svc) == pod_spec_digest(old_pod)[:8]
    # a real change still is a new revision
    changed = _svc(port=9000, env=[{"name": "A", "value": "2"}])
    assert revision_of(changed, live) is None


def test_subset_detects_removed_env() -> None:
    desired = build_deployment(_svc(env=[{"name": "A", "value": "1"}]))
    live = _live(desired)
    del live["spec"]["template"]["spec"]["containers"][0]["env"]
    assert not is_subset(desired, live)


def test_progress_deadline_is_set_on_the_deployment() -> None:
    assert build_deployment(_svc())["spec"]["progressDeadlineSeconds"] == 600
    dep = build_deployment(_svc(), progress_deadline_seconds=30)
    assert dep["spec"]["progressDeadlineSeconds"] == 30


@pytest.mark.parametrize(("want", "hand_edit"), [("1000", "1k"), ("0.5", "500m"), ("1", "1.0")])
def test_subset_sees_a_hand_edited_env_value(want: str, hand_edit: str) -> None:
    """Issue 11: env values are strings; "1000" and "1k" are different values of a variable
    (they used to compare as equal quantities, so the hand edit was never taken back)."""
    desired = build_deployment(_svc(env=[{"name": "LIMIT", "value": want}]))
    live = _live(desired)
    live["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = hand_edit
    assert not is_subset(desired, live)


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What PodSecurity `restricted` refuses in a Pod spec (its checks that a Deployment of
    ours can fail: the others concern fields we never set, e.g. hostPath or hostPorts)."""
    pod_sc = pod.get("securityContext") or {}
    out = []
    for c in pod["containers"]:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation != false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {
            "NET_BIND_SERVICE"
        }:
            out.append(f"{c['name']}: capabilities not dropped")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            out.append(f"{c['name']}: runAsNonRoot != true")
        if 0 in (sc.get("runAsUser"), pod_sc.get("runAsUser")):
            out.append(f"{c['name']}: runAsUser=0")
        profile = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if profile not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile")
    return out


def test_the_pods_meet_pod_security_restricted_unless_baseline_is_asked_for() -> None:
    """A namespace enforcing `restricted` (GKE Autopilot, hardened clusters) admits the Pods;
    `podSecurity: baseline` (an image that must run as root) sets no security settings."""
    pod = build_deployment(_svc())["spec"]["template"]["spec"]
    assert _restricted_violations(pod) == []
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    restricted = _svc(kubernetes={"podSecurity": "restricted", "serviceType": "NodePort"})
    assert (
        build_deployment(restricted)["spec"]["template"]["spec"]["securityContext"]
        == (pod["securityContext"])
    )
    baseline = build_deployment(_svc(kubernetes={"podSecurity": "baseline"}))
    root_pod = baseline["spec"]["template"]["spec"]
    assert "securityContext" not in root_pod
    assert "securityContext" not in root_pod["containers"][0]
    assert "app: runAsNonRoot != true" in _restricted_violations(root_pod)


def test_pod_security_refuses_a_level_it_does_not_know() -> None:
    from pydantic import ValidationError

    from controllers.core.status import spec_error

    with pytest.raises(ValidationError) as err:
        _svc(kubernetes={"podSecurity": "privileged"})
    assert spec_error(err.value) == (
        "spec.kubernetes.podSecurity: Input should be 'restricted' or 'baseline'"
    )


def test_a_stopping_pod_sleeps_before_its_sigterm_within_its_grace_period() -> None:
    """The Pod leaves the Service's endpoints asynchronously: it keeps serving for the preStop
    sleep, then has the rest of the grace period to shut down (both backends' settings)."""
    from controllers.xynergyservice.resources.kubernetes import (
        PRE_STOP_SLEEP_SECONDS,
        TERMINATION_GRACE_PERIOD_SECONDS,
    )

    for svc in (_svc(), _svc(kubernetes={"podSecurity": "baseline"})):
        pod = build_deployment(svc)["spec"]["template"]["spec"]
        lifecycle = pod["containers"][0]["lifecycle"]
        assert lifecycle == {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}}
        assert pod["terminationGracePeriodSeconds"] == TERMINATION_GRACE_PERIOD_SECONDS
    assert PRE_STOP_SLEEP_SECONDS == 5
    assert TERMINATION_GRACE_PERIOD_SECONDS - PRE_STOP_SLEEP_SECONDS == 30


@pytest.mark.parametrize("seconds", [6, 35, 125, 3605])
def test_the_grace_period_is_the_one_asked_for_with_the_pre_stop_sleep_kept(seconds: int) -> None:
    """spec.kubernetes.terminationGracePeriodSeconds gives long requests time after SIGTERM;
    the preStop sleep stays, and a new grace period is a new revision."""
    from controllers.xynergyservice.resources.kubernetes import pod_spec_digest

    svc = _svc(kubernetes={"terminationGracePeriodSeconds": seconds})
    pod = build_deployment(svc)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == seconds
    assert pod["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    default = build_deployment(_svc(kubernetes={"podSecurity": "restricted"}))
    same = pod_spec_digest(default["spec"]["template"]["spec"]) == pod_spec_digest(pod)
    assert same is (seconds == 35)


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (5, "must be more than 5: the grace period counts from the start of the Pods' 5 s preStop"),
        (0, "must be more than 5: the grace period counts from the start of the Pods' 5 s preStop"),
        (-1, "must be more than 5"),
        (3606, "Input should be less than or equal to 3605"),
    ],
)
def test_a_grace_period_not_longer_than_the_pre_stop_sleep_is_refused(
    seconds: int, message: str
) -> None:
    from pydantic import ValidationError

    from controllers.core.status import spec_error

    with pytest.raises(ValidationError) as err:
        _svc(kubernetes={"terminationGracePeriodSeconds": seconds})
    error = spec_error(err.value)
    assert error.startswith("spec.kubernetes.terminationGracePeriodSeconds: "), error
    assert message in error


def test_a_deployment_from_before_the_pod_security_settings_rolls_as_a_new_revision() -> None:
    """Upgrading the operator adds the settings to a live Deployment: it is written once, and
    its Pod-spec digest differs, so it is a new revision, not a rescale of the live one."""
    from controllers.xynergyservice.resources.kubernetes import pod_spec_digest, revision_of

    desired = build_deployment(_svc())
    old = copy.deepcopy(desired)
    old_pod = old["spec"]["template"]["spec"]
    del old_pod["securityContext"], old_pod["terminationGracePeriodSeconds"]
    del old_pod["containers"][0]["securityContext"], old_pod["containers"][0]["lifecycle"]
    old["metadata"]["annotations"]["xynergy.io/template"] = pod_spec_digest(old_pod)
    old["metadata"]["annotations"]["xynergy.io/revision"] = "crm-00002"
    live = _live(old)
    assert not is_subset(desired, live)
    assert revision_of(_svc(), live) is None
    assert revision_of(_svc(), _live(desired)) == "crm-00003"
