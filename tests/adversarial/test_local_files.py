"""Attack: a local user reads the station directory.

Another account on the station's machine lists and reads whatever the station leaves
readable. Under the usual umask (022), and a careless one (000), the station once wrote its
home 0755 and its files 0644: the operators' Argon2id hashes, the audit log, drafts, console
session and CSRF tokens, the line metadata, and exports written 0644 beside them.

The defence: the station directory is 0700 and every file in it 0600 whatever the umask
(``station.private``); the CLI writes exports and invitation files 0600. The test runs a
realistic day under each umask (init, config, operators, station run with the console, invite
and accept, a message sent and acknowledged, a console login, transcript exports) and checks
every file and directory the stations and the CLI wrote, while running and after the stop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.console import add_operator, http_login
from support.figures import figure
from support.local import loose_modes
from support.relays import start_relay
from support.stations import StationProcess, pair, wait_until


@pytest.fixture(params=[0o000, 0o022], ids=["umask000", "umask022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Every process the test starts (CLI, stations, relay) inherits this umask."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_a_local_user_cannot_read_anything_the_station_writes(tmp_path: Path, umask: int) -> None:
    relay = start_relay(tmp_path)
    alpha = StationProcess(tmp_path, "alpha", console=True)
    bravo = StationProcess(tmp_path, "bravo")
    # The operator writes the config by hand (0666 or 0644 under this umask): the station tightens it.
    (alpha.home / "station.toml").write_text("[station]\nlink_test_interval = 3600\n")
    add_operator(alpha, "chief", "admin")
    outside = tmp_path / "operator-files"
    outside.mkdir(mode=0o700)
    try:
        alpha.start()
        bravo.start()
        a_line, b_line = pair(alpha, bravo, relay.url)
        spare = alpha.cli("invite", "--relay", relay.url, "--out", str(outside / "invitation.txt"))
        assert spare.returncode == 0, spare.stderr
        sent = alpha.cli("send", a_line, "The weekly test.", "--wait", "delivered", "--json")
        assert sent.returncode == 0, sent.stderr
        seq = json.loads(sent.stdout)["seq"]
        assert bravo.cli("ack", b_line, str(seq), "--operator", "ivanova").returncode == 0
        wait_until(
            "the acknowledgement to come back",
            lambda: alpha.call("message", line=a_line, seq=seq, direction="out")["status"] == "acknowledged",
        )
        http_login(alpha, "chief")  # a console session: its token and CSRF token land in the database
        for fmt in ("json", "html"):
            out = outside / f"export.{fmt}"
            result = alpha.cli("transcript", "export", a_line, "--format", fmt, "--out", str(out))
            assert result.returncode == 0, result.stderr
        assert (alpha.home / "station.db-wal").exists(), "the run should have left a WAL to check"

        running_checked, running = loose_modes([alpha.home, bravo.home, *outside.iterdir()])
    finally:
        alpha.stop()
        bravo.stop()
        relay.stop()
    stopped_checked, stopped = loose_modes([alpha.home, bravo.home, *outside.iterdir()])
    figure(f"files and directories checked (umask {umask:03o})", running_checked + stopped_checked, "entries")
    figure(f"readable by another local user (umask {umask:03o})", len(set(running + stopped)), "entries")
    assert running_checked >= 12 and stopped_checked >= 10
    assert not running, "while running:\n" + "\n".join(running)
    assert not stopped, "after the stop:\n" + "\n".join(stopped)
