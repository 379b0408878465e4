"""The core's trigger-annotation hook (a kind declares annotation keys whose change converges
the object: annotations do not move the generation), which the Rollout's action annotation
uses instead of a handler of its own."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from test_core import FakeClient, FakeReconciler, _body, _controller

from controllers.core.controller import RESYNC_ANNOTATION
from controllers.rollout.reconciler import ACTION_ANNOTATION, RolloutReconciler


@dataclass
class AnnotatedReconciler(FakeReconciler):
    trigger_annotations = frozenset({"example.io/action"})


def annotated(value: str | None, *, observed: int = 3) -> dict[str, Any]:
    body = _body(status={"observedGeneration": observed})
    if value is not None:
        body["metadata"]["annotations"] = {"example.io/action": value, "other": "x"}
    return body


async def test_a_declared_annotation_change_converges_once() -> None:
    reconciler = AnnotatedReconciler()
    controller = _controller(FakeClient({"crm": _body()}), reconciler)
    await controller.on_event(annotated(None), None)  # the listing: converges, records
    assert len(reconciler.calls) == 1
    await controller.on_event(annotated("promote/1"), "MODIFIED")  # generation unchanged
    assert len(reconciler.calls) == 2
    await controller.on_event(annotated("promote/1"), "MODIFIED")  # our own status write
    assert len(reconciler.calls) == 2
    await controller.on_event(annotated("abort/2"), "MODIFIED")
    assert len(reconciler.calls) == 3
    other = copy.deepcopy(annotated("abort/2"))
    other["metadata"]["annotations"]["other"] = "y"  # not a trigger annotation
    await controller.on_event(other, "MODIFIED")
    assert len(reconciler.calls) == 3


async def test_kinds_without_trigger_annotations_ignore_annotation_changes() -> None:
    reconciler = FakeReconciler()
    controller = _controller(FakeClient({"crm": _body()}), reconciler)
    await controller.on_event(annotated(None), None)
    await controller.on_event(annotated("promote/1"), "MODIFIED")
    assert len(reconciler.calls) == 1


async def test_every_kind_converges_when_a_resync_is_requested() -> None:
    reconciler = FakeReconciler()  # declares no trigger annotations of its own
    controller = _controller(FakeClient({"crm": _body()}), reconciler)
    body = _body(status={"observedGeneration": 3})
    await controller.on_event(body, None)
    asked = copy.deepcopy(body)
    asked["metadata"]["annotations"] = {RESYNC_ANNOTATION: "2026-12-01T16:00:00Z"}
    await controller.on_event(asked, "MODIFIED")
    await controller.on_event(asked, "MODIFIED")  # the same request again: nothing new
    assert len(reconciler.calls) == 2


async def test_a_forgotten_object_starts_afresh() -> None:
    reconciler = AnnotatedReconciler()
    controller = _controller(FakeClient({"crm": _body()}), reconciler)
    await controller.on_event(annotated("promote/1"), "ADDED")
    await controller.on_event(annotated("promote/1"), "DELETED")
    assert controller._annotations == {}


def test_the_rollout_declares_its_action_annotation() -> None:
    assert RolloutReconciler.trigger_annotations == {ACTION_ANNOTATION}
