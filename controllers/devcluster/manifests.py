"""Apply YAML manifests (CRDs, samples) to a cluster with server-side apply.

Used by `xynergy dev up` to install crds/ and by tests; lightkube does the apply and the wait.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lightkube import ApiError, Client, codecs
from lightkube.config.kubeconfig import KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Secret

__all__ = ["FIELD_MANAGER", "apply_files", "client_for", "create_secrets", "wait_established"]

FIELD_MANAGER = "xynergy-dev"


def client_for(kubeconfig: Path) -> Client:
    """A lightkube client for the kubeconfig file."""
    return Client(config=KubeConfig.from_file(str(kubeconfig)), field_manager=FIELD_MANAGER)


def apply_files(*, kubeconfig: Path, paths: Sequence[Path]) -> list[str]:
    """Server-side apply every object in the files; returns the names of applied CRDs."""
    client = client_for(kubeconfig)
    crds: list[str] = []
    for path in paths:
        with path.open() as fh:
            for obj in codecs.load_all_yaml(fh):
                client.apply(obj, force=True)
                if isinstance(obj, CustomResourceDefinition) and obj.metadata and obj.metadata.name:
                    crds.append(obj.metadata.name)
    return crds


def wait_established(*, kubeconfig: Path, names: Sequence[str]) -> None:
    """Block until every named CRD reports Established."""
    client = client_for(kubeconfig)
    for name in names:
        client.wait(CustomResourceDefinition, name, for_conditions=["Established"])


def create_secrets(
    *, kubeconfig: Path, namespace: str, secrets: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Create each Secret (name -> data) that does not exist yet; one that exists is left as it
    is (a user's own value wins). Returns the names created."""
    client = client_for(kubeconfig)
    created = []
    for name, data in secrets.items():
        secret = Secret(metadata=ObjectMeta(name=name, namespace=namespace), stringData=dict(data))
        try:
            client.create(secret)
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            continue
        created.append(name)
    return created
