"""The operator image, built without a daemon (hack/image/build.sh: mmdebstrap base + pip
wheels, assembled by umoci), unpacked and run with chroot as its non-root user.

A cold build takes minutes (the Debian rootfs: 4-8 min on 2 shared cores), so this runs under
`make soak` only, and only where mmdebstrap, umoci and root (for chroot) are available
(`bash hack/deps/image-tools.sh` installs the tools).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TAG = "operator-test"

pytestmark = [
    pytest.mark.soak,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        not (shutil.which("mmdebstrap") and shutil.which("umoci") and os.geteuid() == 0),
        reason="needs mmdebstrap, umoci (hack/deps/image-tools.sh) and root for chroot",
    ),
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image built by hack/image/build.sh, unpacked into an OCI runtime bundle."""
    out = ROOT / ".cache" / "image"  # the base rootfs stays cached there between runs
    env = {**os.environ, "OUT": str(out), "TAG": TAG}
    done = subprocess.run(
        ["bash", str(ROOT / "hack" / "image" / "build.sh")],
        env=env, capture_output=True, text=True, timeout=1700, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    target = tmp_path_factory.mktemp("bundle") / "b"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{out / 'oci'}:{TAG}", str(target)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


def run_in(bundle: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run as the image's config says: its user, its environment, its working directory."""
    process = json.loads((bundle / "config.json").read_text())["process"]
    user = f"{process['user']['uid']}:{process['user']['gid']}"
    return subprocess.run(
        ["chroot", f"--userspec={user}", str(bundle / "rootfs"),
         "/usr/bin/env", "-i", *process["env"], *argv],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_image_config(bundle: Path) -> None:
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["user"]["uid"] == 65532, "the image runs as non-root"
    assert config["process"]["args"] == ["python3", "-m", "controllers"]
    assert not (bundle / "rootfs" / "usr" / "bin" / "apt-get").exists(), "no package manager"
    assert not (bundle / "rootfs" / "usr" / "bin" / "gcc").exists()


def test_operator_loads_every_kind_in_the_image(bundle: Path) -> None:
    """The operator's entry module and all four kinds' handlers import in the image (numpy,
    scipy, scikit-learn, kopf, lightkube, Google clients on Debian's Python)."""
    code = (
        "import controllers.__main__, kopf; from controllers.runtime import load_handlers; "
        "load_handlers(); print(sorted({h.id.split('/')[0] for h in "
        "kopf.get_default_registry()._watching.get_all_handlers()}) and 'loaded')"
    )
    done = run_in(bundle, "python", "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "loaded"


def test_cli_help_in_the_image(bundle: Path) -> None:
    done = run_in(bundle, "python", "-c", "from controllers.cli import main; main()", "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "crds" in done.stdout
    assert "dev" in done.stdout


def test_operator_starts_and_asks_for_a_cluster(bundle: Path) -> None:
    """`python3 -m controllers`, the image's entrypoint, boots kopf and runs its startup, which
    then fails (and is retried) only because a bare chroot has no cluster to talk to."""
    process = json.loads((bundle / "config.json").read_text())["process"]
    user = f"{process['user']['uid']}:{process['user']['gid']}"
    proc = subprocess.Popen(
        ["chroot", f"--userspec={user}", str(bundle / "rootfs"),
         "/usr/bin/env", "-i", *process["env"], *process["args"]],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # until the startup activity reports its first failure
            seen.append(line)
            if "Activity '_startup' failed" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    log = "".join(seen)
    assert "Activity '_startup' failed" in log, log[-3000:]
    assert "ModuleNotFoundError" not in log
