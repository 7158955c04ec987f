"""The commands that make and keep a line: pairing (``invite``, ``accept``), the safety number
(``verify``), the list of lines, its circuits (``circuit ...``) and its record's head
(``transcript head``; the rest of ``transcript`` is :mod:`backchannel.cli.record`'s).
"""

from __future__ import annotations

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
from backchannel.cli.render import INDENT
from backchannel.errors import InvalidArgument
from backchannel.station.private import write_private

# ---- pairing -----------------------------------------------------------------------------


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
@json_option
@pass_state
def lines(state: State, as_json: bool) -> None:
    """List this station's lines."""
    result = state.call("lines")
    emit(as_json, result, lambda v: render.console.print(render.lines_table(v)))


@click.group("line")
def line_group() -> None:
    """Act on one line as a whole."""


@line_group.command("rotate")
@click.argument("line")
@json_option
@pass_state
def line_rotate(state: State, line: str, as_json: bool) -> None:
    """Rotate LINE's mailboxes now: fresh ids and capabilities at every relay (the peer is told
    in band; the old mailboxes are deleted at their relays once drained)."""
    result = state.call("rotate_line", line=line)
    emit(as_json, result, lambda v: render.console.print(render.lit(f"Mailboxes of {line} rotated.")))


@line_group.command("cover")
@click.argument("line")
@click.option(
    "--rate",
    type=float,
    help="Frames per second each circuit of LINE sends, cover or real (0: cover off).",
)
@click.option(
    "--flash",
    type=click.Choice(["slot", "immediate"]),
    help="slot: a FLASH takes the next slot; immediate: it goes at once (and the extra frame shows it).",
)
@json_option
@pass_state
def line_cover(state: State, line: str, rate: float | None, flash: str | None, as_json: bool) -> None:
    """Show or set LINE's cover traffic (PROTOCOL §10.7); without options, show it."""
    result = state.call("line_cover", line=line, rate=rate, flash=flash)

    def human(v: dict[str, Any]) -> None:
        rate_text = "off" if v["rate"] == 0 else f"{v['rate']:g} frames/s per circuit"
        flash_text = "goes at once, off schedule" if v["flash"] == "immediate" else "takes the next slot"
        render.console.print(
            render.lit(
                f"Cover traffic on line {v['line']}: {rate_text} ({v['rate_from']} setting); "
                f"a FLASH {flash_text} ({v['flash_from']} setting); after {v['idle_after']:g} s "
                f"without a frame from the peer, 1 frame per {v['idle_interval']:g} s."
            )
        )
        for c in v["circuits"]:
            render.console.print(render.lit(f"{INDENT}{c['url']}"))
            render.console.print(render.packed(render.cover_fields(c), indent=INDENT * 2))

    emit(as_json, result, human)


@click.group()
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


@click.group()
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


#: Attached to the ``backchannel`` group by :mod:`backchannel.cli.main`.
COMMANDS: tuple[click.Command, ...] = (
    invite,
    accept,
    verify,
    lines,
    line_group,
    circuit,
    transcript,
)
