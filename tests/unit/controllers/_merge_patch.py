"""RFC 7386 JSON merge patch as the apiserver applies it, for the unit tests' fake clients
(a status writer's patch, a target patch): a null removes the key, an object merges into the
stored one (a key it does not name is kept), anything else replaces."""

from __future__ import annotations

import copy
from typing import Any


def apply_merge_patch(stored: Any, patch: Any) -> Any:
    """`stored` with `patch` applied (a new object; `stored` is not changed)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(stored) if isinstance(stored, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out
