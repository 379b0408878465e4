"""Session-wide emulators shared by every test package (registered from conftest.py's
`pytest_plugins`). A session fixture re-exported from one package's conftest into another is
a second fixture with a second instance; defined here once, it is started once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gateway.conftest import FirebaseEmulator, start_firebase_emulator


@pytest.fixture(scope="session")
async def firebase_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[FirebaseEmulator]:
    async with start_firebase_emulator(tmp_path_factory) as emulator:
        yield emulator
