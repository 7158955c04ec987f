"""Shared fixtures for the unit tests.

Everything here is in-process and offline: the pure core is driven directly, and stations
are paired without a relay by replacing the three methods of the Links port that would
talk to one (``new_mailbox``, ``subscribe``, ``add_sender``) and carrying frames by hand with
``Station.receive_batch``. Argon2 runs with the light test parameters.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backchannel.clock import FakeClock, FakeRng
from backchannel.proto import envelope
from backchannel.proto import line as proto_line
from backchannel.proto.invitation import Invitation, MailboxCapability, SignedInvitation, encode_invitation
from backchannel.proto.line import LineState, PendingInvitation, SealedFrame
from backchannel.proto.payloads import Payload
from backchannel.proto.primitives import mlkem_public, x25519_public
from backchannel.proto.session import Identity, OlmSession
from backchannel.station.station import Station

from support.offline import make_offline, wrap

RELAY = "ws://relay.invalid:1"
PASSPHRASE = "correct horse battery staple"
T0_MS = 1_700_000_000_000


@pytest.fixture(scope="session")
def support() -> object:
    """This module, so tests can use its helpers without importing a module named conftest."""
    return _THIS


# ---- the pure core ----------------------------------------------------------------------


def make_invitation(
    identity: Identity,
    rng: FakeRng,
    *,
    name: str = "alpha",
    mailboxes: tuple[MailboxCapability, ...] | None = None,
    line_id: bytes | None = None,
) -> tuple[SignedInvitation, PendingInvitation]:
    """An invitation signed by ``identity`` and the inviter's secret half of it."""
    pairing_secret, kem_seed = rng.bytes(32), rng.bytes(64)
    invitation = Invitation(
        line_id=line_id or rng.bytes(16),
        name=name,
        identity_key=identity.identity_key,
        signing_key=identity.signing_key,
        one_time_key=identity.new_one_time_key(),
        pairing_key=x25519_public(pairing_secret),
        kem_key=mlkem_public(kem_seed),
        mailboxes=mailboxes or (MailboxCapability(RELAY, rng.bytes(16), rng.bytes(32)),),
        created_at=T0_MS,
        expires_at=T0_MS + 3_600_000,
    )
    signed = encode_invitation(invitation, identity.sign(invitation.signed_message()))
    return signed, PendingInvitation(signed, pairing_secret, kem_seed)


@dataclass
class Side:
    identity: Identity
    state: LineState
    session: OlmSession


@dataclass
class Paired:
    inviter: Side
    accepter: Side
    signed: SignedInvitation
    pending: PendingInvitation
    hello: SealedFrame
    rng: FakeRng


def pair_lines(seed: bytes = b"unit-tests") -> Paired:
    """Run the pairing of the pure core: accept an invitation, open the hello."""
    rng = FakeRng(seed)
    inviter_id, accepter_id = Identity.generate(), Identity.generate()
    signed, pending = make_invitation(inviter_id, rng)
    caps = (MailboxCapability(RELAY, rng.bytes(16), rng.bytes(32)),)
    accepted = proto_line.accept(accepter_id, signed, "bravo", caps, rng)
    opened = proto_line.open_hello(inviter_id, pending, envelope.parse(accepted.hello.frame))
    return Paired(
        inviter=Side(inviter_id, opened.state, opened.session),
        accepter=Side(accepter_id, accepted.state, accepted.session),
        signed=signed,
        pending=pending,
        hello=accepted.hello,
        rng=rng,
    )


def transfer(sender: Side, receiver: Side, payload: Payload, rng: FakeRng) -> proto_line.Opened:
    """Seal ``payload`` on one side and open it, in order, on the other."""
    sender.state, sealed = proto_line.seal_payload(sender.state, sender.session, payload, rng)
    inner = proto_line.authenticate(receiver.state, envelope.parse(sealed.frame))
    receiver.state, opened = proto_line.decrypt_next(receiver.state, receiver.session, sealed.seq, inner)
    return opened


@pytest.fixture
def paired() -> Paired:
    return pair_lines()


# ---- stations without a relay ----------------------------------------------------------


def deliver(station: Station, *frames: bytes) -> list[tuple[bytes, int]]:
    """Hand envelopes to a station as if a relay had pushed them: each wrapped into the circuit
    frames of its line's mailbox on ``RELAY`` (PROTOCOL §7.1), as the peer's sender does."""
    return station.receive_batch([d for f in frames for d in wrap(station, f)])


def outbound(station: Station, items: list[tuple[bytes, int]]) -> list[bytes]:
    return [station.outbound_frame(line_id, seq) for line_id, seq in items]


@dataclass
class StationPair:
    inviter: Station
    accepter: Station
    line_id: bytes
    clock: FakeClock

    @property
    def inviter_line(self) -> str:
        return self.inviter.lines()[0].name

    @property
    def accepter_line(self) -> str:
        return self.accepter.lines()[0].name


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0_MS / 1000)


@pytest.fixture
def open_station(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[[str], Station]]:
    """Create (once) and open an offline station by name; closes them all at the end."""
    opened: list[Station] = []

    def factory(name: str) -> Station:
        home = tmp_path / name
        if not home.exists():
            Station.init(home, name, PASSPHRASE)
        station = make_offline(Station.open(home, PASSPHRASE, clock=clock))
        opened.append(station)
        return station

    yield factory
    for station in opened:
        asyncio.run(station.close())


@pytest.fixture
def station_pair(open_station: Callable[[str], Station], clock: FakeClock) -> StationPair:
    """Two stations paired in-process: invitation, hello, welcome, all without a relay."""
    alpha, bravo = open_station("alpha"), open_station("bravo")
    invitation = asyncio.run(alpha.invite(relay=RELAY))
    view = asyncio.run(bravo.accept(invitation.text))
    line_id = bytes.fromhex(view.line_id)
    welcome = deliver(alpha, bravo.outbound_frame(line_id, 1))
    assert deliver(bravo, *outbound(alpha, welcome)) == []
    return StationPair(alpha, bravo, line_id, clock)


_THIS = sys.modules[__name__]
