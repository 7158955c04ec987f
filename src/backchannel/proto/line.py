"""A line's protocol state, sans I/O: seal payloads into envelopes, open envelopes in order.

Theory of operation
-------------------
``LineState`` is the small, serialisable part of a line (keys, counters, transcript); the
Olm session travels beside it. Every function here takes the state and returns the new
state, never touching disk or network, so the station can store the new state and the
frame *in one transaction* before anything leaves. That is the whole crash-safety story:

- sealing assigns the next sequence number, advances Olm and the transcript, and yields the
  exact bytes that every retry and every circuit will send (encrypt once);
- opening is split in two: :func:`authenticate` checks the envelope against the line key
  (no Olm involved, so forged or replayed frames burn nothing), then :func:`decrypt_next`
  feeds Olm strictly the next sequence number.

Pairing is asymmetric: the accepter builds the *hello* (:func:`accept`) and the inviter
opens it (:func:`open_hello`); from then on both sides are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from backchannel.clock import Rng
from backchannel.errors import (
    BadSignature,
    DecryptError,
    MisaddressedFrame,
    ProtocolError,
    RemoteError,
)
from backchannel.proto import envelope
from backchannel.proto.envelope import Header, Kind, Sealed
from backchannel.proto.invitation import MailboxCapability, SignedInvitation
from backchannel.proto.keyschedule import LineKeys, derive_line_keys
from backchannel.proto.payloads import Hello, Payload, hello_binding
from backchannel.proto.primitives import (
    ed25519_verify,
    mlkem_decapsulate,
    mlkem_encapsulate,
    x25519,
    x25519_public,
)
from backchannel.proto.record import Seen, decode_entry, encode_entry
from backchannel.proto.session import Identity, OlmSession
from backchannel.proto.transcript import Transcript, genesis

INVITER = 0
ACCEPTER = 1


@dataclass(frozen=True)
class LineState:
    line_id: bytes
    role: int  # INVITER or ACCEPTER
    keys: LineKeys
    next_seq: int  # the sequence number our next frame gets
    delivered_upto: int  # the peer's frames up to here are decrypted and stored
    transcript: Transcript
    on_record: bool = False

    @property
    def out_direction(self) -> int:
        return 0 if self.role == INVITER else 1

    @property
    def in_direction(self) -> int:
        return 1 - self.out_direction


@dataclass(frozen=True)
class SealedFrame:
    seq: int
    frame: bytes  # the envelope bytes that go to the relay, identical on every retry
    payload: bytes  # the canonical payload, as recorded in the transcript


@dataclass(frozen=True)
class Opened:
    seq: int
    payload: Payload | None  # None when the frame could not be read (see ``error``)
    raw: bytes  # the entry bytes, as recorded in the transcript
    error: RemoteError | None = None
    seen: Seen | None = None  # the sender's view of our direction when it sealed this


@dataclass(frozen=True)
class PendingInvitation:
    """The inviter's secret half of an invitation, kept until the hello arrives."""

    signed: SignedInvitation
    pairing_secret: bytes  # X25519
    kem_seed: bytes  # ML-KEM-768 seed


@dataclass(frozen=True)
class Accepted:
    state: LineState
    session: OlmSession
    hello: SealedFrame


@dataclass(frozen=True)
class HelloOpened:
    state: LineState
    session: OlmSession
    hello: Hello
    peer_identity_key: bytes
    peer_signing_key: bytes
    raw: bytes = b""  # the hello's entry bytes, as recorded in the transcript


def seal_payload(
    state: LineState,
    session: OlmSession,
    payload: Payload,
    rng: Rng,
    sign: Callable[[bytes], bytes] | None = None,
) -> tuple[LineState, SealedFrame]:
    """Seal the next entry of our direction; ``sign`` (our Ed25519) is needed on the record."""
    if state.on_record and sign is None:
        raise ValueError("a line on the record needs a signer")
    seq = state.next_seq
    raw = encode_entry(
        payload, seen_by(state), state.line_id, state.out_direction, seq, sign if state.on_record else None
    )
    header = Header(Kind.DATA, state.line_id, state.out_direction, seq, rng.bytes(12))
    frame = envelope.seal(header, state.keys.for_direction(state.out_direction), session.encrypt(raw))
    new_state = replace(
        state,
        next_seq=seq + 1,
        transcript=state.transcript.append(state.out_direction, seq, raw),
    )
    return new_state, SealedFrame(seq, frame, raw)


def authenticate(state: LineState, sealed: Sealed) -> bytes:
    """Check that an envelope belongs to this line's inbound direction and is genuine.

    Returns the inner (Olm) bytes. Raises ``MisaddressedFrame`` or ``DecryptError``.
    """
    header = sealed.header
    if header.line_id != state.line_id or header.direction != state.in_direction:
        raise MisaddressedFrame("the frame is addressed to another line or direction")
    if header.kind is Kind.HELLO and header.seq != 1:
        raise ProtocolError("a hello must be the first frame of its direction")
    inner = envelope.open_sealed(sealed, state.keys.for_direction(header.direction))
    if header.kind is Kind.HELLO:
        return inner[64:]
    return inner


def seen_by(state: LineState) -> Seen:
    """What we have received of the other direction: committed to by our next entry."""
    direction = state.in_direction
    return Seen(state.transcript.counts[direction], state.transcript.heads[direction])


def decrypt_next(
    state: LineState, session: OlmSession, seq: int, inner: bytes, peer_signing_key: bytes | None = None
) -> tuple[LineState, Opened]:
    """Decrypt the next in-order frame. The caller guarantees ``seq == delivered_upto + 1``.

    On the record, ``peer_signing_key`` checks the entry's signature.
    """
    if seq != state.delivered_upto + 1:
        raise ValueError(f"decrypt_next out of order: {seq} after {state.delivered_upto}")
    payload: Payload | None = None
    error: RemoteError | None = None
    seen: Seen | None = None
    raw = b""
    try:
        raw = session.decrypt(inner)
        entry = decode_entry(
            raw, state.line_id, state.in_direction, seq, peer_signing_key if state.on_record else None
        )
        payload, seen = entry.payload, entry.seen
    except (DecryptError, ProtocolError, BadSignature) as exc:
        # The envelope was genuine, so this frame's place in the sequence is spent either way:
        # stalling the line on it would be worse. What Olm could not open is recorded as empty,
        # which makes the two transcripts differ from here on: the divergence is visible.
        error = exc
    new_state = replace(
        state,
        delivered_upto=seq,
        transcript=state.transcript.append(state.in_direction, seq, raw),
    )
    return new_state, Opened(seq, payload, raw, error, seen)


def accept(
    identity: Identity,
    signed: SignedInvitation,
    name: str,
    mailboxes: tuple[MailboxCapability, ...],
    rng: Rng,
    pq_key: bytes = b"",
) -> Accepted:
    """Build the accepter's side of a new line and its hello frame.

    On a line on the record, ``pq_key`` is our ML-DSA-65 public key, sent in the hello.
    """
    inv = signed.invitation
    ephemeral = rng.bytes(32)
    x_secret = x25519(ephemeral, inv.pairing_key)
    kem_secret, kem_ciphertext = mlkem_encapsulate(inv.kem_key)
    keys = derive_line_keys(x_secret, kem_secret, signed.digest, inv.line_id)
    session = identity.outbound_session(inv.identity_key, inv.one_time_key)
    binding = identity.sign(hello_binding(inv.line_id, identity.identity_key, signed.digest))
    on_record = inv.on_record
    if on_record and not pq_key:
        raise ValueError("a line on the record needs our ML-DSA-65 key")
    hello = Hello(name, mailboxes, binding, pq_key if on_record else b"")
    start = Seen(0, genesis(inv.line_id, 0))
    raw = encode_entry(hello, start, inv.line_id, 1, 1, identity.sign if on_record else None)
    inner = identity.identity_key + identity.signing_key + session.encrypt(raw)
    header = Header(Kind.HELLO, inv.line_id, 1, 1, rng.bytes(12), x25519_public(ephemeral), kem_ciphertext)
    frame = envelope.seal(header, keys.to_inviter, inner)
    state = LineState(
        line_id=inv.line_id,
        role=ACCEPTER,
        keys=keys,
        next_seq=2,
        delivered_upto=0,
        transcript=Transcript.start(inv.line_id).append(1, 1, raw),
        on_record=on_record,
    )
    return Accepted(state, session, SealedFrame(1, frame, raw))


def hello_keys(pending: PendingInvitation, sealed: Sealed) -> LineKeys:
    """The inviter's half of the hybrid agreement, from the hello's clear fields."""
    header = sealed.header
    x_secret = x25519(pending.pairing_secret, header.hello_key)
    kem_secret = mlkem_decapsulate(pending.kem_seed, header.hello_kem)
    inv = pending.signed.invitation
    return derive_line_keys(x_secret, kem_secret, pending.signed.digest, inv.line_id)


def open_hello(identity: Identity, pending: PendingInvitation, sealed: Sealed) -> HelloOpened:
    """Open the accepter's hello: derive the line keys, start Olm, check the binding."""
    header = sealed.header
    inv = pending.signed.invitation
    if header.kind is not Kind.HELLO or header.line_id != inv.line_id or header.seq != 1:
        raise MisaddressedFrame("the frame is not the hello of this invitation")
    keys = hello_keys(pending, sealed)
    inner = envelope.open_sealed(sealed, keys.to_inviter)
    if len(inner) < 66:
        raise ProtocolError("the hello is truncated")
    peer_ik, peer_ed, olm = inner[:32], inner[32:64], inner[64:]
    session, raw = identity.inbound_session(peer_ik, olm)
    try:
        entry = decode_entry(raw, inv.line_id, 1, 1, peer_ed if inv.on_record else None)
    except BadSignature:
        raise BadSignature("the hello's signature does not verify; the hello is forged") from None
    payload = entry.payload
    if not isinstance(payload, Hello):
        raise ProtocolError("the first frame of a line must be a hello")
    if inv.on_record and not payload.pq_key:
        raise ProtocolError("a hello on the record must carry the accepter's ML-DSA-65 key")
    try:
        ed25519_verify(
            peer_ed, payload.binding_signature, hello_binding(inv.line_id, peer_ik, pending.signed.digest)
        )
    except BadSignature:
        raise BadSignature("the accepter's keys are not bound together; the hello is forged") from None
    state = LineState(
        line_id=inv.line_id,
        role=INVITER,
        keys=keys,
        next_seq=1,
        delivered_upto=1,
        transcript=Transcript.start(inv.line_id).append(1, 1, raw),
        on_record=inv.on_record,
    )
    return HelloOpened(state, session, payload, peer_ik, peer_ed, raw)
