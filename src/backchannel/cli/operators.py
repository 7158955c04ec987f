"""CLI commands for the console's operators: ``operator add|list|remove|password``, and ``audit``.

They work on the station directory directly (the station need not run, and a running one
sees the change at once: it is the same database). Whoever can write the station directory
can already drive the station through its control socket, so no passphrase is asked. Each
change is written to the audit log as ``cli:$USER``.

The password comes from ``--password-file FILE``, else ``$BACKCHANNEL_OPERATOR_PASSWORD``,
else a hidden prompt (asked twice).

``backchannel release`` asks the *releasing* operator's password (:func:`read_release_password`)
from ``--password-file FILE`` (``-``: one line of stdin) or a hidden prompt on the terminal;
deliberately not from an environment variable, which would let one person's shell release as
the second operator every time without that person being there.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from backchannel.cli import render
from backchannel.cli.home import require_station
from backchannel.errors import InvalidArgument
from backchannel.station.operators import ROLES, Operators
from backchannel.station.station import DATABASE
from backchannel.station.store import Store

PASSWORD_ENV = "BACKCHANNEL_OPERATOR_PASSWORD"


def _open(home: Path) -> tuple[Store, Operators]:
    require_station(home)
    store = Store.open(home / DATABASE)
    return store, Operators(store)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise InvalidArgument(f"cannot read the password file {password_file}: {exc.strerror}") from None
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise InvalidArgument(
            f"no password: give --password-file FILE, set {PASSWORD_ENV}, or run in a terminal"
        )
    value: str = click.prompt("Password for the operator", hide_input=True, confirmation_prompt=True)
    return value


def read_release_password(operator: str, password_file: Path | None) -> str:
    """The releasing operator's console password: a file, ``-`` for stdin, or a hidden prompt."""
    if password_file is not None and str(password_file) == "-":
        return sys.stdin.readline().rstrip("\r\n")
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise InvalidArgument(f"cannot read the password file {password_file}: {exc.strerror}") from None
    if not sys.stdin.isatty():
        raise InvalidArgument(
            f"releasing takes {operator}'s console password: run in a terminal, or give "
            "--password-file FILE (- reads it from stdin)"
        )
    value: str = click.prompt(f"Console password of {operator}", hide_input=True)
    return value


def _emit(as_json: bool, value: Any, text: str) -> None:
    if as_json:
        click.echo(json.dumps(value, indent=2, sort_keys=True))
    else:
        render.console.print(text, markup=False)


password_file_option = click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Read the password from this file (else ${PASSWORD_ENV} or a prompt).",
)
json_flag = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def register(cli: click.Group) -> None:
    """Attach ``operator ...`` to the CLI (called once by ``cli.main``)."""

    @cli.group()
    def operator() -> None:
        """Operator accounts for the console: who may log in, and in what role."""

    @operator.command("add")
    @click.argument("name")
    @click.option(
        "--role",
        type=click.Choice(ROLES),
        default="operator",
        show_default=True,
        help="operator: read, send, acknowledge; releaser: also release held messages; admin: all.",
    )
    @password_file_option
    @json_flag
    @click.pass_obj
    def operator_add(state: Any, name: str, role: str, password_file: Path | None, as_json: bool) -> None:
        """Create the operator NAME, who logs in to the console with a password."""
        store, operators = _open(state.home)
        try:
            view = operators.add(name, role, _read_password(password_file))
            operators.record(_who(), "operator_add", f"{name} as {role}")
        finally:
            store.close()
        _emit(as_json, view.to_json(), f"Operator {name} added as {role}.")

    @operator.command("list")
    @json_flag
    @click.pass_obj
    def operator_list(state: Any, as_json: bool) -> None:
        """The operators of this station, their roles and last logins."""
        store, operators = _open(state.home)
        try:
            views = operators.all()
        finally:
            store.close()
        if as_json:
            _emit(True, [v.to_json() for v in views], "")
            return
        if not views:
            render.console.print("No operators yet: backchannel operator add NAME --role admin")
        for v in views:
            locked = "  LOCKED" if v.locked_until else ""
            last = render.when(v.last_login) if v.last_login else "never"
            render.console.print(f"{v.name:24} {v.role:9} last login {last}{locked}", markup=False)

    @operator.command("remove")
    @click.argument("name")
    @json_flag
    @click.pass_obj
    def operator_remove(state: Any, name: str, as_json: bool) -> None:
        """Remove the operator NAME; their console sessions end at once."""
        store, operators = _open(state.home)
        try:
            operators.remove(name)
            operators.record(_who(), "operator_remove", name)
        finally:
            store.close()
        _emit(as_json, {"name": name, "removed": True}, f"Operator {name} removed.")

    @operator.command("password")
    @click.argument("name")
    @password_file_option
    @json_flag
    @click.pass_obj
    def operator_password(state: Any, name: str, password_file: Path | None, as_json: bool) -> None:
        """Set a new password for NAME: lifts a lockout and ends their sessions."""
        store, operators = _open(state.home)
        try:
            operators.set_password(name, _read_password(password_file))
            operators.record(_who(), "operator_password", name)
        finally:
            store.close()
        _emit(as_json, {"name": name, "password_set": True}, f"New password set for {name}.")

    @cli.command("audit")
    @click.option("--limit", type=int, default=50, show_default=True, help="How many entries, newest first.")
    @json_flag
    @click.pass_obj
    def audit(state: Any, limit: int, as_json: bool) -> None:
        """The audit log: logins, releases and refused releases, operator changes (newest first)."""
        store, operators = _open(state.home)
        try:
            entries = operators.audit_log(max(1, min(limit, 10_000)))
        finally:
            store.close()
        if as_json:
            _emit(True, [e.to_json() for e in entries], "")
            return
        if not entries:
            render.console.print("The audit log is empty.")
        for e in entries:  # names and details may hold what someone typed at the login form
            head = render.head(render.when(e.at), render.cell(e.operator, "bold"), render.cell(e.action))
            if e.detail:  # wrapped under its entry, whole, at any width
                head.append("\n").append_text(render.wrapped(e.detail))
            render.console.print(head)
