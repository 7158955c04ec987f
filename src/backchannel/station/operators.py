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
- *Lockout*: after ``lockout_attempts`` consecutive failures an account refuses every login,
  right or wrong, for ``lockout_seconds``. A success resets the count.
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
import os
import re
from dataclasses import dataclass
from typing import Any

from backchannel.clock import Clock, Rng, SystemClock, SystemRng
from backchannel.errors import InvalidArgument, LocalError
from backchannel.proto.invitation import valid_name
from backchannel.proto.primitives import argon2id
from backchannel.station.store import Store

ROLES = ("operator", "releaser", "admin")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class LoginRefused(LocalError):
    """Wrong operator name or password."""

    code = "login_refused"


class AccountLocked(LocalError):
    """This operator account is locked after repeated failed logins. Try again later or ask an admin."""

    code = "account_locked"
    #: True when this very attempt was the failure that locked the account.
    just_locked = False


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


#: Light parameters for tests only (BACKCHANNEL_TEST_FAST_KDF=1), as for the keystore.
TEST_HASH_PARAMS = HashParams(memory_kib=1024, iterations=1, lanes=1)
_PHC = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$")


def default_hash_params() -> HashParams:
    return TEST_HASH_PARAMS if os.environ.get("BACKCHANNEL_TEST_FAST_KDF") == "1" else HashParams()


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

    async def authenticate(self, name: str, password: str) -> OperatorView:
        """The operator, if the password is right and the account not locked.

        Raises :class:`LoginRefused` (wrong name or password: the two are not told apart) or
        :class:`AccountLocked`. Every failure on an existing account counts toward its lockout.
        One login is checked at a time, its Argon2id hashing in a worker thread (it releases
        the GIL), so a flood of attempts neither races the failure count nor stalls the station.
        """
        async with self._login_lock:
            return await self._authenticate(name, password[:MAX_PASSWORD])

    async def _authenticate(self, name: str, password: str) -> OperatorView:
        row = self._store.get_operator(name) if len(name) <= 256 else None
        if row is None:
            await asyncio.to_thread(verify_password, password, self._dummy_hash)
            raise LoginRefused()
        view = _operator(row)
        now = self._clock.now()
        if view.locked_until is not None and now < view.locked_until:
            raise AccountLocked(self._locked_message(view.locked_until - now))
        if not await asyncio.to_thread(verify_password, password, row[2]):
            now = self._clock.now()
            view = _operator(self._store.get_operator(name) or row)
            failed = view.failed_logins + 1
            locked = failed >= self.lockout_attempts
            with self._store.transaction():
                self._store.set_login_state(
                    name, 0 if locked else failed, now + self.lockout_seconds if locked else None
                )
            if locked:
                error = AccountLocked(self._locked_message(self.lockout_seconds))
                error.just_locked = True
                raise error
            raise LoginRefused()
        with self._store.transaction():
            self._store.set_login_state(name, 0, None, last_login=now)
        return self.get(name)

    def _locked_message(self, remaining: float) -> str:
        minutes = max(1, round(remaining / 60))
        return (
            f"this account is locked after {self.lockout_attempts} failed logins; try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}, or ask an admin to reset the password"
        )

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
