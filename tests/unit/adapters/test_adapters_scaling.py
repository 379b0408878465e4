"""The ScalingPolicy mapping lives in the pure ``adapters`` package, shared by the operator and
the services: importing it loads no controller, service or I/O client, and the operator's old
import path is the same function."""

from __future__ import annotations

import subprocess
import sys


def test_the_operator_path_re_exports_the_adapter() -> None:
    import adapters.scaling
    import controllers.scalingpolicy.params

    assert controllers.scalingpolicy.params.scaling_params is adapters.scaling.scaling_params
    assert controllers.scalingpolicy.params.instance_bounds is adapters.scaling.instance_bounds


def test_importing_the_adapter_loads_no_operator_service_or_client() -> None:
    code = (
        "import sys, adapters.scaling; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'controllers', 'services', 'kopf', 'lightkube', 'httpx', 'fastapi', 'redis'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
