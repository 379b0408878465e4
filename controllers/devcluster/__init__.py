"""Start and stop a local Kubernetes control plane built from upstream sources (no Docker).

`ensure_binaries()` builds or reuses etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok and helm; `DevCluster` runs them with generated certificates and fake kwok
Nodes so Pods become Running and Deployments Available.
"""

from controllers.devcluster.binaries import BINARIES, BuildError, ensure_binaries, repo_root
from controllers.devcluster.cluster import ClusterError, ClusterState, DevCluster

__all__ = [
    "BINARIES",
    "BuildError",
    "ClusterError",
    "ClusterState",
    "DevCluster",
    "ensure_binaries",
    "repo_root",
]
