"""The provider's subset check: quantities by value only where Kubernetes keeps quantities."""

from __future__ import annotations

import pytest

from controllers.providers.kubediff import is_quantity_path, is_subset


@pytest.mark.parametrize(
    ("want", "have"), [("2000m", "2"), ("1Gi", "1073741824"), ("512Mi", "0.5Gi"), (1, "1000m")]
)
def test_resource_quantities_compare_by_value(want: str | int, have: str | int) -> None:
    desired = {"resources": {"requests": {"cpu": want}, "limits": {"memory": want}}}
    live = {"resources": {"requests": {"cpu": have}, "limits": {"memory": have}}}
    assert is_subset(desired, live)


@pytest.mark.parametrize(
    "path",
    [
        ("env", 0, "value"),
        ("metadata", "annotations", "limits"),
        ("requests", "cpu"),  # not under resources
        ("spec", "replicas"),
    ],
)
def test_other_scalars_compare_exactly(path: tuple[str | int, ...]) -> None:
    assert not is_quantity_path(path)
    assert not is_subset("1000", "1k", path)
    assert not is_subset(1, True, path)
    assert is_subset("1000", "1000", path)


def test_a_different_quantity_is_drift() -> None:
    desired = {"resources": {"limits": {"memory": "1Gi"}}}
    assert not is_subset(desired, {"resources": {"limits": {"memory": "2Gi"}}})
    assert not is_subset(desired, {"resources": {"limits": {}}})
