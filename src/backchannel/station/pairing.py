"""Pairing: the invitation one station makes, and the other's acceptance of it.

Theory of operation
-------------------
The inviter creates a mailbox on every relay of the new line (one circuit each), keeps the
secret halves of the hybrid X25519 + ML-KEM-768 agreement sealed at rest, and signs an
invitation carrying the public halves, its identity and one-time keys and the send
capabilities of its mailboxes. The accepter checks it (signature, expiry, not ours, not
accepted before), makes its own mailboxes on the same relays, derives the line keys,
opens the Olm session and stores the line with its hello as the first entry of its
direction, all in one transaction, before the hello is sent. The inviter's side of the
handshake, opening the hello, happens on the receive path (:mod:`receiver`).

A pairing that cannot complete says so, on both sides (docs/PROTOCOL.md §5):

- the accepter whose line is still *pairing* ``pairing_timeout`` seconds (default 60) after it
  accepted marks it *failed* and raises ``pairing_failed`` (:meth:`Pairing.expire`, run on the
  monitor's tick): nothing on the wire tells it why, so the alarm names both causes (the
  invitation was used by another station, or the inviter is not running). A welcome that
  still arrives establishes the line and clears the alarm (:meth:`Pairing.welcomed`);
- the inviter that receives a second hello for an invitation already used raises
  ``invitation_reused`` for that line (:meth:`Pairing.invitation_reused`): the invitation text
  leaked or was given twice, which its operator must hear about, not find as a counter.
"""

from __future__ import annotations

from backchannel.clock import ms
from backchannel.errors import InvalidArgument, RemoteError
from backchannel.proto import line as proto_line
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import pairing as rules
from backchannel.proto.envelope import Sealed
from backchannel.proto.invitation import (
    Invitation,
    MailboxCapability,
    encode_invitation,
    parse_invitation,
    parse_invitation_text,
    valid_name,
)
from backchannel.proto.line import LineState, PendingInvitation
from backchannel.proto.primitives import mlkem_public, x25519_public
from backchannel.proto.session import OlmSession
from backchannel.station.alarms import Alarms
from backchannel.station.config import StationConfig
from backchannel.station.lines import Lines
from backchannel.station.links import Links
from backchannel.station.liveline import LiveLine
from backchannel.station.outbox import Outbox
from backchannel.station.reading import Views
from backchannel.station.recorder import Recorder
from backchannel.station.relay_url import shown
from backchannel.station.store import LineRow, Store
from backchannel.station.views import InvitationView, LineView


def relay_list(relay: str | list[str] | None) -> list[str]:
    """The relays given for a line, checked: ws:// or wss:// URLs, 1 to 8, no repeats."""
    urls = [relay] if isinstance(relay, str) else list(relay or [])
    for url in urls:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise InvalidArgument(f"{url!r} is not a relay URL (ws://host:port or wss://...)")
    if len(set(urls)) != len(urls) or len(urls) > 8:
        raise InvalidArgument("give between 1 and 8 different relays")
    return urls


class Pairing:
    def __init__(
        self,
        name: str,
        lines: Lines,
        links: Links,
        outbox: Outbox,
        recorder: Recorder,
        views: Views,
        store: Store,
        config: StationConfig,
        alarms: Alarms,
    ) -> None:
        self._name = name
        self._alarms = alarms
        self._lines = lines
        self._links = links
        self._outbox = outbox
        self._recorder = recorder
        self._views = views
        self._store = store
        self._config = config
        self._clock = lines.clock
        self._rng = lines.rng

    async def invite(
        self, relay: str | list[str] | None = None, name: str | None = None, on_record: bool = True
    ) -> InvitationView:
        """Create an invitation for a new line, to be carried to the other station out of band.

        Each relay given becomes one circuit of the line (the accepter makes its own mailbox
        on each of them too).
        """
        urls = relay_list(relay) or list(self._config.relays)
        if not urls:
            raise InvalidArgument("no relay given: pass --relay URL or set 'relays' in station.toml")
        if name is not None:
            self._check_new_name(name)
        boxes = [(url, *await self._links.new_mailbox(url)) for url in urls]
        line_id = self._rng.bytes(16)
        pairing_secret, kem_seed = self._rng.bytes(32), self._rng.bytes(64)
        now = self._clock.now()
        invitation = Invitation(
            line_id=line_id,
            name=self._name,
            identity_key=self._lines.identity.identity_key,
            signing_key=self._lines.identity.signing_key,
            one_time_key=self._lines.identity.new_one_time_key(),
            pairing_key=x25519_public(pairing_secret),
            kem_key=mlkem_public(kem_seed),
            mailboxes=tuple(
                MailboxCapability(url, send_id, send_seed) for url, _, _, send_id, send_seed in boxes
            ),
            created_at=ms(now),
            expires_at=ms(now + self._config.invitation_ttl_hours * 3600),
            on_record=on_record,
            pq_key=self._recorder.pq_public if on_record else b"",
        )
        signed = encode_invitation(invitation, self._lines.identity.sign(invitation.signed_message()))
        with self._store.transaction():
            self._store.add_invitation(
                line_id,
                name or "",
                self._lines.atrest.seal(signed.blob, b"invitation-blob" + line_id),
                self._lines.atrest.seal(pairing_secret + kem_seed, b"invitation" + line_id),
                now,
            )
            for url, recv_id, recv_seed, _, _ in boxes:
                sealed_key = self._lines.atrest.seal(recv_seed, b"recv-key" + recv_id)
                self._store.add_mailbox(line_id, url, recv_id, sealed_key)
            self._lines.save_account()
        for url, recv_id, recv_seed, _, _ in boxes:
            self._links.subscribe(url, recv_id, recv_seed, line_id)
        return InvitationView(line_id.hex(), name or "", signed.text(), invitation.expires_at / 1000, urls)

    async def accept(self, text: str, name: str | None = None) -> LineView:
        """Accept an invitation: open the line and send the hello to the inviter."""
        signed = parse_invitation_text(text) if not isinstance(text, bytes) else parse_invitation(text)
        inv = signed.invitation
        opened_at = self._clock.now()
        rules.check_acceptance(
            inv,
            made_here=self._store.get_invitation(inv.line_id) is not None,
            have_line=inv.line_id in self._lines or self._store.get_line(inv.line_id) is not None,
            now=opened_at,
            own_identity_key=self._lines.identity.identity_key,
        )
        line_name = name or self.unique_name(inv.name)
        self._check_new_name(line_name)
        ours: list[tuple[str, bytes, bytes, bytes, bytes]] = []
        for cap in inv.mailboxes:
            recv_id, recv_seed, send_id, send_seed = await self._links.new_mailbox(cap.url)
            ours.append((cap.url, recv_id, recv_seed, send_id, send_seed))
        rules.check_acceptance(  # accepted concurrently while we awaited the relay?
            inv,
            made_here=False,
            have_line=inv.line_id in self._lines,
            now=opened_at,
            own_identity_key=self._lines.identity.identity_key,
        )
        caps = tuple(MailboxCapability(url, send_id, send_seed) for url, _, _, send_id, send_seed in ours)
        accepted = proto_line.accept(
            self._lines.identity,
            signed,
            self._name,
            caps,
            self._rng,
            self._recorder.pq_public if inv.on_record else b"",
        )
        now = self._clock.now()
        row = self.new_row(
            accepted.state,
            accepted.session,
            line_name,
            "pairing",
            inv.name,
            inv.identity_key,
            inv.signing_key,
            now,
            inv.pq_key or None,
        )
        with self._lines.mutation():
            self._store.add_line(row)
            self._recorder.record(
                inv.line_id, 1, 1, accepted.state.transcript.heads[1], accepted.hello.payload
            )
            for url, recv_id, recv_seed, _, _ in ours:
                self._store.add_mailbox(
                    inv.line_id, url, recv_id, self._lines.atrest.seal(recv_seed, b"recv-key" + recv_id)
                )
            for cap in inv.mailboxes:
                self._store.add_peer_mailbox(
                    inv.line_id,
                    cap.url,
                    cap.send_id,
                    self._lines.atrest.seal(cap.send_key, b"send-key" + cap.send_id),
                )
            self._store.add_outbound(inv.line_id, 1, "hello", accepted.hello.frame, now)
            self._lines.add(LiveLine(row, accepted.state, accepted.session))
        for url, recv_id, recv_seed, _, _ in ours:
            self._links.subscribe(url, recv_id, recv_seed, inv.line_id)
        for cap in inv.mailboxes:
            self._links.add_sender(inv.line_id, cap.url, cap.send_id, cap.send_key)
        self._outbox.enqueue([(inv.line_id, 1)])
        return self._views.line_view(self._lines[inv.line_id])

    def open_hello(self, sealed: Sealed, now: float) -> list[tuple[bytes, int]]:
        """The accepter's hello for one of our invitations (inside the receive transaction):
        the line opens, the invitation is spent, the welcome is sealed. Returns what to send.

        The decisions are the engine's (:mod:`backchannel.proto.engine.pairing`); this shell
        opens the sealed secrets, runs the handshake and carries out the effects."""
        line_id = sealed.header.line_id
        found = self._store.get_invitation(line_id)
        rules.admit_hello(found is not None, found is not None and bool(found[3]))
        assert found is not None
        local_name, blob, secrets_sealed, _ = found
        atrest = self._lines.atrest
        signed = parse_invitation(atrest.open(blob, b"invitation-blob" + line_id))
        rules.check_unexpired(signed.invitation, now)
        secrets = atrest.open(secrets_sealed, b"invitation" + line_id)
        pending = PendingInvitation(signed, secrets[:32], secrets[32:])
        try:
            opened = proto_line.open_hello(self._lines.identity, pending, sealed)
        except RemoteError:
            self._lines.reload_account()  # Olm may have spent the one-time key in memory
            raise
        invited = {url for lid, url, _, _ in self._store.mailboxes() if lid == line_id}
        core, effects = rules.hello_opened(opened.state, opened.hello.mailboxes, invited)
        name = local_name or self.unique_name(opened.hello.name)
        row = self.new_row(
            core.state,
            opened.session,
            name,
            core.lifecycle.value,
            opened.hello.name,
            opened.peer_identity_key,
            opened.peer_signing_key,
            now,
            opened.hello.pq_key or None,
        )
        live = LiveLine(row, core.state, opened.session)
        self._store.add_line(row)
        self._recorder.record(line_id, 1, 1, core.state.transcript.heads[1], opened.raw)
        self._lines.add(live)
        outgoing: list[tuple[bytes, int]] = []
        senders: list[MailboxCapability] = []
        for effect in effects:
            match effect:
                case fx.SpendInvitation():
                    self._store.mark_invitation_used(line_id)
                    self._lines.save_account()  # the one-time key is now spent
                case fx.Count(counter, n):
                    self._store.count(counter, n)
                case fx.AcceptCircuit(_, cap):
                    self._store.add_peer_mailbox(
                        line_id, cap.url, cap.send_id, atrest.seal(cap.send_key, b"send-key" + cap.send_id)
                    )
                    senders.append(cap)
                case fx.SendPayload(_, payload, kind):
                    frame = self._lines.seal(live, payload)
                    self._store.add_outbound(line_id, frame.seq, kind, frame.frame, now)
                    outgoing.append((line_id, frame.seq))
                case _:
                    raise AssertionError(f"the pairing shell has no rule for {effect!r}")
        self._lines.persist(live, last_contact=now)
        for cap in senders:
            self._links.add_sender(line_id, cap.url, cap.send_id, cap.send_key)
        return outgoing

    # ---- a pairing that cannot complete --------------------------------------------------------

    def expire(self) -> None:
        """Fail the accepter's lines whose welcome has not come within ``pairing_timeout``
        (the engine decides, :func:`backchannel.proto.engine.pairing.timed_out`)."""
        now = self._clock.now()
        for live in self._lines.all():
            core, effects = rules.timed_out(live.core, live.row.created_at, now, self._config.pairing_timeout)
            if not effects:
                continue
            with self._lines.mutation():
                self._lines.persist(live, state=core.lifecycle.value)
            for effect in effects:
                self.alarm(effect)

    def welcomed(self, line_id: bytes) -> None:
        """The welcome came (after the line failed, perhaps): the pairing alarm is over."""
        self._alarms.clear_alarm("pairing_failed", line_id, "")

    def invitation_reused(self, line_id: bytes, circuit: str | None) -> None:
        """A second hello for an invitation already used (after the batch's commit)."""
        for effect in rules.reused(line_id, circuit):
            self.alarm(effect)

    def alarm(self, effect: fx.Effect) -> None:
        """The operator's words for a pairing that cannot complete (see the module docstring)."""
        assert isinstance(effect, fx.PairingFailed | fx.InvitationReused)
        live = self._lines.get(effect.line_id)
        name, peer = (live.row.name, live.row.peer_name) if live else (effect.line_id.hex()[:8], "the peer")
        if isinstance(effect, fx.PairingFailed):
            self._alarms.raise_alarm(
                "pairing_failed",
                effect.line_id,
                "",
                f"line {name}: no welcome from {peer} within {effect.timeout:g} s of accepting its "
                "invitation, so the line is failed. Either the invitation had already been used by "
                f"another station (it leaked, or was accepted twice: {peer} then has an "
                f"invitation_reused alarm), or {peer} is not running. Ask its operator over a channel "
                "you trust, and for a new invitation; the line opens after all if the welcome still arrives.",
            )
            return
        via = f" (through {shown(effect.circuit)})" if effect.circuit else ""
        self._alarms.raise_alarm(
            "invitation_reused",
            effect.line_id if live else None,
            "" if live else effect.line_id.hex(),
            f"line {name}: a second station tried to accept the invitation of this line{via}, after "
            f"{peer} had accepted it. The invitation text leaked or was given twice. The line with {peer} "
            "is not affected and the other station's line will fail; find out who had the invitation, "
            f"and compare the safety number with {peer} (backchannel verify {name}).",
        )

    def new_row(
        self,
        state: LineState,
        session: OlmSession,
        name: str,
        status: str,
        peer_name: str,
        peer_identity: bytes,
        peer_signing: bytes,
        now: float,
        peer_pq: bytes | None = None,
    ) -> LineRow:
        keys = self._lines.atrest.seal(
            state.keys.to_accepter + state.keys.to_inviter, b"line-keys" + state.line_id
        )
        t = state.transcript
        return LineRow(
            line_id=state.line_id,
            name=name,
            role=state.role,
            state=status,
            peer_name=peer_name,
            peer_identity=peer_identity,
            peer_signing=peer_signing,
            keys_sealed=keys,
            session_pickle=session.pickle(self._lines.atrest.store_key),
            next_seq=state.next_seq,
            delivered_upto=state.delivered_upto,
            tx_count0=t.counts[0],
            tx_head0=t.heads[0],
            tx_count1=t.counts[1],
            tx_head1=t.heads[1],
            on_record=int(state.on_record),
            verified_at=None,
            created_at=now,
            last_contact=None,
            peer_pq=peer_pq,
        )

    def _check_new_name(self, name: str) -> None:
        if not valid_name(name) or ":" in name:
            raise InvalidArgument("a line name must be 1 to 64 bytes of printable text without ':'")
        if self._store.name_taken(name):
            raise InvalidArgument(f"a line named {name!r} already exists; choose another --name")

    def unique_name(self, base: str) -> str:
        base = (base or "line").replace(":", "-").encode("utf-8")[:56].decode("utf-8", "ignore")
        name, n = base, 2
        while self._store.name_taken(name):
            name, n = f"{base}-{n}", n + 1
        return name
