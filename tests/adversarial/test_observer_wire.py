"""A network observer (and the relay) reads everything on a ``ws://`` wire and learns no content.

Attack (THREAT_MODEL §1 and §2): a passive tap between both stations and their relay records
every byte of a whole line's life without TLS, from the first CREATE through pairing (hello,
welcome), messages both ways, receipts and an acknowledgement by a named operator. The tap
sees exactly what the relay receives and sends. Searched for in every unmasked WebSocket
payload: the message texts, both station names and line names, the operator name, every
public identity, signing and record key of both stations (raw and hex), the safety number
(in any grouping) and the invitation (its text and its bytes). None may appear.

Since issue 11 the envelopes themselves (which carry the line id, direction and sequence
number in clear) never travel: every SEND and DELIVER the tap sees carries a circuit frame of
exactly 4 096 bytes, and no envelope of the line, nor the line id, appears anywhere on the
wire. (Before, the guard checked that the tap saw the envelopes byte for byte; now it checks
that the tap saw at least one circuit frame per fragment of every envelope.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.proto import frames, wire
from backchannel.proto.invitation import parse_invitation_text

from support.figures import figure
from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, wait_until
from support.wiretap import WireTap

TEXTS = [f"observer-must-not-read-{i:02d}" for i in range(6)]
OPERATOR = "duty-officer-kowalski"


@pytest.fixture
def tapped(tmp_path: Path) -> Iterator[tuple[RelayProcess, WireTap]]:
    relay = start_relay(tmp_path)
    tap = WireTap(int(relay.url.rsplit(":", 1)[1]))
    tap.start()
    yield relay, tap
    tap.stop()
    relay.stop()


def test_a_recording_of_the_whole_line_holds_no_text_names_or_keys(
    tmp_path: Path, tapped: tuple[RelayProcess, WireTap]
) -> None:
    _, tap = tapped
    alpha = StationProcess(tmp_path, "alpha-station-warsaw")
    bravo = StationProcess(tmp_path, "bravo-station-lisbon")
    try:
        alpha.start()
        bravo.start()
        text = alpha.call("invite", relay=tap.url, name="line-to-lisbon")["text"]
        bravo.call("accept", text=text, name="line-to-warsaw")
        wait_until("the line", lambda: bravo.call("line", name="line-to-warsaw")["state"] == "established")
        for i, body in enumerate(TEXTS):
            sender, line = (alpha, "line-to-lisbon") if i % 2 == 0 else (bravo, "line-to-warsaw")
            sender.call("send", line=line, text=body, wait="delivered")
        seq = bravo.call("inbox")[-1]["seq"]
        assert bravo.cli("ack", "line-to-warsaw", str(seq), "--operator", OPERATOR).returncode == 0
        acked = lambda: any(m["status"] == "acknowledged" for m in alpha.call("outbox"))  # noqa: E731
        wait_until("the acknowledgement", acked)
        needles = _secrets(alpha, bravo, text)
        envelopes: list[bytes] = []
        for station in (alpha, bravo):
            with sqlite3.connect(station.home / "station.db") as db:
                envelopes += [bytes(r[0]) for r in db.execute("SELECT frame FROM outbox")]
                line_ids = [bytes(r[0]) for r in db.execute("SELECT line_id FROM lines")]
    finally:
        alpha.stop()
        bravo.stop()
    recorded = b"\x00".join(tap.payloads())
    figure("bytes the tap recorded", tap.recorded_bytes(), "bytes")
    figure("connections the tap recorded", len(tap.streams), "connections")
    figure("secrets searched for on the wire", len(needles), "needles")
    found = [n for n in needles if n in recorded]
    figure("secrets found on the wire", len(found), "needles")
    carried = _carried(tap.payloads())
    figure("SEND payloads the tap saw", len(carried["send"]), "frames")
    figure("distinct SEND payload sizes", len(set(carried["send"])), "sizes")
    # the guard: the tap saw the line's traffic, one circuit frame per fragment of each envelope
    assert len(carried["send"]) >= sum(len(wire.split(e)) for e in envelopes)
    assert len(envelopes) >= len(TEXTS)
    assert set(carried["send"]) == set(carried["deliver"]) == {wire.FRAME_SIZE}  # one size
    assert [e for e in envelopes if e in recorded] == []  # no envelope in clear
    assert [i for i in line_ids if i in recorded] == []  # nor the line id
    assert found == []


def _carried(payloads: list[bytes]) -> dict[str, list[int]]:
    """The payload sizes of the SEND and DELIVER relay frames among the WebSocket messages."""
    sizes: dict[str, list[int]] = {"send": [], "deliver": []}
    for data in payloads:
        try:
            frame = frames.decode(data)
        except Exception:
            continue
        if isinstance(frame, frames.Send):
            sizes["send"].append(len(frame.payload))
        elif isinstance(frame, frames.Deliver):
            sizes["deliver"].append(len(frame.payload))
    return sizes


def _secrets(alpha: StationProcess, bravo: StationProcess, invitation: str) -> list[bytes]:
    needles = [t.encode() for t in TEXTS]
    needles += [s.encode() for s in (alpha.name, bravo.name, "line-to-lisbon", "line-to-warsaw", OPERATOR)]
    for station in (alpha, bravo):
        for value in station.call("identity").values():
            if isinstance(value, str) and len(value) >= 64 and all(c in "0123456789abcdef" for c in value):
                needles += [value.encode(), bytes.fromhex(value)]
    safety = bravo.call("verify", line="line-to-warsaw", confirm=False)["safety_number"]
    digits = "".join(c for c in safety if c.isdigit())
    assert len(digits) == 60
    needles += [safety.encode(), digits.encode(), digits[:30].encode(), digits[30:].encode()]
    parsed = parse_invitation_text(invitation)
    needles += [invitation.encode(), parsed.invitation.signed_message()]
    return needles
