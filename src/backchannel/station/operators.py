"""Operators of a station: accounts, passwords, console sessions, lockout and the audit log.

Theory of operation
-------------------
The people at a station (duty officers) log in to the operator console with a name and a
password. This module keeps their accounts in the station's database (schema
``003_operators.sql``) and is the only place that decides whether a login succeeds:

- *Passwords* are stored as Argon2id hashes in PHC form, ``$argon2id$v=19$m=..,t=..,p=..$salt$hash``,
  with a random 16-byte salt; the parameters travel with the hash, so they can be raised later
  without invalidating old hashes. Checking compares digests in constant time, and an unknown
  name costs the same hashing as a known one, so timing does not tell which names exist.
- *Throttling, not account lockout*: failures are counted per (name as typed, address or
  device cookie) by :class:`~backchannel.station.login_throttle.LoginThrottle`; after
  ``lockout_attempts`` of them that key waits 1, 2, 4 ... seconds, at most ``lockout_seconds``,
  between attempts. An attacker elsewhere cannot lock an operator out, and an unknown name is
  throttled and refused exactly like a known one. A browser that logged in as a name gets a
  *device* token (kept in memory only) that gives it a key of its own for that name.
- *Sessions*: a successful login opens a session named by a random token (the browser keeps it
  in a cookie; the database keeps only its SHA-256) with its own CSRF token, valid for
  ``session_seconds`` from login. Expired sessions are refused and swept.
- *Audit*: :meth:`Operators.record` appends who did what, when. Rows are never changed.

Roles: ``operator`` reads, sends and acknowledges; ``releaser`` may also release messages held
for a second operator (release authority); ``admin`` may do everything and read the audit log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from backchannel.clock import Clock, Rng, SystemClock, SystemRng
from backchannel.errors import InvalidArgument, LocalError
from backchannel.proto.invitation import valid_name
from backchannel.proto.primitives import argon2id
from backchannel.station.login_throttle import LoginThrottle
from backchannel.station.store import Store

ROLES = ("operator", "releaser", "admin")
#: Browsers remembered as having logged in (their device tokens, in memory only).
MAX_DEVICES = 1000
#: How many more failures one name takes from all untrusted browsers together than from one address.
NAME_WIDE_FACTOR = 4
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class LoginRefused(LocalError):
    """Wrong operator name or password."""

    code = "login_refused"


class LoginThrottled(LocalError):
    """Too many failed logins for this name from here. Wait, then try again."""

    code = "login_throttled"

    def __init__(self, seconds: float) -> None:
        self.seconds = max(1, int(seconds + 0.999))
        super().__init__(
            f"Too many failed logins for this name from here: wait {self.seconds} "
            f"second{'' if self.seconds == 1 else 's'}, then try again."
        )


class UnknownOperator(LocalError):
    """There is no operator by that name. `backchannel operator list` lists them."""

    code = "unknown_operator"


class OperatorExists(LocalError):
    """An operator by that name already exists."""

    code = "operator_exists"


# ---- password hashes ------------------------------------------------------------------------


@dataclass(frozen=True)
class HashParams:
    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 2


_PHC = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$")


#: The parameters a new password hash gets; injected light by test harnesses only, as for the
#: keystore (:func:`backchannel.station.keystore.set_default_params`).
_default_hash_params = HashParams()


def default_hash_params() -> HashParams:
    return _default_hash_params


def set_default_hash_params(params: HashParams) -> None:
    """Replace the parameters new password hashes get (for test harnesses only)."""
    global _default_hash_params
    _default_hash_params = params


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, params: HashParams | None = None, rng: Rng | None = None) -> str:
    """An Argon2id hash of ``password`` with a fresh random salt, in PHC string form."""
    params = params or default_hash_params()
    salt = (rng or SystemRng()).bytes(16)
    digest = argon2id(
        password.encode("utf-8"),
        salt,
        memory_kib=params.memory_kib,
        iterations=params.iterations,
        lanes=params.lanes,
    )
    return (
        f"$argon2id$v=19$m={params.memory_kib},t={params.iterations},p={params.lanes}"
        f"${_b64(salt)}${_b64(digest)}"
    )


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the PHC hash; False for a malformed or implausible hash."""
    match = _PHC.match(encoded)
    if match is None:
        return False
    memory, iterations, lanes = (int(match.group(i)) for i in (1, 2, 3))
    if not (8 * lanes <= memory <= 1024 * 1024 and 1 <= iterations <= 100 and 1 <= lanes <= 16):
        return False
    try:
        salt, expected = _unb64(match.group(4)), _unb64(match.group(5))
        digest = argon2id(
            password.encode("utf-8"), salt, memory_kib=memory, iterations=iterations, lanes=lanes
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidArgument(f"the password must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise InvalidArgument(f"the password must be at most {MAX_PASSWORD} characters long")


# ---- what callers see ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorView:
    name: str
    role: str
    created_at: float
    failed_logins: int
    locked_until: float | None
    last_login: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "failed_logins": self.failed_logins,
            "locked_until": self.locked_until,
            "last_login": self.last_login,
        }


@dataclass(frozen=True)
class Session:
    operator: str
    role: str
    csrf: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    operator: str
    action: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "operator": self.operator,
            "action": self.action,
            "detail": self.detail,
        }


def _operator(row: tuple[Any, ...]) -> OperatorView:
    name, role, _hash, created_at, failed, locked_until, last_login = row
    return OperatorView(name, role, created_at, failed, locked_until, last_login)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Operators:
    """Operator accounts, sessions and the audit log, in the station's database."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        rng: Rng | None = None,
        lockout_attempts: int = 5,
        lockout_seconds: float = 300.0,
        session_seconds: float = 12 * 3600.0,
        hash_params: HashParams | None = None,
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._rng = rng or SystemRng()
        self.lockout_attempts = lockout_attempts
        self.lockout_seconds = lockout_seconds
        self.session_seconds = session_seconds
        self._params = hash_params or default_hash_params()
        # Checked against when the name is unknown, so that costs the same time as a real check.
        self._dummy_hash = hash_password(self._rng.bytes(16).hex(), self._params, self._rng)
        self._login_lock = asyncio.Lock()
        self.throttle = LoginThrottle(lockout_attempts, lockout_seconds)
        #: All attempts at one name from browsers without its device token, wherever they come
        #: from (an address is cheap to change behind a proxy): slowed only after many more.
        self.name_throttle = LoginThrottle(lockout_attempts * NAME_WIDE_FACTOR, lockout_seconds)
        self._devices: dict[bytes, str] = {}  # SHA-256 of a device token -> the name it logged in as

    # ---- accounts ----------------------------------------------------------------------------

    def add(self, name: str, role: str, password: str) -> OperatorView:
        if not valid_name(name) or name != name.strip():
            raise InvalidArgument("an operator name is 1 to 64 bytes of printable text, no outer spaces")
        if role not in ROLES:
            raise InvalidArgument(f"unknown role {role!r}: use {', '.join(ROLES)}")
        check_new_password(password)
        encoded = hash_password(password, self._params, self._rng)
        with self._store.transaction():
            if not self._store.add_operator(name, role, encoded, self._clock.now()):
                raise OperatorExists(f"an operator named {name!r} already exists")
        return self.get(name)

    def get(self, name: str) -> OperatorView:
        row = self._store.get_operator(name)
        if row is None:
            raise UnknownOperator(f"there is no operator {name!r}; `backchannel operator list` lists them")
        return _operator(row)

    def all(self) -> list[OperatorView]:
        return [_operator(r) for r in self._store.list_operators()]

    def remove(self, name: str) -> None:
        with self._store.transaction():
            if not self._store.remove_operator(name):
                raise UnknownOperator(f"there is no operator {name!r}")

    def set_password(self, name: str, password: str) -> None:
        """A new password; also lifts a lockout and ends the operator's sessions."""
        check_new_password(password)
        encoded = hash_password(password, self._params, self._rng)
        with self._store.transaction():
            if not self._store.set_operator_password(name, encoded):
                raise UnknownOperator(f"there is no operator {name!r}")

    # ---- logging in --------------------------------------------------------------------------

    async def authenticate(
        self, name: str, password: str, address: str = "", device: str | None = None
    ) -> OperatorView:
        """The operator, if the password is right and this name may try again from here.

        Raises :class:`LoginRefused` (wrong name or password: the two are not told apart, and an
        unknown name costs the same Argon2id hashing) or :class:`LoginThrottled`. ``address`` is
        the client's address; ``device`` the browser's device token, if it has one. One login is
        checked at a time, its hashing in a worker thread (it releases the GIL), so a flood of
        attempts neither races the counts nor stalls the station.
        """
        async with self._login_lock:
            return await self._authenticate(name, password[:MAX_PASSWORD], address, device)

    def throttle_keys(
        self, name: str, address: str, device: str | None
    ) -> list[tuple[LoginThrottle, tuple[str, str]]]:
        """What an attempt counts against: this browser's own key when it has logged in as
        ``name`` before; else this address's key and the name's key for untrusted browsers."""
        if device and len(device) <= 128:
            digest = token_hash(device)
            if self._devices.get(digest) == name:
                return [(self.throttle, (name, "device:" + digest.hex()))]
        return [(self.throttle, (name, "address:" + address)), (self.name_throttle, (name, "untrusted"))]

    async def _authenticate(self, name: str, password: str, address: str, device: str | None) -> OperatorView:
        name = name[:256]
        keys = self.throttle_keys(name, address, device)
        wait = max(throttle.wait(key, self._clock.now()) for throttle, key in keys)
        if wait > 0:
            raise LoginThrottled(wait)
        row = self._store.get_operator(name)
        encoded = row[2] if row is not None else self._dummy_hash
        if not await asyncio.to_thread(verify_password, password, encoded) or row is None:
            # Nothing is written for a failure, known name or not: equal work, equal time.
            for throttle, key in keys:
                throttle.failed(key, self._clock.now())
            raise LoginRefused()
        for throttle, key in keys:
            throttle.succeeded(key)
        with self._store.transaction():
            self._store.set_login_state(name, 0, None, last_login=self._clock.now())
        return self.get(name)

    def remember_device(self, name: str) -> str:
        """A new device token for a browser that just logged in as ``name`` (for its cookie)."""
        token = self._rng.bytes(32).hex()
        while len(self._devices) >= MAX_DEVICES:
            del self._devices[next(iter(self._devices))]
        self._devices[token_hash(token)] = name
        return token

    # ---- sessions ------------------------------------------------------------------------------

    def open_session(self, name: str) -> tuple[str, Session]:
        """A new session for ``name``: (the token for the cookie, the session)."""
        operator = self.get(name)
        token = self._rng.bytes(32).hex()
        csrf = self._rng.bytes(32).hex()
        now = self._clock.now()
        session = Session(operator.name, operator.role, csrf, now, now + self.session_seconds)
        with self._store.transaction():
            self._store.delete_expired_console_sessions(now)
            self._store.add_console_session(token_hash(token), name, csrf, now, session.expires_at)
        return token, session

    def session(self, token: str | None) -> Session | None:
        """The live session for a cookie's token; None if unknown, ended or expired."""
        if not token or len(token) > 128:
            return None
        row = self._store.get_console_session(token_hash(token))
        if row is None:
            return None
        session = Session(*row)
        if self._clock.now() >= session.expires_at:
            with self._store.transaction():
                self._store.delete_console_session(token_hash(token))
            return None
        return session

    def close_session(self, token: str) -> None:
        with self._store.transaction():
            self._store.delete_console_session(token_hash(token))

    # ---- the audit log ----------------------------------------------------------------------------

    def record(self, operator: str, action: str, detail: str = "") -> None:
        """Append one entry to the audit log: ``operator`` did ``action`` (now)."""
        with self._store.transaction():
            self._store.add_audit(self._clock.now(), operator[:128], action, detail[:1000])

    def audit_log(self, limit: int = 500) -> list[AuditEntry]:
        return [AuditEntry(*row) for row in self._store.audit_entries(limit)]
