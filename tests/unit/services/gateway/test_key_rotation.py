"""A rotated JWT secret or internal key is picked up from its file without a restart; the old
one verifies for the overlap window only. The clock is injected; the file is swapped the way
the kubelet updates a Secret volume (a new ``..data`` symlink renamed over the old one)."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from services.common.auth import AuthError, build_verifier, jwt_key_ring
from services.common.identity import (
    InternalIdentityError,
    InternalIdentitySigner,
    InternalIdentityVerifier,
    internal_key_ring,
)
from services.common.settings import AuthSettings, InternalIdentitySettings
from services.common.signing_keys import KeyRing, fingerprint
from services.common.tenancy import Identity

pytestmark = pytest.mark.unit

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32
OVERLAP = 300.0
POLL = 5.0
ALICE = Identity(user_id="alice", tenant_id="acme", email=None, roles=("member",))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SecretVolume:
    """One key of a Secret volume as the kubelet writes it: ``key -> ..data/key``,
    ``..data -> ..<n>``; an update writes ``..<n+1>`` and renames a new ``..data`` over."""

    def __init__(self, root: Path, value: str, name: str = "key") -> None:
        self.root, self.name, self.version = root, name, 0
        self.update(value)
        self.path.symlink_to(f"..data/{name}")

    @property
    def path(self) -> Path:
        return self.root / self.name

    def update(self, value: str) -> None:
        self.version += 1
        folder = self.root / f"..{self.version}"
        folder.mkdir()
        (folder / self.name).write_text(value)
        (self.root / "..data_tmp").symlink_to(folder.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")


def user_token(secret: str) -> str:
    claims: dict[str, Any] = {"user_id": "u1", "tenant_id": "acme"}
    claims.update(iss="xynergy", aud="xynergy-api", exp=int(time.time()) + 3600)
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def volume(tmp_path: Path) -> SecretVolume:
    return SecretVolume(tmp_path, OLD + "\n")


def jwt_settings(volume: SecretVolume) -> AuthSettings:
    return AuthSettings(
        jwt_secret_file=volume.path,
        firebase_enabled=False,
        rotation_overlap_seconds=OVERLAP,
        key_poll_seconds=POLL,
    )


def internal_settings(volume: SecretVolume) -> InternalIdentitySettings:
    return InternalIdentitySettings(
        signing_key_file=volume.path, rotation_overlap_seconds=OVERLAP, key_poll_seconds=POLL
    )


async def test_user_jwt_old_secret_verifies_for_the_overlap_only(
    volume: SecretVolume, clock: Clock
) -> None:
    settings = jwt_settings(volume)
    verifier = build_verifier(settings)  # the gateway's chain (its caches included)
    verifier._jwt.keys = jwt_key_ring(settings, clock=clock)  # type: ignore[attr-defined]
    old, new = user_token(OLD), user_token(NEW)
    assert (await verifier.verify(old)).user_id == "u1"
    with pytest.raises(AuthError):
        await verifier.verify(new)

    volume.update(NEW)
    clock.now += 1.5  # no poll due yet: the new token's failure makes the file be re-read
    assert (await verifier.verify(new)).user_id == "u1"
    clock.now += OVERLAP - 1.0
    assert (await verifier.verify(old)).user_id == "u1"
    clock.now += 1.0
    with pytest.raises(AuthError) as refused:
        await verifier.verify(old)  # also when the gateway's caches saw it verified before
    assert refused.value.check == "signature"
    assert (await verifier.verify(new)).user_id == "u1"


def test_a_poll_notices_the_change_without_a_failing_token(
    volume: SecretVolume, clock: Clock
) -> None:
    ring = jwt_key_ring(jwt_settings(volume), clock=clock)
    volume.update(NEW)
    clock.now += POLL - 0.1
    assert ring.signing.kid == fingerprint(OLD)
    clock.now += 0.1
    assert ring.signing.kid == fingerprint(NEW)
    assert [k.kid for k in ring.accepted()] == [fingerprint(NEW), fingerprint(OLD)]


def test_rereads_after_a_failure_are_rate_limited(volume: SecretVolume, clock: Clock) -> None:
    ring = jwt_key_ring(jwt_settings(volume), clock=clock)

    def check(secret: str) -> str:
        if secret != NEW:
            raise jwt.InvalidSignatureError("no")
        return secret

    with pytest.raises(jwt.InvalidSignatureError):
        ring.verify(check)  # re-read: nothing new yet
    volume.update(NEW)
    with pytest.raises(jwt.InvalidSignatureError):
        ring.verify(check)  # within a second of the last re-read: not again
    clock.now += 1.0
    assert ring.verify(check) == NEW


def test_a_key_listed_in_the_file_verifies_until_it_leaves(
    volume: SecretVolume, clock: Clock
) -> None:
    ring = jwt_key_ring(jwt_settings(volume), clock=clock)
    volume.update(f"{NEW}\n{OLD}\n")  # the new key first (it signs), the old one kept
    clock.now += POLL + 10 * OVERLAP
    assert [k.kid for k in ring.accepted()] == [fingerprint(NEW), fingerprint(OLD)]
    volume.update(NEW)
    clock.now += POLL
    assert [k.kid for k in ring.accepted()] == [fingerprint(NEW), fingerprint(OLD)]
    clock.now += OVERLAP
    assert [k.kid for k in ring.accepted()] == [fingerprint(NEW)]


@pytest.mark.parametrize("content", ["", "\n  \n", "short\n"])
def test_a_bad_file_keeps_the_keys_and_never_logs_them(
    volume: SecretVolume, clock: Clock, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    ring = internal_key_ring(internal_settings(volume), clock=clock)
    volume.update(content)
    clock.now += POLL
    with caplog.at_level(logging.WARNING, logger="xynergy.keys"):
        assert ring.signing.kid == fingerprint(OLD)
    assert "key file not used" in caplog.text
    volume.update(NEW)
    clock.now += POLL
    with caplog.at_level(logging.WARNING, logger="xynergy.keys"):
        assert ring.signing.kid == fingerprint(NEW)
        clock.now += OVERLAP
        ring.refresh()
    assert f"key rotated: signing kid {fingerprint(NEW)}" in caplog.text
    assert f"kid {fingerprint(OLD)} no longer verifies" in caplog.text
    for secret in (OLD, NEW, content.strip() or OLD):
        assert secret not in caplog.text


def test_internal_identities_signed_with_the_new_key_verify_downstream(
    volume: SecretVolume, clock: Clock
) -> None:
    settings = internal_settings(volume)  # the gateway and a service: two processes, two rings
    signer = InternalIdentitySigner(settings, keys=internal_key_ring(settings, clock=clock))
    service = InternalIdentityVerifier(settings, keys=internal_key_ring(settings, clock=clock))
    before = signer.sign(ALICE)
    assert jwt.get_unverified_header(before)["kid"] == fingerprint(OLD)

    volume.update(NEW)
    clock.now += POLL
    after = signer.sign(ALICE)  # not the cached token of the old key
    assert jwt.get_unverified_header(after)["kid"] == fingerprint(NEW)
    jwt.decode(after, NEW, algorithms=["HS256"], audience=settings.audience)
    assert service.verify(after) == ALICE
    assert service.verify(before) == ALICE  # in flight at the rotation: within the overlap
    clock.now += OVERLAP
    with pytest.raises(InternalIdentityError):
        service.verify(before)
    assert service.verify(after) == ALICE


def test_a_key_from_the_environment_never_changes(clock: Clock) -> None:
    settings = InternalIdentitySettings(signing_key=OLD)  # type: ignore[arg-type]
    ring = internal_key_ring(settings, clock=clock)
    clock.now += 10 * OVERLAP
    assert [k.kid for k in ring.accepted()] == [fingerprint(OLD)]
    assert ring.path is None


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (
            {"signing_key": OLD, "signing_key_file": "/nowhere/key"},
            "XYNERGY_INTERNAL_SIGNING_KEY / XYNERGY_INTERNAL_SIGNING_KEY_FILE: set one",
        ),
        ({"signing_key_file": "/nowhere/key"}, "XYNERGY_INTERNAL_SIGNING_KEY_FILE: cannot read"),
        ({"signing_key": "short"}, "at least 32 characters"),
    ],
)
def test_bad_key_settings_name_the_variable(settings: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)) as caught:
        internal_key_ring(InternalIdentitySettings(**settings))  # type: ignore[arg-type]
    assert OLD not in str(caught.value)
    assert "short" not in str(caught.value).replace(named, "")


def test_a_short_key_in_the_file_is_named_by_its_line(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path, f"{NEW}\nshort\n")
    with pytest.raises(ValueError, match="XYNERGY_INTERNAL_SIGNING_KEY_FILE") as caught:
        internal_key_ring(internal_settings(volume))
    assert "key 2 must be at least 32 characters" in str(caught.value)
    assert NEW not in str(caught.value)


def test_the_gateway_start_checks_the_jwt_secret_file(
    monkeypatch: pytest.MonkeyPatch, volume: SecretVolume
) -> None:
    from services.common.settings import SettingsError
    from services.gateway.__main__ import check_settings

    for name in ("JWT_SECRET", "XYNERGY_AUTH_JWT_SECRET", "XYNERGY_INTERNAL_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XYNERGY_INTERNAL_SIGNING_KEY_FILE", str(volume.path))
    monkeypatch.setenv("XYNERGY_AUTH_FIREBASE_ENABLED", "false")
    monkeypatch.setenv("JWT_SECRET_FILE", str(volume.path))
    check_settings()
    monkeypatch.setenv("JWT_SECRET_FILE", str(volume.root / "missing"))
    with pytest.raises(SettingsError, match="JWT_SECRET_FILE: cannot read"):
        check_settings()


def test_a_ring_needs_a_key() -> None:
    with pytest.raises(ValueError, match="JWT: no key"):
        KeyRing((), name="JWT")
