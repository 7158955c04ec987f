"""The ``backchannel`` command.

Every action of a station is a subcommand. Commands that act on a line talk to the running
station through its control socket (``backchannel station run`` must be running); ``init``,
``station run``, ``relay serve`` and ``demo`` start things themselves. Every command takes
``--json`` for machines. Errors print one line naming the problem and what to do; ``--debug``
shows the traceback as well.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from backchannel.cli import duty, render
from backchannel.cli import record as record_commands
from backchannel.cli.home import require_station
from backchannel.errors import BackchannelError, InvalidArgument
from backchannel.station.private import private_umask, write_private

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_HOME,
    show_default=True,
    help="The station directory (or $BACKCHANNEL_HOME).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="backchannel")
@click.pass_context
def cli(ctx: click.Context, home: Path, debug: bool) -> None:
    """backchannel: a secure, discreet, always-on line between two stations."""
    private_umask()  # whatever this command writes (station files, exports) is for this user only
    ctx.obj = State(home.expanduser(), debug)


pass_state = click.make_pass_decorator(State)


# ---- station setup -----------------------------------------------------------------------


@cli.command()
@click.option("--name", required=True, help="This station's name, shown to the other side (e.g. washington).")
@passphrase_option
@json_option
@pass_state
def init(state: State, name: str, passphrase_file: Path | None, as_json: bool) -> None:
    """Create a new station: identity keys, keystore and database."""
    from backchannel.station.station import Station

    Station.init(state.home, name, read_passphrase(passphrase_file, confirm=True))
    emit(
        as_json,
        {"home": str(state.home), "name": name},
        lambda v: render.console.print(
            f"Station [bold]{render.lit(name)}[/] created in {render.lit(state.home)}"
        ),
    )


@cli.command()
@passphrase_option
@click.option(
    "--new-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the new passphrase from this file (else it is asked twice on the terminal).",
)
@json_option
@pass_state
def passphrase(
    state: State, passphrase_file: Path | None, new_passphrase_file: Path | None, as_json: bool
) -> None:
    """Change the keystore passphrase (the station may keep running; the new one is for next start)."""
    from backchannel.station.keystore import MIN_PASSPHRASE, change_passphrase, check_new_passphrase
    from backchannel.station.station import KEYSTORE

    require_station(state.home)
    keystore = state.home / KEYSTORE
    old = read_passphrase(passphrase_file, prompt="Current passphrase")
    new = read_passphrase(
        new_passphrase_file,
        confirm=True,
        prompt=f"New passphrase (at least {MIN_PASSPHRASE} characters)",
        use_env=False,
    )
    check_new_passphrase(new)
    change_passphrase(keystore, old, new)
    emit(
        as_json,
        {"home": str(state.home), "changed": True},
        lambda v: render.console.print(
            f"Passphrase changed for the station in {state.home}; use the new one from the next start."
        ),
    )


@cli.group()
def station() -> None:
    """Run this station."""


@station.command("run")
@passphrase_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Station config file (default: station.toml in the station directory).",
)
@click.option("--relay", "relays", multiple=True, help="Default relay for new invitations (repeatable).")
@click.option("--link-test-interval", type=float, help="Seconds between link tests (default 3600).")
@click.option("--alarm-command", help="Run this command with each alarm as JSON on stdin.")
@click.option("--alarm-webhook", help="POST each alarm as JSON to this URL.")
@click.option("--log-level", default="WARNING", show_default=True)
@click.option(
    "--console",
    "console_address",
    metavar="HOST:PORT|off",
    help="Serve the operator console here (default 127.0.0.1:7480; port 0 picks a free one).",
)
@click.option(
    "--insecure-plain",
    is_flag=True,
    default=None,
    help="Allow plain ws:// relays beyond loopback (frames and relay tokens in clear; allow_plain).",
)
@pass_state
def station_run(
    state: State,
    passphrase_file: Path | None,
    config_file: Path | None,
    relays: tuple[str, ...],
    link_test_interval: float | None,
    alarm_command: str | None,
    alarm_webhook: str | None,
    log_level: str,
    console_address: str | None,
    insecure_plain: bool | None,
) -> None:
    """Run the station: keep its lines connected, send and receive, serve the CLI."""
    import shlex

    from backchannel.station.config import StationConfig
    from backchannel.station.runner import main_run

    config = StationConfig.load(
        config_file or state.home / "station.toml",
        required=config_file is not None,
        relays=list(relays) or None,
        link_test_interval=link_test_interval,
        alarm_command=shlex.split(alarm_command) if alarm_command else None,
        alarm_webhook=alarm_webhook,
        allow_plain=insecure_plain,
    )
    from backchannel.console.server import ConsoleService

    console = ConsoleService.from_options(
        config_file or state.home / "station.toml", console_address, required=config_file is not None
    )
    require_station(state.home)  # (after the config's own errors) before the passphrase, not a traceback
    passphrase = read_passphrase(passphrase_file)
    main_run(state.home, passphrase, config, log_level.upper(), services=[console] if console else [])


@station.command("wait")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait.")
@pass_state
def station_wait(state: State, timeout: float) -> None:
    """Wait until the station answers on its control socket (after `station run &`)."""
    import time

    from backchannel.errors import StationNotRunning, TransportError
    from backchannel.station.control import ControlClient

    require_station(state.home)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with ControlClient(state.home, timeout=5) as client:
                client.call("ping")
            return
        except (StationNotRunning, TransportError):
            if time.monotonic() > deadline:
                raise StationNotRunning(
                    f"the station in {state.home} did not answer within {timeout:g} s; "
                    "see what `backchannel station run` printed"
                ) from None
            time.sleep(0.1)


@cli.group()
def relay() -> None:
    """Run a relay."""


@relay.command("serve")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Relay config file (TOML with a [relay] table).",
)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 7400; 0 picks a free one).")
@click.option("--db", "db", help="SQLite database path (default relay.db), or a postgresql:// URL.")
@click.option(
    "--tls",
    type=click.Choice(["auto", "on", "off"]),
    help="Serve TLS (default auto: on unless listening on loopback).",
)
@click.option("--tls-cert", help="PEM certificate to serve (default: a self-signed one made at first start).")
@click.option("--tls-key", help="PEM private key of --tls-cert.")
def relay_serve(
    config_file: Path | None,
    host: str | None,
    port: int | None,
    db: str | None,
    tls: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Serve mailboxes: store-and-forward of sealed frames it cannot read."""
    from backchannel.relay.config import RelayConfig
    from backchannel.relay.server import main_serve

    config = RelayConfig.load(
        str(config_file) if config_file else None,
        host=host,
        port=port,
        db_path=db,
        tls=tls,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    main_serve(config)


@relay.command("pin")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Relay config file (TOML with a [relay] table).",
)
@click.option("--db", "db", help="The relay's SQLite database (its self-signed certificate lives beside it).")
@click.option("--tls-cert", help="A PEM certificate: the relay's, or a TLS-terminating proxy's.")
def relay_pin(config_file: Path | None, db: str | None, tls_cert: str | None) -> None:
    """Print the pin stations name a relay by: SHA-256 of its certificate's public key.

    Without --tls-cert, the relay's own certificate (the self-signed one is made now if the
    relay has none yet, exactly as `relay serve` would at its first start).
    """
    from backchannel.proto.relay_pin import pin_text
    from backchannel.relay.certificate import certificate_files
    from backchannel.relay.config import RelayConfig
    from backchannel.tls import certificate_pin

    if tls_cert:
        cert = Path(tls_cert)
    else:
        config = RelayConfig.load(str(config_file) if config_file else None, db_path=db)
        cert, _ = certificate_files(config)
    click.echo(pin_text(certificate_pin(cert)))


# ---- pairing -----------------------------------------------------------------------------


@cli.command()
@click.option(
    "--relay",
    "relays",
    multiple=True,
    help="A relay for the line: one circuit each (repeat for several; default from config).",
)
@click.option("--name", help="Local name for the new line (default: the other station's name).")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="Also write the invitation to this file."
)
@json_option
@pass_state
@click.option(
    "--on-record/--off-record",
    "on_record",
    default=True,
    show_default=True,
    help="On the record: everything signed, the transcript provable to third parties. Off: deniable.",
)
def invite(
    state: State, relays: tuple[str, ...], name: str | None, out: Path | None, on_record: bool, as_json: bool
) -> None:
    """Create an invitation to carry to the other station out of band."""
    result = state.call("invite", relay=list(relays) or None, name=name, on_record=on_record)
    if out is not None:
        write_private(out, (result["text"] + "\n").encode("utf-8"))

    def human(v: dict[str, Any]) -> None:
        render.console.print("Invitation (a secret: carry it to the other station by hand, use it once):")
        click.echo(v["text"])
        if out is not None:
            render.console.print(f"Also written to {render.lit(out)}.")

    emit(as_json, result, human)


@cli.command()
@click.argument("invitation")
@click.option("--name", help="Local name for the new line (default: the inviter's name).")
@json_option
@pass_state
def accept(state: State, invitation: str, name: str | None, as_json: bool) -> None:
    """Accept an INVITATION (the bc1-... text, a file holding it, or - for stdin)."""
    if invitation == "-":
        text = sys.stdin.read()
    elif invitation.strip().startswith("bc1-"):
        text = invitation
    elif Path(invitation).is_file():
        text = Path(invitation).read_text(encoding="utf-8")
    else:
        raise InvalidArgument(f"{invitation[:40]!r} is neither an invitation (bc1-...) nor a readable file")
    result = state.call("accept", text=text, name=name)
    emit(
        as_json,
        result,
        lambda v: render.console.print(
            f"Line [bold]{render.lit(v['name'])}[/] opened with station {render.lit(v['peer_name'])}. "
            f"Compare safety numbers: backchannel verify {render.lit(v['name'])}"
        ),
    )


@cli.command()
@click.argument("line")
@click.option(
    "--confirm",
    is_flag=True,
    help="Record that you compared the number with the other operator and it matched.",
)
@json_option
@pass_state
def verify(state: State, line: str, confirm: bool, as_json: bool) -> None:
    """Show the safety number of LINE to read aloud; --confirm marks the line verified."""
    result = state.call("verify", line=line, confirm=confirm)

    def human(v: dict[str, Any]) -> None:
        render.console.print(
            f"Safety number of line [bold]{render.lit(v['line'])}[/] (with {render.lit(v['peer_name'])}):"
        )
        groups = v["grouped"].split()
        for i in range(0, len(groups), 4):
            render.console.print("    [bold]" + "  ".join(groups[i : i + 4]) + "[/]")
        for sentence in duty.verification(v):  # each side's state, never "both" unless known
            render.console.print(sentence)

    emit(as_json, result, human)


@cli.command()
@json_option
@pass_state
def lines(state: State, as_json: bool) -> None:
    """List this station's lines."""
    result = state.call("lines")
    emit(as_json, result, lambda v: render.console.print(render.lines_table(v)))


# ---- messages ----------------------------------------------------------------------------


@cli.command()
@click.argument("line")
@click.argument("text", required=False)
@click.option(
    "--precedence",
    "-p",
    type=click.Choice(["FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE"], case_sensitive=False),
    default="ROUTINE",
    show_default=True,
)
@click.option(
    "--wait",
    type=click.Choice(["relayed", "delivered", "acknowledged"]),
    help="Return only once the message reached this status.",
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to --wait.")
@click.option(
    "--operator",
    default=lambda: os.environ.get("USER", "operator"),
    help="Who drafts it (matters on lines under the two-person rule; default $USER).",
)
@click.option(
    "--id",
    "key",
    metavar="KEY",
    help="Idempotency key: a retry with the same KEY returns the first message instead of a second one.",
)
@json_option
@pass_state
def send(
    state: State,
    line: str,
    text: str | None,
    precedence: str,
    wait: str | None,
    timeout: float,
    operator: str,
    key: str | None,
    as_json: bool,
) -> None:
    """Send TEXT on LINE (reads the text from stdin when TEXT is omitted).

    With --id KEY a script can retry a send whose answer it never got (the station was
    stopped mid-request): the same KEY, line and text return the message already stored.
    """
    require_station(state.home)  # before the operator types a message for a station that is not there
    if text is None:
        text = sys.stdin.read().rstrip("\n")
    duty.warn_unverified(state.call, line, precedence.upper())
    result = state.call(
        "send",
        line=line,
        text=text,
        precedence=precedence.upper(),
        wait=wait,
        timeout=timeout,
        operator=operator,
        idempotency_key=key,
    )

    def human(v: dict[str, Any]) -> None:
        if v.get("status") == "awaiting release":
            render.console.print(
                render.lit(
                    f"Held as draft {v['id']} [{v['precedence']}]: line {v['line']} needs a "
                    f"second operator to release it (backchannel release {v['id']})."
                )
            )
        else:
            render.console.print(duty.sent(v))

    emit(as_json, result, human)


@cli.command()
@click.argument("line", required=False)
@json_option
@pass_state
def drafts(state: State, line: str | None, as_json: bool) -> None:
    """Messages awaiting release by a second operator (the two-person rule)."""
    result = state.call("drafts", line=line)
    emit(as_json, result, lambda v: render.console.print(render.drafts_table(v)))


@cli.command()
@click.argument("draft_id")
@click.option(
    "--operator",
    default=lambda: os.environ.get("USER", "operator"),
    help="Who releases it: a releaser or admin, not the drafter (default $USER).",
)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Read the operator's console password from this file (- for stdin); else it is asked.",
)
@json_option
@pass_state
def release(state: State, draft_id: str, operator: str, password_file: Path | None, as_json: bool) -> None:
    """Release held message DRAFT_ID: it is sealed and sent now.

    The releasing operator proves who they are with their console password, asked on the
    terminal (or read from --password-file). Every release and refusal is in the audit log.
    """
    from backchannel.cli.operators import read_release_password

    require_station(state.home)  # before asking a password for a station that is not there
    password = read_release_password(operator, password_file)
    result = state.call("release", draft_id=draft_id, operator=operator, password=password)
    emit(as_json, result, lambda v: render.console.print(render.message_line(v, "Released and sent ")))


@cli.command()
@click.argument("line", required=False)
@click.option("--unacked", is_flag=True, help="Only messages no operator has acknowledged.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--refs", is_flag=True, help="Print only the references, one a line (for scripts and `ack`).")
@json_option
@pass_state
def inbox(state: State, line: str | None, unacked: bool, limit: int, refs: bool, as_json: bool) -> None:
    """Messages received (newest first), each with its reference (moscow:in/4) for `ack`."""
    result = state.call("inbox", line=line, unacknowledged=unacked, limit=limit)
    if refs and not as_json:
        for m in result:
            click.echo(render.visible(m["ref"]))
        return
    emit(as_json, result, lambda v: render.console.print(render.messages_table(v, "Inbox (newest first)")))


@cli.command()
@click.argument("line", required=False)
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@pass_state
def outbox(state: State, line: str | None, limit: int, as_json: bool) -> None:
    """Messages sent (newest first), with their receipts."""
    result = state.call("outbox", line=line, limit=limit)
    emit(as_json, result, lambda v: render.console.print(render.messages_table(v, "Sent (newest first)")))


@cli.command()
@click.argument("messages", nargs=-1, required=True, metavar="LINE:in/SEQ...")
@click.option(
    "--operator", default=lambda: os.environ.get("USER", "operator"), help="Who read it (default: $USER)."
)
@json_option
@pass_state
def ack(state: State, messages: tuple[str, ...], operator: str, as_json: bool) -> None:
    """Acknowledge received messages as read by --operator.

    Each is given as `inbox` prints it (moscow:in/4); `LINE SEQ` (moscow 4) works too.
    `backchannel ack $(backchannel inbox moscow --unacked --refs)` acknowledges what is listed.
    """
    from backchannel.cli.refs import received_ref

    require_station(state.home)
    if len(messages) == 2 and messages[1].isdigit() and ":" not in messages[0]:
        refs = [received_ref(messages[0], messages[1])]  # the older LINE SEQ form
    else:
        refs = [received_ref(m) for m in messages]
    results = [state.call("ack", line=r.line, seq=r.seq, operator=operator) for r in refs]

    def human(done: list[dict[str, Any]]) -> None:
        for v in done:
            render.console.print(render.lit(duty.acknowledged(v)))

    emit(as_json, results[0] if len(results) == 1 else results, lambda v: human(results))


@cli.command()
@click.argument("message", metavar="LINE:in/SEQ|LINE:out/SEQ")
@click.argument("seq", required=False, metavar="[SEQ]")
@json_option
@pass_state
def show(state: State, message: str, seq: str | None, as_json: bool) -> None:
    """One message in full, with its receipts: moscow:in/4 (received) or moscow:out/16 (sent).

    A bare number (moscow 4, moscow:4) is taken when only one direction has that message.
    """
    from backchannel.cli.refs import FORMS, parse_ref
    from backchannel.errors import UnknownMessage

    require_station(state.home)  # a wrong --home is named before a mistyped reference
    ref = parse_ref(message, seq)
    if ref.direction is not None:
        result = state.call("message", line=ref.line, seq=ref.seq, direction=ref.direction)
    else:
        found = []
        for direction in ("in", "out"):
            with contextlib.suppress(UnknownMessage):
                found.append(state.call("message", line=ref.line, seq=ref.seq, direction=direction))
        if len(found) != 1:
            which = " and ".join(m["ref"] for m in found) if found else "no message"
            raise InvalidArgument(
                f"{message}{' ' + seq if seq else ''} is ambiguous ({which}); give {FORMS}"
                if found
                else f"there is no message {ref.seq} on line {ref.line!r} in either direction"
            )
        result = found[0]
    emit(as_json, result, lambda v: render.console.print(render.message_block(v)))


@cli.command()
@click.argument("line", required=False)
@click.option("--limit", type=int, default=20, show_default=True)
@click.option(
    "--watch",
    is_flag=True,
    help="Refresh in place every second (Ctrl-C to stop); in a pipe, print a new status every 2 s.",
)
@json_option
@pass_state
def status(state: State, line: str | None, limit: int, watch: bool, as_json: bool) -> None:
    """Lines, circuits, open alarms, received messages, and sent ones with their receipts."""

    def gather() -> dict[str, Any]:
        lines_data = [state.call("line", name=line)] if line else state.call("lines")
        return {
            "lines": lines_data,
            "received": state.call("inbox", line=line, limit=limit),
            "messages": state.call("outbox", line=line, limit=limit),
            "alarms": state.call("alarms"),
            "rejected": state.call("counters"),
        }

    if watch and not as_json:
        import time

        from rich.live import Live

        if not render.console.is_terminal:  # a pipe or a log: one whole status after another
            while True:
                render.console.print(render.status_view(gather()))
                click.echo()  # (click flushes: a reader of the pipe sees each status whole)
                time.sleep(2.0)
        with Live(render.status_view(gather()), console=render.console, refresh_per_second=2) as live:
            while True:
                time.sleep(1.0)
                live.update(render.status_view(gather()))
    emit(as_json, gather(), lambda v: render.console.print(render.status_view(v)))


@cli.command()
@click.option("--all", "include_cleared", is_flag=True, help="Cleared alarms too.")
@json_option
@pass_state
def alarms(state: State, include_cleared: bool, as_json: bool) -> None:
    """Alarms: circuits or lines down, deadlines passed, sequence gaps. Open ones by default."""
    result = state.call("alarms", include_cleared=include_cleared)
    emit(as_json, result, lambda v: render.console.print(render.alarms_table(v)))


@cli.command("alarm-ack")
@click.argument("alarm_id")
@click.option("--operator", default=lambda: os.environ.get("USER", "operator"), help="Who saw it.")
@json_option
@pass_state
def alarm_ack(state: State, alarm_id: str, operator: str, as_json: bool) -> None:
    """Acknowledge alarm ALARM_ID (it stays open until its condition is over)."""
    result = state.call("ack_alarm", alarm_id=alarm_id, operator=operator)
    emit(
        as_json,
        result,
        lambda v: render.console.print(render.lit(duty.alarm_acknowledged(v))),
    )


@cli.group()
def circuit() -> None:
    """Add or remove a line's circuits (relays); both stations apply the change."""


@circuit.command("add")
@click.argument("line")
@click.argument("relay_url")
@json_option
@pass_state
def circuit_add(state: State, line: str, relay_url: str, as_json: bool) -> None:
    """Add a circuit through RELAY_URL to LINE."""
    from backchannel.station.relay_url import shown

    result = state.call("add_circuit", line=line, relay=relay_url)
    emit(
        as_json,
        result,
        lambda v: render.console.print(render.lit(f"Circuit through {shown(relay_url)} offered on {line}.")),
    )


@circuit.command("remove")
@click.argument("line")
@click.argument("relay_url")
@json_option
@pass_state
def circuit_remove(state: State, line: str, relay_url: str, as_json: bool) -> None:
    """Stop using RELAY_URL for LINE."""
    from backchannel.station.relay_url import shown

    result = state.call("remove_circuit", line=line, relay=relay_url)
    emit(
        as_json,
        result,
        lambda v: render.console.print(
            render.lit(f"Circuit through {shown(relay_url)} removed from {line}.")
        ),
    )


@circuit.command("pending")
@json_option
@pass_state
def circuit_pending(state: State, as_json: bool) -> None:
    """Circuits the peer proposed that wait for approval (relay_policy = "ask")."""
    result = state.call("circuit_proposals")

    from backchannel.station.relay_url import shown

    def human(proposals: list[dict[str, Any]]) -> None:
        if not proposals:
            click.echo("No proposed circuits wait for approval.")
        for p in proposals:
            click.echo(
                f"{p['id']}  line {render.visible(p['line'])}: {render.visible(p['peer'])} proposes relay "
                f"{render.visible(shown(p['url']))} ({render.when(p['proposed_at'])})"
            )

    emit(as_json, result, human)


@circuit.command("approve")
@click.argument("proposal")
@json_option
@pass_state
def circuit_approve(state: State, proposal: str, as_json: bool) -> None:
    """Add the circuit PROPOSAL (an id from `circuit pending`) the peer proposed."""
    result = state.call("approve_circuit", proposal=proposal)
    emit(
        as_json,
        result,
        lambda v: click.echo(f"Circuit {proposal} approved on line {render.visible(v['name'])}."),
    )


@circuit.command("reject")
@click.argument("proposal")
@json_option
@pass_state
def circuit_reject(state: State, proposal: str, as_json: bool) -> None:
    """Refuse the circuit PROPOSAL the peer proposed; the peer is told."""
    result = state.call("reject_circuit", proposal=proposal)
    emit(
        as_json,
        result,
        lambda v: click.echo(
            f"Circuit {proposal} through {render.visible(v['url'])} rejected; the peer is told."
        ),
    )


@cli.group()
def transcript() -> None:
    """The line's transcript hash chain."""


@transcript.command("head")
@click.argument("line")
@json_option
@pass_state
def transcript_head(state: State, line: str, as_json: bool) -> None:
    """Print LINE's transcript head: equal on both stations when both have seen everything."""
    result = state.call("transcript", line=line)
    emit(
        as_json,
        result,
        lambda v: render.console.print(
            render.lit(
                f"{v['line']}: head {v['head']} ({v['sent_entries']} sent, {v['received_entries']} received)"
            )
        ),
    )


record_commands.register(cli, transcript, pass_state, json_option, emit)


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the temporary directory afterwards.")
@click.option("--fast", is_flag=True, help="Shorter pauses (for tests).")
def demo(keep: bool, fast: bool) -> None:
    """Run a relay and two stations (washington, moscow) and show the line at work."""
    from backchannel.cli.demo import run_demo

    run_demo(keep=keep, fast=fast)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(backchannel completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(backchannel completion zsh)"    (in ~/.zshrc)
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the choice above lists only shells click supports
    click.echo(completer(cli, {}, "backchannel", COMPLETE_VAR).source())


#: The variable click's completion scripts set when they ask ``backchannel`` for candidates.
COMPLETE_VAR = "_BACKCHANNEL_COMPLETE"


def main() -> None:
    """Entry point: run the CLI, turning every backchannel error into one clear line."""
    debug = "--debug" in sys.argv
    try:
        # The name is fixed so that completion works the same for `python -m backchannel`.
        cli.main(prog_name="backchannel", complete_var=COMPLETE_VAR, standalone_mode=False)
    except click.exceptions.Abort:
        render.err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BackchannelError as exc:
        if debug:
            traceback.print_exc()
        if "--json" in sys.argv:
            click.echo(json.dumps({"error": {"code": exc.code, "message": str(exc)}}), err=True)
        else:
            render.err_console.print(f"[red]error:[/] {render.lit(exc)}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:  # the file system refused something: one line naming what and where
        if debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        render.err_console.print(f"[red]error:[/] {render.lit(exc.strerror or exc)}{render.lit(where)}")
        sys.exit(1)
    except Exception as exc:  # a bug: still one line, the traceback on request
        if debug:
            traceback.print_exc()
        render.err_console.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {render.lit(exc)} "
            "(run again with --debug for the traceback, and report it)"
        )
        sys.exit(1)


from backchannel.cli import operators as _operators  # noqa: E402

_operators.register(cli)
