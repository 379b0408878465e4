"""Image references follow the distribution/reference grammar in the models (the CRD's CEL rule
uses the same pattern; tests/integration/test_crds.py checks it on a real apiserver)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from apis.v1alpha1 import RolloutSpec, XynergyServiceSpec

DIGEST = "sha256:" + "0123456789abcdef" * 4
ROLLOUT = {"targetRef": {"name": "crm"}, "strategy": {"immediate": {}}}


def _xs(image: Any) -> XynergyServiceSpec:
    return XynergyServiceSpec.model_validate({"image": image})


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "nginx:latest",
        "localhost:5000/x",
        f"ghcr.io/acme/crm:1.2.3@{DIGEST}",
        f"nginx@{DIGEST}",
        "us-docker.pkg.dev/xynergy-demo/platform/crm-engine:1.4.2",
        "docker.io/library/nginx:1.27-alpine",
        "Registry.Example.COM/team/app:v1",
        "[::1]:5000/app:dev",
        "a__b/c.d/e-f--g:_tag.with-dots",
        "x:" + "t" * 128,
    ],
)
def test_valid_references_are_accepted(image: str) -> None:
    assert _xs(image).image == image
    assert RolloutSpec.model_validate({**ROLLOUT, "image": image}).image == image


@pytest.mark.parametrize(
    "image",
    [
        "::::@@@@",
        "Nginx",
        "acme/CRM:1",
        "nginx:",
        "nginx:-bad",
        ":tag",
        "/x",
        "x/",
        "a//b",
        "a..b",
        "a_-b",
        "-x",
        "nginx@sha256:abc",
        "nginx@sha256",
        "nginx@" + "0" * 64,
        "x:" + "t" * 129,
        "localhost:port/x",
        "nginx latest",
        "nginx\n",
        "ghcr.io/acme/crm:1@sha256:zz" + "0" * 62,
    ],
)
def test_invalid_references_are_rejected_saying_what_was_expected(image: str) -> None:
    with pytest.raises(ValidationError) as err:
        _xs(image)
    assert err.value.errors()[0]["loc"] == ("image",)
    assert "[registry[:port]/]path[:tag][@digest]" in str(err.value)
    with pytest.raises(ValidationError) as err:
        RolloutSpec.model_validate({**ROLLOUT, "image": image})
    assert err.value.errors()[0]["loc"] == ("image",)


component = st.from_regex(r"[a-z0-9]{1,5}([._-][a-z0-9]{1,5}){0,2}", fullmatch=True)
host = st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}(:[0-9]{1,5})?", fullmatch=True)
tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
hexes = st.text(alphabet="0123456789abcdef", min_size=32, max_size=64)


@given(
    host=st.none() | host,
    path=st.lists(component, min_size=1, max_size=4),
    tag=st.none() | tag,
    digest=st.none() | hexes,
)
def test_references_built_from_the_grammar_are_accepted(
    host: str | None, path: list[str], tag: str | None, digest: str | None
) -> None:
    image = "/".join(path)
    if host:
        image = f"{host}/{image}"
    if tag:
        image += f":{tag}"
    if digest:
        image += f"@sha256:{digest}"
    assert _xs(image).image == image


@given(path=st.lists(component, min_size=1, max_size=3), position=st.integers(0, 100))
def test_an_uppercase_letter_in_the_last_component_is_rejected(
    path: list[str], position: int
) -> None:
    """(The first of several components may be a registry host, where capitals are allowed.)"""
    last = path[-1] if any(c.isalpha() for c in path[-1]) else f"a{path[-1]}"
    at = [i for i, c in enumerate(last) if c.isalpha()][position % sum(map(str.isalpha, last))]
    image = "/".join([*path[:-1], last[:at] + last[at].upper() + last[at + 1 :]])
    with pytest.raises(ValidationError, match="lowercase path"):
        _xs(image)
