"""Every command pointed at a missing or half-made station directory: one line, no traceback.

The line names what is missing and the command that creates a station (`init`), never "start
it with `station run`", which for a missing home only leads to the next error. The commands are
found by walking the CLI, so a command added later is covered without editing this test; the
few that need no station (they create one, run a relay, or verify an export with public keys
only) are listed and excluded by name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from backchannel.cli.main import cli, main

from support.figures import figure

NEEDS_NO_STATION = {"init", "relay serve", "relay pin", "demo", "completion", "transcript verify-export"}
ARGUMENT_VALUES = {"seq": "1", "invitation": "bc1-x", "relay_url": "ws://127.0.0.1:9", "shell": "bash"}


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        elif " ".join((*prefix, name)) not in NEEDS_NO_STATION:
            yield (*prefix, name)


def arguments(path: tuple[str, ...], tmp_path: Path) -> list[str]:
    """The command's required arguments and options, filled with harmless values."""
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    args: list[str] = []
    for param in command.params:
        if isinstance(param, click.Argument) and param.required:
            args.append(ARGUMENT_VALUES.get(param.name or "", "x"))
        elif isinstance(param, click.Option) and param.required:
            args += [param.opts[0], str(tmp_path / "out")]
    return args


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["backchannel", *argv])
    monkeypatch.setenv("BACKCHANNEL_PASSPHRASE", "a long enough passphrase")
    with pytest.raises(SystemExit) as exited:
        main()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


ALL = list(commands())


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_a_missing_home_is_one_line_naming_init(
    path: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "no-such-station"
    code, err = run(["--home", str(home), *path, *arguments(path, tmp_path)], capsys, monkeypatch)
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"there is no station directory {home}" in err and "init --name" in err, err
    assert "station run" not in err, err
    assert not home.exists()  # nothing half-made left behind by the attempt


@pytest.mark.parametrize(
    "command", [("station", "run", "--console", "off"), ("lines",), ("operator", "list")]
)
def test_a_half_made_home_says_what_is_missing(
    command: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    code, err = run(["--home", str(empty), *command], capsys, monkeypatch)
    assert code == 1 and "has no keystore.bcks" in err and "init --name" in err, err
    (empty / "keystore.bcks").write_bytes(b"")  # a keystore without its database
    code, err = run(["--home", str(empty), *command], capsys, monkeypatch)
    assert code == 1 and "station.db is missing" in err and "Traceback" not in err, err


def test_every_command_was_covered() -> None:
    figure("commands checked against a missing home", len(ALL), "commands")
    assert len(ALL) >= 25
