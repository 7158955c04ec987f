"""What every ``backchannel`` command shares: the station directory it acts on, the control
socket call, ``--json`` and the passphrase, kept here so the command modules (setup in
:mod:`backchannel.cli.main`, pairing and circuits in :mod:`backchannel.cli.lines`, messages in
:mod:`backchannel.cli.messages`) read the same way and do not import each other.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from backchannel.cli.home import require_station
from backchannel.errors import InvalidArgument

F = TypeVar("F", bound=Callable[..., Any])
PASSPHRASE_ENV = "BACKCHANNEL_PASSPHRASE"
DEFAULT_HOME = Path(os.environ.get("BACKCHANNEL_HOME", "~/.backchannel")).expanduser()


class State:
    def __init__(self, home: Path, debug: bool) -> None:
        self.home = home
        self.debug = debug

    def call(self, method: str, **params: Any) -> Any:
        from backchannel.station.control import ControlClient

        require_station(self.home)  # "no station here" rather than "not running" for a wrong --home
        with ControlClient(self.home, timeout=float(params.get("timeout", 30)) + 30) as client:
            return client.call(method, **params)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def emit(as_json: bool, value: Any, human: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(value, indent=2, sort_keys=True))
    else:
        human(value)


def read_passphrase(
    passphrase_file: Path | None, confirm: bool = False, prompt: str = "Passphrase", use_env: bool = True
) -> str:
    """From a file, then $BACKCHANNEL_PASSPHRASE, then a hidden prompt on a terminal.

    The variable is removed from this process's environment as it is read, so nothing the
    station starts later (alarm commands, anything a library spawns) inherits the passphrase.
    """
    env = os.environ.pop(PASSPHRASE_ENV, None) if use_env else None
    if passphrase_file is not None:
        try:
            return passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise InvalidArgument(
                f"cannot read the passphrase file {passphrase_file}: {exc.strerror}"
            ) from None
    if env:
        return env
    if not sys.stdin.isatty():
        raise InvalidArgument(
            f"no passphrase: give --passphrase-file FILE, set {PASSPHRASE_ENV}, or run in a terminal"
            if use_env
            else "no new passphrase: give --new-passphrase-file FILE, or run in a terminal"
        )
    value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the keystore passphrase from this file (else $BACKCHANNEL_PASSPHRASE or a prompt).",
)


pass_state = click.make_pass_decorator(State)
