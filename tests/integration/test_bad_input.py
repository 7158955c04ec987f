"""Bad input from the network: each kind is rejected, counted, and costs no accepted message.

The attacker here holds the send capability of the inviter's mailbox (as a relay operator or
a thief of the invitation would) and posts forged, tampered, replayed, truncated, oversized
and misaddressed frames into it, between genuine messages.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.errors import RelayRefused
from backchannel.proto import frames, wire
from backchannel.proto.invitation import parse_invitation_text
from backchannel.proto.primitives import ed25519_sign
from backchannel.station.relay_link import Delivery, RelayLink

from support.relays import RelayProcess
from support.stations import StationProcess, heads_equal, wait_until


@pytest.fixture
def pair_of_stations(
    tmp_path: Path, relay_process: RelayProcess
) -> Iterator[tuple[StationProcess, StationProcess, str]]:
    inviter, accepter = StationProcess(tmp_path, "inviter"), StationProcess(tmp_path, "accepter")
    inviter.start()
    accepter.start()
    text = inviter.call("invite", relay=relay_process.url, name="accepter")["text"]
    accepter.call("accept", text=text, name="inviter")
    wait_until("the line", lambda: accepter.call("line", name="inviter")["state"] == "established")
    yield inviter, accepter, text
    inviter.stop()
    accepter.stop()


def outbound_frame(station: StationProcess, seq: int) -> bytes:
    with sqlite3.connect(station.home / "station.db") as db:
        return bytes(db.execute("SELECT frame FROM outbox WHERE seq = ?", (seq,)).fetchone()[0])


async def inject(url: str, invitation: str, payloads: list[bytes]) -> list[str]:
    """Post raw payloads into the inviter's mailbox; returns what the relay said to each."""
    cap = parse_invitation_text(invitation).invitation.mailboxes[0]
    link = RelayLink(url, asyncio.Queue[Delivery]())
    link.add_sender(cap.send_id, lambda m: ed25519_sign(cap.send_key, m))
    await link.start()
    await link.wait_connected(10)
    answers = []
    for payload in payloads:
        try:
            await link.send(cap.send_id, payload)
            answers.append("stored")
        except RelayRefused as exc:
            answers.append(f"refused {exc.relay_code}")
    await link.close()
    return answers


def test_forged_tampered_replayed_truncated_oversized_misaddressed_frames_cost_nothing(
    pair_of_stations: tuple[StationProcess, StationProcess, str], relay_process: RelayProcess
) -> None:
    """Since issue 11 what a relay carries is a 4 096-byte circuit frame under the keys of the
    line's circuit: bytes of the attacker's own, and even the line's envelopes posted in clear,
    no longer open (``unreadable_frame``). What the holder of the invitation can still make is
    frames under the *hello keys* of the inviter's mailbox (derived from its send key): those
    reach the envelope checks, which reject all but the one genuine hello (a duplicate)."""
    inviter, accepter, invitation = pair_of_stations
    first = accepter.call("send", line="inviter", text="genuine one", wait="delivered")
    genuine = outbound_frame(accepter, first["seq"])
    hello = outbound_frame(accepter, 1)
    cap = parse_invitation_text(invitation).invitation.mailboxes[0]
    keys = wire.hello_keys(cap.send_key, cap.url)

    def under_hello_keys(seq: int, data: bytes) -> bytes:
        (frame,) = wire.seal_fragments(keys, seq, data)[:1]
        return frame

    other_line = bytearray(hello)
    other_line[4:20] = os.urandom(16)
    bad = [
        os.urandom(300),  # garbage
        genuine,  # the line's envelope in clear, as relays carried it before issue 11
        os.urandom(wire.FRAME_SIZE),  # garbage of the right size
        under_hello_keys(first["seq"], genuine),  # under the hello keys, but not the hello
        under_hello_keys(1, genuine),  # ... claiming seq 1
        *wire.seal_fragments(keys, 1, bytes(other_line)),  # a hello of another line
        *wire.seal_fragments(keys, 1, b"BC\x09" + hello[3:]),  # unknown version
        under_hello_keys(1, hello[: wire.CHUNK]),  # a hello cut short
        *wire.seal_fragments(keys, 1, hello),  # the genuine hello, replayed
    ]
    oversized = b"x" * (frames.MAX_PAYLOAD + 1)
    answers = asyncio.run(inject(relay_process.url, invitation, [*bad, oversized]))
    assert answers[:-1] == ["stored"] * len(bad)
    assert answers[-1] == f"refused {frames.RelayErrorCode.TOO_LARGE}"

    expected = {"unreadable_frame": 3, "misaddressed": 2, "unsupported_version": 1}
    # The frames under the hello keys that claim an entry of the line (the cut-short hello, the
    # genuine hello replayed, the envelope claiming seq 1) are each rejected by the envelope
    # checks (protocol_error, duplicate) or, when the relay's pushes fall into batches so that
    # the hello circuit's reassembly already holds its bound, refused by it (fragment_limit,
    # PROTOCOL §10.2); either way counted, acknowledged and costless.
    claimed = ("protocol_error", "duplicate", "fragment_limit")

    def rejected() -> dict[str, int] | None:
        counters = inviter.call("counters")
        total = sum(counters.get(k, 0) for k in (*expected, *claimed))
        return counters if total >= sum(expected.values()) + 3 else None

    counters = wait_until("every bad frame to be counted", rejected)
    assert {k: counters.get(k, 0) for k in expected} == expected
    assert sum(counters.get(k, 0) for k in claimed) == 3, counters
    assert counters.get("protocol_error", 0) >= 1, counters
    assert not [a for a in inviter.call("alarms") if a["kind"] == "invitation_reused"]

    second = accepter.call("send", line="inviter", text="genuine two", wait="delivered")
    assert second["seq"] > first["seq"]
    assert [m["text"] for m in reversed(inviter.call("inbox"))] == ["genuine one", "genuine two"]
    assert inviter.running and accepter.running
    wait_until("equal transcript heads", lambda: heads_equal(inviter, "accepter", accepter, "inviter"))
