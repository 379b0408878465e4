"""The `soak` marker's guard, shared by the reliability and security conftests.

pyproject's addopts deselect soak tests (`-m 'not soak'`), but any `-m` on the command line
replaces that expression: `make test-integration` (`-m integration`) would then run the long
forms too. Here soak tests are deselected unless the marker expression names `soak`.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.option.markexpr or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]
