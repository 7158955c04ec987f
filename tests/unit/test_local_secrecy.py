"""Local secrecy and the two-person rule, in process: file modes, the control socket's place,
the passphrase's minimum and its leaving the environment, the alarm command's environment, and
the station's own check of every release (the attack tests are in tests/adversarial/test_local_*)."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backchannel.cli.main import read_passphrase
from backchannel.errors import ConfigError, InvalidArgument, ReleaseRefused, UnsafeControlSocket
from backchannel.station.alarm_sinks import alarm_environment
from backchannel.station.control import ControlServer, check_private_dir, socket_path
from backchannel.station.keystore import MIN_PASSPHRASE, change_passphrase, open_keystore
from backchannel.station.operators import LoginRefused, Operators, UnknownOperator
from backchannel.station.station import CONFIG, DATABASE, KEYSTORE, Station
from backchannel.station.views import DraftView

PASS = "correct horse battery staple"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# ---- files --------------------------------------------------------------------------------


def test_init_makes_the_home_0700_and_its_files_0600_under_umask_000(tmp_path: Path, umask000: None) -> None:
    home = tmp_path / "alpha"
    Station.init(home, "alpha", PASS)
    assert mode(home) == 0o700
    assert {p.name: mode(p) for p in home.iterdir()} == {KEYSTORE: 0o600, DATABASE: 0o600}


def test_opening_a_station_tightens_what_an_older_version_or_an_editor_left_loose(tmp_path: Path) -> None:
    home = tmp_path / "alpha"
    Station.init(home, "alpha", PASS)
    (home / CONFIG).write_text("[station]\n")
    os.chmod(home / CONFIG, 0o666)
    os.chmod(home / DATABASE, 0o644)
    os.chmod(home, 0o755)
    station = Station.open(home, PASS)
    try:
        assert mode(home) == 0o700
        assert {p.name: mode(p) for p in home.iterdir()} == {
            KEYSTORE: 0o600,
            DATABASE: 0o600,
            CONFIG: 0o600,
            f"{DATABASE}-wal": 0o600,
            f"{DATABASE}-shm": 0o600,
        }
    finally:
        asyncio.run(station.close())


@pytest.mark.parametrize("short", ["", "x", "a" * (MIN_PASSPHRASE - 1)])
def test_init_refuses_a_passphrase_shorter_than_the_minimum(tmp_path: Path, short: str) -> None:
    with pytest.raises(InvalidArgument, match=f"at least {MIN_PASSPHRASE} characters"):
        Station.init(tmp_path / "alpha", "alpha", short)
    assert not (tmp_path / "alpha" / KEYSTORE).exists()
    Station.init(tmp_path / "alpha", "alpha", "a" * MIN_PASSPHRASE)


def test_the_passphrases_the_readme_and_demo_use_are_long_enough() -> None:
    for passphrase in ("washington secret", "moscow secret", "demo passphrase: use a real one", PASS):
        assert len(passphrase) >= MIN_PASSPHRASE


def test_a_changed_keystore_is_rewritten_0600_and_a_short_new_passphrase_changes_nothing(
    tmp_path: Path, umask000: None
) -> None:
    Station.init(tmp_path / "a", "alpha", PASS)
    keystore = tmp_path / "a" / KEYSTORE
    before = keystore.read_bytes()
    with pytest.raises(InvalidArgument, match="at least"):
        change_passphrase(keystore, PASS, "too short")
    assert keystore.read_bytes() == before
    change_passphrase(keystore, PASS, "a brand new passphrase")
    assert mode(keystore) == 0o600 and mode(keystore.with_suffix(".lock")) == 0o600
    assert not keystore.with_suffix(".tmp").exists()
    open_keystore(keystore, "a brand new passphrase")


def test_the_passphrase_leaves_the_environment_once_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKCHANNEL_PASSPHRASE", PASS)
    assert read_passphrase(None) == PASS
    assert "BACKCHANNEL_PASSPHRASE" not in os.environ


def test_an_alarm_command_gets_only_the_variables_it_needs() -> None:
    inherited = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "BACKCHANNEL_PASSPHRASE": PASS,
        "BACKCHANNEL_OPERATOR_PASSWORD": "duty officer password",
        "AWS_SECRET_ACCESS_KEY": "x",
        "https_proxy": "http://user:pw@proxy:3128",
    }
    env = alarm_environment({"kind": "line_down", "state": "raised", "line": "moscow"}, inherited)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "BACKCHANNEL_ALARM_KIND": "line_down",
        "BACKCHANNEL_ALARM_STATE": "raised",
        "BACKCHANNEL_ALARM_LINE": "moscow",
    }


# ---- the control socket's place -------------------------------------------------------------


def test_the_socket_is_in_the_home_when_it_fits(tmp_path: Path) -> None:
    assert socket_path(tmp_path) == tmp_path.resolve() / "control.sock"


def test_a_long_home_puts_the_socket_in_a_private_runtime_directory_never_in_tmp_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / ("x" * 120)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert socket_path(home).parent == Path("/run/user/1000/backchannel")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    assert socket_path(home).parent == Path(f"/var/tmp/backchannel-{os.getuid()}")
    monkeypatch.delenv("TMPDIR")
    assert socket_path(home).parent == Path(f"/tmp/backchannel-{os.getuid()}")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/" + "r" * 120)
    with pytest.raises(ConfigError, match="shorter --home"):
        socket_path(home)


def test_the_server_binds_0600_in_a_directory_it_makes_0700(tmp_path: Path, umask000: None) -> None:
    path = tmp_path / "rt" / "s.sock"

    async def start_and_stop() -> None:
        server = ControlServer.__new__(ControlServer)
        server._server = None
        server._client = lambda r, w: None  # type: ignore[method-assign,assignment,return-value]
        await server.start(path)
        await server.close()

    asyncio.run(start_and_stop())
    assert mode(path.parent) == 0o700 and mode(path) == 0o600


def test_a_loose_or_symlinked_socket_directory_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o700)
    os.chmod(loose, 0o755)
    with pytest.raises(UnsafeControlSocket, match=f"chmod 700 {loose}"):
        check_private_dir(loose)
    link = tmp_path / "link"
    link.symlink_to(loose)
    with pytest.raises(UnsafeControlSocket, match="symlink"):
        check_private_dir(link)


# ---- the two-person rule at the station --------------------------------------------------------


def release_line(pair: Any) -> tuple[Station, str, Operators]:
    """The inviter's line under the rule for FLASH, with operators smith, jones and brown."""
    station: Station = pair.inviter
    line = pair.inviter_line
    station.config = replace(station.config, line_release={line: "flash"})
    operators = Operators(station.store)
    operators.add("smith", "releaser", "smith's password")
    operators.add("jones", "releaser", "jones's password")
    operators.add("brown", "operator", "brown's password")
    return station, line, operators


def audit(operators: Operators) -> list[tuple[str, str]]:
    return [(e.operator, e.action) for e in reversed(operators.audit_log())]


def test_every_path_checks_the_rule_and_every_refusal_is_audited(station_pair: Any) -> None:
    station, line, operators = release_line(station_pair)
    draft = asyncio.run(station.send(line, "Launch detected.", precedence="FLASH", operator="smith"))
    assert isinstance(draft, DraftView)  # held by the two-person rule
    attempts: list[tuple[str, Any, type[Exception]]] = [
        ("ghost", lambda: station.release(draft.id, "ghost", "whatever"), UnknownOperator),
        ("jones", lambda: station.release(draft.id, "jones", None), InvalidArgument),  # no password
        ("jones", lambda: station.release(draft.id, "jones", "wrong"), LoginRefused),
        ("brown", lambda: station.release_as(draft.id, "brown", via="console"), ReleaseRefused),
        ("smith", lambda: station.release_as(draft.id, "smith", via="console"), ReleaseRefused),
    ]
    for _, attempt, error in attempts:
        with pytest.raises(error):
            asyncio.run(attempt())
    assert [d.id for d in station.drafts()] == [draft.id]
    sent = asyncio.run(station.release(draft.id, "jones", "jones's password"))
    assert sent.precedence == "FLASH" and station.drafts() == []
    assert audit(operators) == [(who, "release_refused") for who, _, _ in attempts] + [("jones", "release")]
    detail = operators.audit_log(1)[0].detail
    assert detail == f"{line}:{sent.seq} FLASH draft {draft.id}, drafted by smith (via control socket)"
