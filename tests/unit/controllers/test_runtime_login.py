"""The operator's login handler: credentials come from the environment at login time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import kopf
import pytest
import yaml

import controllers.runtime as runtime

pytestmark = pytest.mark.unit

# kopf.on.login() types the handler as kopf's ActivityFn (every kwarg required, returns
# object); the function itself takes **kwargs and returns a ConnectionInfo or None.
login = cast("Callable[..., kopf.ConnectionInfo | None]", runtime._login)


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [{"name": "k", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
            }
        )
    )
    return path


def test_kubeconfig_set_after_import_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kopf (and this module) are already imported here, with whatever KUBECONFIG was then
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "a", "https://a.example:6443")))
    info = login(settings=kopf.OperatorSettings())
    assert info is not None
    assert info.server == "https://a.example:6443"
    assert info.token == "t0ken"

    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "b", "https://b.example:6443")))
    info = login(settings=kopf.OperatorSettings())
    assert info is not None
    assert info.server == "https://b.example:6443"


def test_no_kubeconfig_and_no_service_account_gives_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        pytest.skip("runs inside a pod")
    assert login(settings=kopf.OperatorSettings()) is None


def test_the_operator_registers_its_own_login_handler() -> None:
    # a non-fallback login handler turns kopf's import-time fallbacks off
    logins = [
        h
        for h in kopf.get_default_registry()._activities.get_all_handlers()
        if getattr(h.activity, "value", None) == "authentication"
    ]
    assert [h.fn for h in logins if not h._fallback] == [runtime._login]
