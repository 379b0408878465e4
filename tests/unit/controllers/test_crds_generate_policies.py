"""`xynergy crds generate` copies manifests/policies (the one source) into the chart's
files/policies, and `--check` fails on a copy that drifted or one without a source. Run on a
scratch checkout holding only what the generator reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from controllers import cli

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[3]
CHART_POLICIES = Path("charts/xynergy/files/policies")


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for folder in ("manifests/samples", "manifests/policies"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.setattr(cli, "repo_root", lambda: tmp_path)
    return tmp_path


def _generate(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(cli.main, ["crds", "generate", *args])
    return out.exit_code, out.output


def test_generate_copies_the_policies_and_check_catches_drift(checkout: Path) -> None:
    assert _generate()[0] == 0
    source = checkout / "manifests" / "policies"
    copies = checkout / CHART_POLICIES
    policies = sorted(p.name for p in source.glob("*.yaml") if p.name != "kustomization.yaml")
    assert "params.yaml" in policies
    assert sorted(p.name for p in copies.glob("*.yaml")) == policies
    for name in policies:
        assert (copies / name).read_text() == (source / name).read_text(), name
    assert _generate("--check")[0] == 0

    edited = source / policies[0]
    edited.write_text(edited.read_text() + "# changed\n")
    (copies / "retired.yaml").write_text("kind: ValidatingAdmissionPolicy\n")
    code, output = _generate("--check")
    assert code == 1
    assert str(CHART_POLICIES / policies[0]) in output
    assert str(CHART_POLICIES / "retired.yaml") in output

    assert _generate()[0] == 0
    assert (copies / policies[0]).read_text() == edited.read_text()
    assert not (copies / "retired.yaml").exists()
    assert _generate("--check")[0] == 0
