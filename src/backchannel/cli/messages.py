"""The duty officer's commands: send, hold and release, read, acknowledge, watch and the alarms.

Every message is named ``LINE:in/SEQ`` or ``LINE:out/SEQ`` (:mod:`backchannel.cli.refs`), and
every time is printed in UTC, so what one command prints another accepts.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from backchannel.cli import duty, render
from backchannel.cli.common import (
    State,
    emit,
    json_option,
    pass_state,
)
from backchannel.cli.home import require_station
from backchannel.errors import InvalidArgument

# ---- messages ----------------------------------------------------------------------------


@click.command()
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


@click.command()
@click.argument("line", required=False)
@json_option
@pass_state
def drafts(state: State, line: str | None, as_json: bool) -> None:
    """Messages awaiting release by a second operator (the two-person rule)."""
    result = state.call("drafts", line=line)
    emit(as_json, result, lambda v: render.console.print(render.drafts_table(v)))


@click.command()
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


@click.command()
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


@click.command()
@click.argument("line", required=False)
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@pass_state
def outbox(state: State, line: str | None, limit: int, as_json: bool) -> None:
    """Messages sent (newest first), with their receipts."""
    result = state.call("outbox", line=line, limit=limit)
    emit(as_json, result, lambda v: render.console.print(render.messages_table(v, "Sent (newest first)")))


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
@click.option("--all", "include_cleared", is_flag=True, help="Cleared alarms too.")
@json_option
@pass_state
def alarms(state: State, include_cleared: bool, as_json: bool) -> None:
    """Alarms: circuits or lines down, deadlines passed, sequence gaps. Open ones by default."""
    result = state.call("alarms", include_cleared=include_cleared)
    emit(as_json, result, lambda v: render.console.print(render.alarms_table(v)))


@click.command("alarm-ack")
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


#: Attached to the ``backchannel`` group by :mod:`backchannel.cli.main`.
COMMANDS: tuple[click.Command, ...] = (
    send,
    drafts,
    release,
    inbox,
    outbox,
    ack,
    show,
    status,
    alarms,
    alarm_ack,
)
