"""What the inviting station takes from a hello, whoever built it (THREAT_MODEL §3 and §5).

The accepter's software is not trusted: these hellos are built with the pure core directly,
skipping every check the accepting station makes, and handed to a real (offline) inviter.

- A hello whose mailboxes name relays outside the invitation gets only the invited ones: the
  inviter will not connect where the accepter likes (others are refused and counted).
- A hello that arrives after the invitation expired opens no line, even though the
  accepter's own check was skipped.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from typing import Any

from backchannel.clock import FakeClock, FakeRng
from backchannel.proto import line as proto_line
from backchannel.proto.invitation import MailboxCapability, parse_invitation_text
from backchannel.proto.primitives import mldsa_public
from backchannel.proto.session import Identity
from backchannel.station.station import Station

RELAY = "ws://relay.invalid:1"
ELSEWHERE = ["ws://10.0.0.5:8080", "ws://attacker.example:9000", "ws://169.254.169.254"]


def _hello(text: str, urls: list[str], seed: bytes) -> bytes:
    rng = FakeRng(seed)
    caps = tuple(MailboxCapability(u, rng.bytes(16), rng.bytes(32)) for u in urls)
    signed = parse_invitation_text(text)
    pq_key = mldsa_public(rng.bytes(32))  # the line is on the record (the default)
    return proto_line.accept(Identity.generate(), signed, "bravo", caps, rng, pq_key).hello.frame


def test_a_hellos_mailboxes_count_only_on_the_relays_of_the_invitation(
    open_station: Callable[[str], Station], support: Any
) -> None:
    alpha = open_station("alpha")
    view = asyncio.run(alpha.invite(relay=RELAY))
    welcome = support.deliver(alpha, _hello(view.text, [RELAY, *ELSEWHERE], b"hello elsewhere"))
    assert welcome != []  # the line opened, on the invited relay only
    assert alpha.counters().get("circuit_refused_policy") == len(ELSEWHERE)
    with sqlite3.connect(alpha.home / "station.db") as db:
        urls = [u for (u,) in db.execute("SELECT url FROM peer_mailboxes")]
    assert urls == [RELAY]


def test_a_hello_after_the_invitation_expired_opens_no_line(
    open_station: Callable[[str], Station], support: Any, clock: FakeClock
) -> None:
    alpha = open_station("alpha")
    text = asyncio.run(alpha.invite(relay=RELAY)).text
    clock.advance(alpha.config.invitation_ttl_hours * 3600 + 1)
    frame = _hello(text, [RELAY], os.urandom(8))
    assert support.deliver(alpha, frame) == []
    assert alpha.counters() == {"invalid_invitation": 1}
    assert alpha.lines() == []
