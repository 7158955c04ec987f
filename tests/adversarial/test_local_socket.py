"""Attack: a local user plants the station's control socket.

The CLI finds its station through a Unix socket. When the station directory's path was too
long for a socket address, both the station and the CLI used ``/tmp/backchannel-<hash>.sock``,
a name anyone can compute and anyone can create in ``/tmp``: a local user who planted it
first was shown to the CLI as the station (its own safety number) and was handed the text of
every ``send``.

The defence (``station.control``): the socket lives in the station directory (0700) or, when
that path is too long, in a 0700 directory of this user's own (``$XDG_RUNTIME_DIR/backchannel``
or ``$TMPDIR/backchannel-<uid>``); both the station and the CLI refuse a socket directory that
is a symlink, belongs to someone else, or that others can write, naming the fix. The CLI never
looks in ``/tmp`` for a ``backchannel-<hash>.sock``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import stations
from support.figures import figure
from support.local import PlantedSocket, private_tmpdir
from support.stations import StationProcess, cli

SECRET = "Our ambassador leaves at dawn; the channel is compromised."


@pytest.fixture
def tmpdir_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``$TMPDIR`` and no ``$XDG_RUNTIME_DIR`` for every process the test starts."""
    with private_tmpdir() as path:
        monkeypatch.setitem(stations.ENV, "TMPDIR", str(path))
        monkeypatch.delitem(stations.ENV, "XDG_RUNTIME_DIR", raising=False)
        yield path


def long_home_station(tmp_path: Path) -> StationProcess:
    """A station whose directory path is too long for a Unix socket address (over 100 bytes)."""
    station = StationProcess(tmp_path / ("a-rather-long-directory-name-" * 3), "washington")
    assert len(str(station.home.resolve() / "control.sock")) > 107
    return station


def test_the_cli_never_talks_to_a_control_socket_planted_in_tmp(tmp_path: Path, tmpdir_env: Path) -> None:
    station = long_home_station(tmp_path)
    digest = hashlib.sha256(str(station.home.resolve()).encode()).hexdigest()[:16]
    planted = PlantedSocket(Path("/tmp") / f"backchannel-{digest}.sock")  # the name the old CLI used
    try:
        # The station is not running yet: the CLI must say so, not talk to the planted socket.
        before = station.cli("send", "moscow", SECRET)
        assert before.returncode == 1 and "not running" in before.stderr, before.stderr
        station.start()
        lines = station.cli("lines", "--json")
        assert lines.returncode == 0 and json.loads(lines.stdout) == [], lines.stderr
        after = station.cli("send", "moscow", SECRET, "--json")  # the real station answers: no such line
        assert json.loads(after.stderr)["error"]["code"] == "unknown_line", after.stderr
    finally:
        station.stop()
        planted.close()
    figure("connections the planted socket got", planted.connections, "connections")
    figure("bytes the planted socket got", len(planted.received), "bytes")
    assert planted.connections == 0 and SECRET.encode() not in planted.received


def test_a_socket_directory_others_can_write_or_another_user_owns_is_refused(
    tmp_path: Path, tmpdir_env: Path
) -> None:
    station = long_home_station(tmp_path)
    runtime = tmpdir_env / f"backchannel-{os.getuid()}"
    refusals = 0

    def refused(fix: str) -> None:
        nonlocal refusals
        result = station.cli("lines", "--json")
        error = json.loads(result.stderr)["error"] if result.stderr.startswith("{") else {}
        assert error.get("code") == "unsafe_control_socket", result.stderr
        assert fix in error["message"], error["message"]
        try:  # the station refuses to serve there too, and says why (instead of running)
            run = cli(station.home, "station", "run", "--console", "off", timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the station ran with its control socket in an unsafe directory")
        assert run.returncode == 1 and fix in run.stderr and "Traceback" not in run.stderr, run.stderr
        refusals += 1

    runtime.mkdir(mode=0o700)
    os.chmod(runtime, 0o777)  # anyone may create or replace entries in it
    refused("chmod 700")
    os.chmod(runtime, 0o700)
    runtime.rmdir()
    target = tmpdir_env / "elsewhere"
    target.mkdir(mode=0o700)
    runtime.symlink_to(target)  # a symlink: it could point anywhere later
    refused("symlink")
    runtime.unlink()
    if os.geteuid() == 0:  # only root can make a directory another user's, as that user would
        runtime.mkdir(mode=0o700)
        os.chown(runtime, 65534, 65534)
        refused("belongs to uid 65534")
    figure("unsafe control socket directories refused", refusals, "directories")
    assert refusals >= 2
