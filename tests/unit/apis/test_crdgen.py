"""The generated CRDs: structural, described, pinned by the committed golden files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from apis.crdgen import render_all

CRDS = Path(__file__).parents[3] / "crds"
RENDERED = render_all()


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schema(text: str) -> dict[str, Any]:
    crd = yaml.safe_load(text)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("filename", sorted(RENDERED))
def test_golden_matches_committed_crd(filename: str) -> None:
    committed = CRDS / filename
    assert committed.exists(), f"{filename} missing: run `make manifests`"
    assert committed.read_text() == RENDERED[filename], "crds/ is stale: run `make manifests`"


@pytest.mark.parametrize("filename", sorted(RENDERED))
def test_schema_is_structural(filename: str) -> None:
    for path, node in _walk(_schema(RENDERED[filename])):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert all("type" in b and len(b) == 1 for b in node["anyOf"]), path
        else:
            assert "type" in node, f"{path} has no type"
        if node.get("type") == "null" or "nullable" in node:
            pytest.fail(f"{path}: null types are not structural")


@pytest.mark.parametrize("filename", sorted(RENDERED))
def test_every_spec_field_is_described(filename: str) -> None:
    schema = _schema(RENDERED[filename])
    for part in ("spec", "status"):
        for path, node in _walk(schema["properties"][part], part):
            if path.endswith(("[]", "{}")):
                continue  # list items and map values are described by their field
            assert node.get("description"), f"{path} has no description"


def test_scale_subresource_and_category() -> None:
    crd = yaml.safe_load(RENDERED["xynergyservices.xynergy.io.yaml"])
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    for text in RENDERED.values():
        doc = yaml.safe_load(text)
        assert "xynergy" in doc["spec"]["names"]["categories"]
        assert doc["spec"]["versions"][0]["subresources"]["status"] == {}


def test_keyed_lists_declare_their_keys() -> None:
    schema = _schema(RENDERED["xynergyservices.xynergy.io.yaml"])
    env = schema["properties"]["spec"]["properties"]["env"]
    assert env["x-kubernetes-list-type"] == "map"
    assert env["x-kubernetes-list-map-keys"] == ["name"]
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
