"""HS256 keys that rotate without a restart: the JWT secret and the internal signing key.

A key comes from the environment (fixed for the life of the process) or from a file, the way
a Kubernetes Secret volume mounts it. The kubelet updates such a file by swapping a symlink
(``..data``), so the path keeps its name and gets a new inode: :class:`KeyRing` stats the path
at most every ``poll_seconds`` (from the calls that use a key, no background task) and, when
a token fails every key, once more at most every second, then re-reads it.

The file holds one key per line; the first line signs, every line verifies. A key that leaves
the file keeps verifying for ``overlap_seconds`` after the change was seen, then is refused.
So rotating is either "replace the key" (the overlap covers tokens already issued) or, when
several processes must all accept a key before anyone signs with it, "add the new key as a
second line, wait, move it first, remove the old one" (docs/security.md).

Keys never reach a log or an error message: they are named by :func:`fingerprint`, the first
8 hex digits of their SHA-256, which is also the ``kid`` the internal signer writes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import jwt
from pydantic import SecretStr

from services.common.settings import KeyRotationSettings, SettingsError

__all__ = ["Key", "KeyRing", "fingerprint", "key_ring", "parse_keys"]

log = logging.getLogger("xynergy.keys")

T = TypeVar("T")

_RECHECK_SECONDS = 1.0
"""At most one re-read per this many seconds when a token fails every key."""


def fingerprint(secret: str) -> str:
    """A key's public name: the first 8 hex digits of its SHA-256 (not reversible)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Key:
    secret: str = field(repr=False)
    kid: str = ""

    @classmethod
    def of(cls, secret: str) -> Key:
        return cls(secret, fingerprint(secret))


def parse_keys(text: str, *, source: str, min_length: int) -> tuple[Key, ...]:
    """The keys of a key file (one per line, blank lines skipped; first signs), or a
    SettingsError (a ValueError) naming ``source`` and what was expected, never a key."""
    secrets = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not secrets:
        raise SettingsError(f"{source}: holds no key (expected one key per line)")
    for number, secret in enumerate(secrets, start=1):
        if len(secret) < min_length:
            raise SettingsError(f"{source}: key {number} must be at least {min_length} characters")
    return tuple(Key.of(s) for s in secrets)


@dataclass(frozen=True, slots=True)
class _Keys:
    current: tuple[Key, ...]
    retiring: tuple[tuple[Key, float], ...] = ()
    """Keys that left the file, each with the (clock) time it stops verifying."""

    @property
    def accepted(self) -> tuple[Key, ...]:
        return self.current + tuple(k for k, _ in self.retiring)


def _stat(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)  # follows the kubelet's symlinks to the file of the moment
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class KeyRing:
    """The keys of one secret: the one that signs, those that verify; rotated from a file."""

    def __init__(
        self,
        keys: tuple[Key, ...],
        *,
        name: str,
        path: Path | None = None,
        overlap_seconds: float = 300.0,
        poll_seconds: float = 5.0,
        min_length: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not keys:
            raise ValueError(f"{name}: no key")
        self.name = name
        self.path = path
        self.overlap = overlap_seconds
        self.poll = poll_seconds
        self.min_length = min_length
        self.clock = clock
        self.generation = 0
        """Changes whenever the set of verifying keys changes (caches of verified tokens)."""
        self._keys = _Keys(keys)
        self._stat = _stat(path) if path is not None else None
        self._next_poll = clock() + poll_seconds
        self._next_recheck = 0.0
        self._lock = threading.Lock()

    @property
    def signing(self) -> Key:
        """The key new tokens are signed with (the file's first line)."""
        self.refresh()
        return self._keys.current[0]

    def accepted(self) -> tuple[Key, ...]:
        """Every key a token may be signed with, the signing key first."""
        self.refresh()
        return self._keys.accepted

    def refresh(self, *, force: bool = False) -> None:
        """Drop keys whose overlap has ended; re-read the file when it changed (when a poll
        is due, or now with ``force``)."""
        now = self.clock()
        keys = self._keys
        due = self.path is not None and (force or now >= self._next_poll)
        if not due and not (keys.retiring and keys.retiring[0][1] <= now):
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is at it; the keys of the moment stay usable
        try:
            if due:
                self._next_poll = now + self.poll
                self._poll(now)
            self._prune(now)
        finally:
            self._lock.release()

    def verify(self, attempt: Callable[[str], T]) -> T:
        """``attempt(secret)`` with each verifying key until one's signature holds.

        When every key fails, the file is re-read (at most once a second: a caller may hold
        a token signed with a key this process has not seen yet) and the new keys tried.
        Any error other than a bad signature (expired, wrong audience...) ends the search.
        """
        try:
            return self._attempt(self.accepted(), attempt)
        except jwt.InvalidSignatureError:
            now = self.clock()
            if self.path is None or now < self._next_recheck:
                raise
            self._next_recheck = now + _RECHECK_SECONDS
            before = self.generation
            self.refresh(force=True)
            if self.generation == before:
                raise
            return self._attempt(self._keys.accepted, attempt)

    @staticmethod
    def _attempt(keys: tuple[Key, ...], attempt: Callable[[str], T]) -> T:
        for key in keys[:-1]:
            try:
                return attempt(key.secret)
            except jwt.InvalidSignatureError:
                continue
        return attempt(keys[-1].secret)

    def _poll(self, now: float) -> None:
        assert self.path is not None
        stat = _stat(self.path)
        if stat == self._stat:
            return
        self._stat = stat
        try:
            new = parse_keys(
                self.path.read_text(), source=str(self.path), min_length=self.min_length
            )
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = exc if isinstance(exc, ValueError) else type(exc).__name__
            log.warning("%s: key file not used (%s); keeping the current keys", self.name, reason)
            return
        self._rotate(new, now)

    def _rotate(self, new: tuple[Key, ...], now: float) -> None:
        old = self._keys
        if new == old.current:
            return
        kept = {k.secret for k in new}
        retiring = [(k, t) for k, t in old.retiring if k.secret not in kept]
        retiring += [(k, now + self.overlap) for k in old.current if k.secret not in kept]
        retiring.sort(key=lambda item: item[1])
        self._keys = _Keys(new, tuple(retiring))
        self.generation += 1
        log.warning(
            "%s key rotated: signing kid %s, verifying %s; retiring %s for %gs",
            self.name,
            new[0].kid,
            ",".join(k.kid for k in new),
            ",".join(k.kid for k, _ in retiring) or "none",
            self.overlap,
        )

    def _prune(self, now: float) -> None:
        keys = self._keys
        ended = [k for k, t in keys.retiring if t <= now]
        if not ended:
            return
        self._keys = _Keys(keys.current, tuple((k, t) for k, t in keys.retiring if t > now))
        self.generation += 1
        log.warning(
            "%s key overlap ended: kid %s no longer verifies",
            self.name,
            ",".join(k.kid for k in ended),
        )


def key_ring(
    *,
    name: str,
    value: SecretStr | None,
    path: Path | None,
    variables: tuple[str, str],
    rotation: KeyRotationSettings,
    min_length: int = 1,
    clock: Callable[[], float] = time.monotonic,
) -> KeyRing:
    """The ring of a secret given either as a value (``variables[0]``) or as a key file
    (``variables[1]``); a SettingsError (a ValueError) naming the variable when it is missing
    or bad."""
    env, file_env = variables
    text = value.get_secret_value() if value is not None else ""
    if text and path is not None:
        raise SettingsError(f"{env} / {file_env}: set one of them, not both")
    if path is not None:
        try:
            raw = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{file_env}: cannot read {path} ({type(exc).__name__})") from None
        keys = parse_keys(raw, source=f"{file_env} ({path})", min_length=min_length)
    elif len(text) < max(min_length, 1):
        raise SettingsError(
            f"{env} / {file_env}: a key of at least {min_length} characters is required"
        )
    else:
        keys = (Key.of(text),)  # a value is one key, used as given
    return KeyRing(
        keys,
        name=name,
        path=path,
        overlap_seconds=rotation.rotation_overlap_seconds,
        poll_seconds=rotation.key_poll_seconds,
        min_length=min_length,
        clock=clock,
    )
