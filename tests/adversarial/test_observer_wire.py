"""A network observer (and the relay) reads everything on a ``ws://`` wire and learns no content.

Attack (THREAT_MODEL §1 and §2): a passive tap between both stations and their relay records
every byte of a whole line's life without TLS, from the first CREATE through pairing (hello,
welcome), messages both ways, receipts and an acknowledgement by a named operator. The tap
sees exactly what the relay receives and sends. Searched for in every unmasked WebSocket
payload: the message texts, both station names and line names, the operator name, every
public identity, signing and record key of both stations (raw and hex), the safety number
(in any grouping) and the invitation (its text and its bytes). None may appear; the guard
checks that the tap did see the line's envelopes, byte for byte.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        with sqlite3.connect(alpha.home / "station.db") as db:
            envelopes = [bytes(r[0]) for r in db.execute("SELECT frame FROM outbox")]
    finally:
        alpha.stop()
        bravo.stop()
    wire = b"\x00".join(tap.payloads())
    figure("bytes the tap recorded", tap.recorded_bytes(), "bytes")
    figure("connections the tap recorded", len(tap.streams), "connections")
    figure("secrets searched for on the wire", len(needles), "needles")
    found = [n for n in needles if n in wire]
    figure("secrets found on the wire", len(found), "needles")
    assert all(e in wire for e in envelopes)  # the guard: the tap saw the line's frames
    assert len(envelopes) >= len(TEXTS) // 2
    assert found == []


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
