"""Console authentication: password hashes, lockout, sessions and their expiry, CSRF and origin rules."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.clock import FakeClock, FakeRng
from backchannel.console.auth import allowed, csrf_ok, host_allowed, safe_next, same_origin
from backchannel.console.settings import ConsoleSettings, parse_address
from backchannel.errors import ConfigError, InvalidArgument
from backchannel.station.login_throttle import LoginThrottle
from backchannel.station.operators import (
    HashParams,
    LoginRefused,
    LoginThrottled,
    OperatorExists,
    Operators,
    UnknownOperator,
    hash_password,
    token_hash,
    verify_password,
)
from backchannel.station.store import Store

LIGHT = HashParams(memory_kib=1024, iterations=1, lanes=1)
PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "station.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def ops(store: Store, clock: FakeClock) -> Operators:
    operators = Operators(
        store, clock=clock, rng=FakeRng(b"ops"), lockout_attempts=3, lockout_seconds=60, session_seconds=100
    )
    operators.add("smith", "operator", PASSWORD)
    return operators


def login(ops: Operators, name: str, password: str) -> str:
    return asyncio.run(ops.authenticate(name, password)).name


# ---- password hashes ---------------------------------------------------------------------------


def test_a_password_hash_is_argon2id_with_its_parameters_and_a_random_salt() -> None:
    first, second = hash_password(PASSWORD, LIGHT), hash_password(PASSWORD, LIGHT)
    assert first.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert first != second  # a fresh salt each time
    assert PASSWORD not in first


def test_the_right_password_verifies_and_a_wrong_one_does_not() -> None:
    encoded = hash_password(PASSWORD, LIGHT)
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + "!", encoded)
    assert not verify_password("", encoded)


def test_the_parameters_are_read_from_the_hash_itself() -> None:
    encoded = hash_password(PASSWORD, HashParams(memory_kib=2048, iterations=2, lanes=2))
    assert "$m=2048,t=2,p=2$" in encoded
    assert verify_password(PASSWORD, encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plaintext",
        "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
        "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",  # implausible memory
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",  # wrong digest
    ],
)
def test_a_malformed_or_foreign_hash_never_verifies(encoded: str) -> None:
    assert not verify_password(PASSWORD, encoded)


def test_a_tampered_hash_does_not_verify() -> None:
    encoded = hash_password(PASSWORD, LIGHT)
    flipped = encoded[:-2] + ("A" if encoded[-2] != "A" else "B") + encoded[-1]
    assert not verify_password(PASSWORD, flipped)


# ---- accounts ----------------------------------------------------------------------------------


def test_accounts_are_created_listed_and_removed(ops: Operators) -> None:
    ops.add("ivanova", "admin", PASSWORD)
    assert [(o.name, o.role) for o in ops.all()] == [("ivanova", "admin"), ("smith", "operator")]
    with pytest.raises(OperatorExists):
        ops.add("smith", "admin", PASSWORD)
    ops.remove("ivanova")
    assert [o.name for o in ops.all()] == ["smith"]
    with pytest.raises(UnknownOperator):
        ops.remove("ivanova")


@pytest.mark.parametrize(
    ("name", "role", "password"),
    [
        ("x", "captain", PASSWORD),
        ("x", "operator", "short"),
        ("", "operator", PASSWORD),
        (" x", "admin", PASSWORD),
        ("evil\x1b[2J", "admin", PASSWORD),  # operator names follow the wire's name rule (PROTOCOL §9)
        ("\u202eadmin", "admin", PASSWORD),
        ("two\nlines", "operator", PASSWORD),
        ("o" * 65, "operator", PASSWORD),
    ],
)
def test_bad_accounts_are_refused_by_name(ops: Operators, name: str, role: str, password: str) -> None:
    with pytest.raises(InvalidArgument):
        ops.add(name, role, password)


def test_the_database_holds_no_password(ops: Operators, tmp_path: Path) -> None:
    raw = (tmp_path / "station.db").read_bytes()
    assert PASSWORD.encode() not in raw


# ---- logging in and lockout -----------------------------------------------------------------------


def test_the_right_password_logs_in_and_records_the_time(ops: Operators, clock: FakeClock) -> None:
    assert login(ops, "smith", PASSWORD) == "smith"
    assert ops.get("smith").last_login == clock.now()


def test_a_wrong_password_and_an_unknown_name_are_refused_alike(ops: Operators) -> None:
    with pytest.raises(LoginRefused) as wrong:
        login(ops, "smith", "not the password")
    with pytest.raises(LoginRefused) as unknown:
        login(ops, "nobody", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == "Wrong operator name or password."


def test_repeated_failures_slow_that_name_from_that_address_with_doubling_waits(
    ops: Operators, clock: FakeClock
) -> None:
    for _ in range(3):  # lockout_attempts = 3 failures are free; the third starts the waits
        with pytest.raises(LoginRefused):
            asyncio.run(ops.authenticate("smith", "wrong password", "10.0.0.9"))
    with pytest.raises(LoginThrottled, match="wait 1 second,") as waiting:
        asyncio.run(ops.authenticate("smith", PASSWORD, "10.0.0.9"))  # not even checked
    assert waiting.value.seconds == 1
    clock.advance(1)
    with pytest.raises(LoginRefused):
        asyncio.run(ops.authenticate("smith", "wrong password", "10.0.0.9"))
    with pytest.raises(LoginThrottled, match="wait 2 seconds"):
        asyncio.run(ops.authenticate("smith", PASSWORD, "10.0.0.9"))
    clock.advance(2)
    assert asyncio.run(ops.authenticate("smith", PASSWORD, "10.0.0.9")).name == "smith"
    assert ops.throttle.wait(("smith", "address:10.0.0.9"), clock.now()) == 0  # a success clears it


def test_failures_from_one_address_do_not_slow_the_same_name_from_another(ops: Operators) -> None:
    for _ in range(5):
        with pytest.raises((LoginRefused, LoginThrottled)):
            asyncio.run(ops.authenticate("smith", "wrong password", "10.0.0.66"))
    assert asyncio.run(ops.authenticate("smith", PASSWORD, "10.0.0.1")).name == "smith"
    assert ops.get("smith").locked_until is None  # the account itself is never locked


def test_the_waits_stop_doubling_at_lockout_seconds(ops: Operators, clock: FakeClock) -> None:
    for _ in range(12):
        with contextlib.suppress(LoginRefused, LoginThrottled):
            asyncio.run(ops.authenticate("smith", "wrong password", "10.0.0.9"))
        clock.advance(ops.throttle.wait(("smith", "address:10.0.0.9"), clock.now()))
    with pytest.raises(LoginRefused):
        asyncio.run(ops.authenticate("smith", "wrong password", "10.0.0.9"))
    assert ops.throttle.wait(("smith", "address:10.0.0.9"), clock.now()) == 60  # lockout_seconds


def test_an_unknown_name_is_throttled_exactly_like_a_known_one(ops: Operators) -> None:
    answers: dict[str, list[str]] = {"smith": [], "nobody": []}
    for name, seen in answers.items():
        for _ in range(5):
            try:
                asyncio.run(ops.authenticate(name, "wrong password", "10.0.0.9"))
            except (LoginRefused, LoginThrottled) as exc:
                seen.append(f"{exc.code}: {exc}")
    assert answers["smith"] == answers["nobody"]
    assert answers["smith"][-1].startswith("login_throttled")


def test_a_browser_that_logged_in_as_a_name_is_not_slowed_by_others_failures(ops: Operators) -> None:
    device = ops.remember_device("smith")
    for _ in range(30):  # a local attacker on the same address, and beyond the name-wide limit
        with contextlib.suppress(LoginRefused, LoginThrottled):
            asyncio.run(ops.authenticate("smith", "wrong password", "127.0.0.1"))
    with pytest.raises(LoginThrottled):
        asyncio.run(ops.authenticate("smith", PASSWORD, "127.0.0.1"))
    assert asyncio.run(ops.authenticate("smith", PASSWORD, "127.0.0.1", device)).name == "smith"
    with pytest.raises(LoginRefused):  # a device token is no password, and names one operator
        asyncio.run(ops.authenticate("smith", "wrong password", "127.0.0.1", device))
    other = ops.remember_device("jones")
    with pytest.raises(LoginThrottled):
        asyncio.run(ops.authenticate("smith", PASSWORD, "127.0.0.1", other))


def test_many_addresses_guessing_one_name_are_slowed_together(ops: Operators) -> None:
    """Behind a proxy an address is cheap; past 4 x lockout_attempts the name waits for all."""
    for i in range(12):
        with contextlib.suppress(LoginRefused, LoginThrottled):
            asyncio.run(ops.authenticate("smith", "wrong password", f"10.1.0.{i}"))
    with pytest.raises(LoginThrottled):
        asyncio.run(ops.authenticate("smith", PASSWORD, "10.2.0.1"))


def test_the_throttle_table_is_bounded_and_keeps_the_keys_that_guess_most() -> None:
    throttle = LoginThrottle(free=3, ceiling=60, capacity=100)
    for _ in range(10):
        throttle.failed(("smith", "address:a"), 0.0)
    for i in range(1000):  # spraying names to evict the key that is guessing smith's password
        throttle.failed((f"n{i}", "address:a"), 1.0)
    assert len(throttle) == 100
    assert throttle.wait(("smith", "address:a"), 1.0) > 0


def test_a_new_password_ends_sessions(ops: Operators) -> None:
    token, _ = ops.open_session("smith")
    ops.set_password("smith", "a brand new password")
    assert ops.session(token) is None
    assert login(ops, "smith", "a brand new password") == "smith"


# ---- sessions --------------------------------------------------------------------------------------


def test_a_session_is_found_by_its_token_until_it_expires(ops: Operators, clock: FakeClock) -> None:
    token, session = ops.open_session("smith")
    assert session.expires_at == clock.now() + 100
    found = ops.session(token)
    assert found is not None and (found.operator, found.role) == ("smith", "operator")
    assert found.csrf == session.csrf and len(found.csrf) == 64
    clock.advance(99)
    assert ops.session(token) is not None
    clock.advance(1)
    assert ops.session(token) is None


def test_an_expired_session_is_deleted(ops: Operators, clock: FakeClock, tmp_path: Path) -> None:
    token, _ = ops.open_session("smith")
    clock.advance(101)
    assert ops.session(token) is None
    with sqlite3.connect(tmp_path / "station.db") as db:
        assert db.execute("SELECT COUNT(*) FROM console_sessions").fetchone()[0] == 0


def test_only_the_hash_of_a_session_token_is_stored(ops: Operators, tmp_path: Path) -> None:
    token, _ = ops.open_session("smith")
    with sqlite3.connect(tmp_path / "station.db") as db:
        stored = [bytes(r[0]) for r in db.execute("SELECT token_hash FROM console_sessions")]
    assert stored == [token_hash(token)]


def test_unknown_closed_and_absurd_tokens_open_nothing(ops: Operators) -> None:
    token, _ = ops.open_session("smith")
    assert ops.session(None) is None
    assert ops.session("") is None
    assert ops.session("x" * 10_000) is None
    assert ops.session(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    ops.close_session(token)
    assert ops.session(token) is None


def test_removing_an_operator_ends_their_sessions(ops: Operators) -> None:
    token, _ = ops.open_session("smith")
    ops.remove("smith")
    assert ops.session(token) is None


def test_each_session_has_its_own_csrf_token(ops: Operators) -> None:
    _, first = ops.open_session("smith")
    _, second = ops.open_session("smith")
    assert first.csrf != second.csrf


# ---- the audit log ----------------------------------------------------------------------------------


def test_the_audit_log_records_who_what_when_newest_first(ops: Operators, clock: FakeClock) -> None:
    ops.record("smith", "login")
    clock.advance(5)
    ops.record("smith", "send", "moscow:3 FLASH")
    entries = ops.audit_log()
    assert [(e.operator, e.action, e.detail) for e in entries] == [
        ("smith", "send", "moscow:3 FLASH"),
        ("smith", "login", ""),
    ]
    assert entries[0].at == clock.now()


# ---- web rules -----------------------------------------------------------------------------------------


def test_csrf_tokens_must_match_exactly() -> None:
    assert csrf_ok("a" * 64, "a" * 64)
    assert not csrf_ok("a" * 64, "b" * 64)
    assert not csrf_ok("a" * 64, None)
    assert not csrf_ok("a" * 64, "")
    assert not csrf_ok("", "")
    assert not csrf_ok(None, "a" * 64)
    assert not csrf_ok("a" * 64, ["a" * 64])


def test_a_post_from_another_origin_is_refused() -> None:
    assert same_origin(None, "127.0.0.1:7480")
    assert same_origin("http://127.0.0.1:7480", "127.0.0.1:7480")
    assert not same_origin("http://evil.example", "127.0.0.1:7480")
    assert not same_origin("http://127.0.0.1:7481", "127.0.0.1:7480")
    assert not same_origin("null", "127.0.0.1:7480")


def test_a_console_on_loopback_answers_only_loopback_host_names() -> None:
    assert host_allowed("127.0.0.1:7480", "127.0.0.1")
    assert host_allowed("localhost:7480", "127.0.0.1")
    assert not host_allowed("rebind.example:7480", "127.0.0.1")
    assert not host_allowed(None, "127.0.0.1")
    assert host_allowed("anything:80", "0.0.0.0")


def test_after_login_only_local_paths_are_followed() -> None:
    assert safe_next("/line/ab12?order=oldest") == "/line/ab12?order=oldest"
    for bad in ("//evil.example/", "http://evil.example/", "/\\evil", "/login", None, "", "x"):
        assert safe_next(bad) == "/"


def test_roles_grant_what_the_issue_says() -> None:
    for role in ("operator", "releaser", "admin"):
        assert all(allowed(role, p) for p in ("read", "send", "acknowledge", "verify", "alarm_ack"))
    assert not allowed("operator", "release") and allowed("releaser", "release")
    assert not allowed("operator", "audit") and not allowed("releaser", "audit") and allowed("admin", "audit")
    assert not allowed("nobody", "read")


# ---- settings ----------------------------------------------------------------------------------------------


def test_console_addresses_parse() -> None:
    assert parse_address("off")["enabled"] is False
    assert parse_address("127.0.0.1:0") == {"enabled": True, "host": "127.0.0.1", "port": 0}
    assert parse_address("[::1]:7480")["host"] == "::1"
    assert parse_address("7481")["port"] == 7481
    for bad in ("127.0.0.1:http", "127.0.0.1:70000", ":7480", "[::1]7480"):
        with pytest.raises(ConfigError):
            parse_address(bad)


def test_console_settings_come_from_the_console_table_then_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(
        '[station]\nlink_test_interval = 5\n[console]\naddress = "127.0.0.1:9000"\nsession_seconds = 60\n'
    )
    settings = ConsoleSettings.load(path)
    assert (settings.port, settings.session_seconds) == (9000, 60.0)
    assert ConsoleSettings.load(path, "off").enabled is False
    assert ConsoleSettings.load(tmp_path / "missing.toml") == ConsoleSettings()
    path.write_text("[console]\nsession_minutes = 5\n")
    with pytest.raises(ConfigError, match="session_minutes"):
        ConsoleSettings.load(path)
