"""The relay cannot link a line across a rotation of its mailboxes.

Attack: the relay operator (and anyone on its wire) keeps every mailbox id, capability and
public key it ever saw for a line, and watches for them after the stations rotate. Both
stations rotate (one by ``backchannel line rotate``, the other on its schedule); once the
rotation completed (the old mailboxes drained and DELETEd), none of the old values may appear
again in any frame through the relay (SUBSCRIBE, AUTH_SEND, SEND, ACK, DELIVER, CREATE: read
from a wiretap on the relay's connections, across a restart of a station, which proves
everything again), the relay's database must no longer hold the old mailboxes, and messages
must keep flowing both ways.
"""

from __future__ import annotations

from pathlib import Path

from support.figures import figure
from support.relays import start_relay
from support.rotation import (
    TOML,
    current_mailboxes,
    relay_frames_since,
    relay_mailboxes,
    rotated_mailboxes,
    tap_marks,
)
from support.stations import StationProcess, heads_equal, pair, wait_until
from support.wiretap import WireTap


def _inbox(station: StationProcess, line: str) -> list[str]:
    return [m["text"] for m in reversed(station.call("inbox", line=line, limit=1000))]


def test_no_identifier_capability_or_key_is_used_again_after_a_rotation(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    tap = WireTap(relay.port)
    tap.start()
    a, b = StationProcess(tmp_path, "washington"), StationProcess(tmp_path, "moscow")
    (a.home / "station.toml").write_text(TOML)
    # moscow rotates on its schedule (every ~4 s, ±10 %), washington on command.
    (b.home / "station.toml").write_text(TOML.replace("rotate_every = 0", "rotate_every = 4"))
    try:
        a.start()
        b.start()
        a_line, b_line = pair(a, b, tap.url)
        a.call("send", line=a_line, text="before 1")
        b.call("send", line=b_line, text="before 2")
        wait_until("the first messages", lambda: _inbox(b, b_line) == ["before 1"] and _inbox(a, a_line))
        old = relay_mailboxes(relay)
        assert len(old) == 2  # one inbound mailbox per station
        old_ids = {a.home: current_mailboxes(a), b.home: current_mailboxes(b)}

        rotated = a.cli("line", "rotate", a_line)  # the operator's command, through the control socket
        assert rotated.returncode == 0 and f"Mailboxes of {a_line} rotated." in rotated.stdout, rotated.stderr
        wait_until(
            "both stations rotated and the relay deleted both old mailboxes",
            lambda: not (current_mailboxes(a) & old_ids[a.home])
            and not (current_mailboxes(b) & old_ids[b.home])
            and not ({r for r, _, _, _ in relay_mailboxes(relay)} & {r for r, _, _, _ in old})
            and not (rotated_mailboxes(a) & old_ids[a.home])
            and not (rotated_mailboxes(b) & old_ids[b.home]),
            timeout=40,
        )
        assert a.call("line", name=a_line)["rotated_at"] is not None
        assert b.call("line", name=b_line)["rotated_at"] is not None
        assert "mailboxes rotated 20" in a.cli("lines").stdout
        marks = tap_marks(tap)

        # After the rotation: traffic both ways, and a restart (every capability proven anew).
        for i in range(3):
            a.call("send", line=a_line, text=f"after a{i}")
            b.call("send", line=b_line, text=f"after b{i}")
        b.stop()
        b.start()
        a.call("send", line=a_line, text="after restart")
        wait_until("messages both ways after the rotation", lambda: len(_inbox(b, b_line)) == 5)
        wait_until("messages to washington after the rotation", lambda: len(_inbox(a, a_line)) == 4)
        assert _inbox(b, b_line) == ["before 1", "after a0", "after a1", "after a2", "after restart"]
        assert _inbox(a, a_line) == ["before 2", "after b0", "after b1", "after b2"]
        wait_until("equal transcripts", lambda: heads_equal(a, a_line, b, b_line))

        seen_after = relay_frames_since(tap, marks)
        figure("relay frames checked after the rotation", len(seen_after), "frames")
        assert len(seen_after) > 20
        olds = [v for row in old for v in row]  # ids and public keys, 16 and 32 bytes
        reused = 0
        for frame in seen_after:
            fields = [v for v in vars(frame).values() if isinstance(v, bytes)]
            reused += sum(1 for value in olds for f in fields if value in f)
        figure("old identifiers, capabilities or keys seen after the rotation", reused, "frames")
        assert reused == 0
        still = {r for r, _, _, _ in relay_mailboxes(relay)} & {r for r, _, _, _ in old}
        assert not still  # the relay's database holds none of the old mailboxes
    finally:
        for station in (a, b):
            station.stop()
        tap.stop()
        relay.stop()
