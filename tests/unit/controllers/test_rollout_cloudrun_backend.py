"""The Rollout's Cloud Run backend (`CloudRunRollout.ensure_canary`) through the real Cloud Run
provider and client library against the in-process fake API: a revision whose rollout an
internal error interrupted (the operation failed half-way) is reported interrupted and
deployed again on the next call (no second revision); a revision that fails on its own
fails the canary."""

from __future__ import annotations

import pytest
from fakes.cloudrun import FakeCloudRun

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.retry import RetryPolicy
from controllers.providers.cloudrun import CloudRunProvider
from controllers.rollout.backends import CanaryState, CloudRunRollout
from controllers.xynergyservice.resources import cloudrun

pytestmark = pytest.mark.unit

PROJECT, REGION = "xynergy-test", "us-central1"
FAST = RetryPolicy(initial=0.01, maximum=0.05, deadline=5.0, max_attempts=3)
STABLE = "crm-00001"


def _svc(image: str) -> XynergyService:
    return XynergyService.model_validate(
        {
            "metadata": {"name": "crm", "namespace": "team-a", "generation": 1},
            "spec": {
                "image": f"us-docker.pkg.dev/xynergy-test/platform/crm:{image}",
                "backend": "cloudRun",
                "cloudRun": {"project": PROJECT, "region": REGION},
            },
        }
    )


async def _deployed(cloud_run: FakeCloudRun) -> tuple[CloudRunRollout, XynergyService]:
    """The target's service with its stable revision, and the Rollout backend over it."""
    provider = CloudRunProvider(
        api_endpoint=cloud_run.endpoint, retry=FAST, operation_timeout=5.0, poll_interval=0.02
    )
    target = _svc("1.0.0")
    await provider.apply(cloudrun.service_path(target), lambda found: cloudrun.plan(target, found))
    assert cloud_run.revisions_of(PROJECT, REGION, "crm") == [STABLE]
    return CloudRunRollout(provider), target


async def _ensure(backend: CloudRunRollout, target: XynergyService, name: str) -> CanaryState:
    return await backend.ensure_canary(
        target, _svc("2.0.0"), name=name, stable=STABLE, tag="canary"
    )


def _template_revision(cloud_run: FakeCloudRun) -> str:
    with cloud_run.state.lock:
        service = cloud_run.state.get_service(f"projects/{PROJECT}/locations/{REGION}/services/crm")
    return str(service.template.revision)


async def test_an_interrupted_canary_is_deployed_again_not_failed(cloud_run: FakeCloudRun) -> None:
    backend, target = await _deployed(cloud_run)
    name = backend.revision_name(_svc("2.0.0"))
    cloud_run.fail_operations_half_way(2, message="deploy interrupted")

    for _ in range(2):  # interrupted on creation, then on the first deployment again
        state = await _ensure(backend, target, name)
        assert state.interrupted == "deploy interrupted"
        assert state.failed is None
        assert not state.ready
        assert _template_revision(cloud_run) == STABLE, "the target's template is given back"

    state = await _ensure(backend, target, name)
    assert state.ready
    assert state.failed is None
    assert state.interrupted is None
    assert cloud_run.revisions_of(PROJECT, REGION, "crm") == [STABLE, name]
    assert _template_revision(cloud_run) == STABLE

    again = await _ensure(backend, target, name)
    assert again.ready
    assert again.writes == 0, "a ready revision is not deployed again"


async def test_a_revision_that_fails_on_its_own_fails_the_canary(cloud_run: FakeCloudRun) -> None:
    backend, target = await _deployed(cloud_run)
    name = backend.revision_name(_svc("2.0.0"))
    cloud_run.state.fail_next_rollouts("container failed to start")

    state = await _ensure(backend, target, name)
    assert state.failed == "container failed to start"
    assert state.interrupted is None
    assert cloud_run.revisions_of(PROJECT, REGION, "crm") == [STABLE, name]
    writes = (await _ensure(backend, target, name)).writes
    assert writes == 0, "a failed revision is not deployed again"
