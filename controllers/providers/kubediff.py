"""Does a live Kubernetes object already have every field we manage? (pure)

`is_subset(desired, live)` decides whether a server-side apply would change anything, so an
unchanged object causes no write. Scalars compare exactly, except at the paths that hold
resource quantities (`resources.requests.*`, `resources.limits.*`), which compare by value
through `apis.quantity` (the apiserver stores `1000m` as `1`). An env value `"1000"` and a
hand-edited `"1k"` are different strings, so the edit is taken back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apis.quantity import same_quantity

__all__ = ["is_quantity_path", "is_subset"]

_QUANTITY_MAPS = frozenset({"requests", "limits"})


def is_quantity_path(path: Sequence[str | int]) -> bool:
    """True for `...resources.requests.<name>` and `...resources.limits.<name>`."""
    return len(path) >= 3 and path[-3] == "resources" and path[-2] in _QUANTITY_MAPS


def is_subset(want: Any, have: Any, path: tuple[str | int, ...] = ()) -> bool:
    """True when every field in `want` is present and equal in `have`.

    Dicts compare key by key; lists element by element (same length); scalars exactly, or by
    quantity value at quantity paths.
    """
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(k in have and is_subset(v, have[k], (*path, k)) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(
            is_subset(w, h, (*path, i)) for i, (w, h) in enumerate(zip(want, have, strict=True))
        )
    if want == have and isinstance(want, bool) == isinstance(have, bool):
        return True
    if is_quantity_path(path) and isinstance(want, (str, int)) and isinstance(have, (str, int)):
        return same_quantity(want, have)
    return False
