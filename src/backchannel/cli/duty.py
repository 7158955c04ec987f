"""What the CLI tells the duty officer after a send, an acknowledgement or a verification.

Only what the station knows, in so many words: a second acknowledgement says who made the
first and when, and that nothing was sent this time (not "the sender is being told"); a
verification says this side confirmed and that the other side's confirmation is not known
here (it never crosses the line), never "both operators confirmed"; a send on a line whose
safety number was never compared is preceded by a warning on stderr (it does not block: the
station refuses a FLASH there only when the line's config says so).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backchannel.cli import render
from backchannel.errors import BackchannelError


def warn_unverified(call: Callable[..., Any], line: str, precedence: str) -> None:
    """One warning line on stderr before a send on an unverified line; silent if unknown."""
    try:
        view = call("line", name=line)
    except BackchannelError:
        return  # the send itself will say what is wrong (no such line, no station)
    if view.get("verified"):
        return
    name = view.get("name", line)
    render.err_console.print(
        render.lit(
            f"warning: line {name} is not verified: its safety number was never compared, so someone "
            f"between the stations could read or change this {precedence} message. Compare it: "
            f"backchannel verify {name}"
        )
    )


def sent(v: dict[str, Any]) -> str:
    """The confirmation of a send (markup-safe); a repeated ``--id`` says nothing new was sent."""
    if v.get("repeated"):
        return render.message_line(v, "Already sent (same --id), nothing new: ")
    return render.message_line(v, "Sent ")


def acknowledged(v: dict[str, Any]) -> str:
    """The answer to ``ack`` for one message (plain text, for ``render.lit``)."""
    if v.get("already_acknowledged"):
        return (
            f"{v['ref']} was already acknowledged by {v['acknowledged_by']} at "
            f"{render.when(v['acknowledged_at'])}; nothing was recorded or sent this time."
        )
    return f"Acknowledged {v['ref']} as {v['acknowledged_by']}; the sender is being told."


def alarm_acknowledged(v: dict[str, Any]) -> str:
    """The answer to ``alarm-ack`` (plain text): who acknowledged it and when, first one standing."""
    at = render.when(v["acknowledged_at"])
    if v.get("already_acknowledged"):
        return (
            f"Alarm {v['id']} was already acknowledged by {v['acknowledged_by']} at {at}; "
            "that acknowledgement stands."
        )
    return f"Alarm {v['id']} acknowledged by {v['acknowledged_by']} at {at}."


def verification(v: dict[str, Any]) -> list[str]:
    """The verification state of each side (markup strings)."""
    line, peer = render.lit(v["line"]), render.lit(v["peer_name"])
    if not v["verified"]:
        return [
            "[red]Not verified.[/] Read the digits aloud to the other operator; "
            f"if they match, run: backchannel verify {line} --confirm"
        ]
    known = v.get("peer_confirmed")
    peer_state = "not known" if known is None else ("confirmed" if known else "not confirmed")
    return [
        f"[green]Verified on this side[/]: confirmed {render.when(v['verified_at'])}.",
        f"{peer}'s side: {peer_state} to this station (ask its operator to run "
        "backchannel verify --confirm there).",
    ]
