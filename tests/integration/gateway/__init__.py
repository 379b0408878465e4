"""Integration tests of the Intelligence Gateway (a package, so its conftest has its own name)."""
