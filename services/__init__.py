"""Workloads the operator deploys: the Intelligence Gateway and the domain services."""
