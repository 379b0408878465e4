"""Faithful fakes of cloud APIs we cannot reach from tests (one package each)."""
