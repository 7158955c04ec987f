"""The circuit keys port: which keys wrap and open the frames of each circuit, derived once.

Theory of operation
-------------------
Every frame on the wire is a 4 096-byte circuit frame (:mod:`backchannel.proto.wire`, PROTOCOL
§7.1) wrapped under the keys of one circuit (a relay URL of a line) and one direction:

- an entry of a line travels under the *circuit keys* of the sending direction, derived from
  that direction's line key and the URL;
- the accepter's hello (direction 1, sequence number 1) travels under the *hello keys* of the
  URL, derived from the send key of the inviter's mailbox there, a secret of the invitation:
  the inviter has no line keys before it opens the hello. The accepter finds that key among
  the peer's mailboxes (it came from the invitation); the inviter in its own invitation.

Deriving is HKDF, cheap but not free, and a message of nine fragments would derive nine times:
so the keys are kept per (line, url, which), for the life of the station (a few per circuit;
line keys never change, and the hello keys of a line are only ever asked for during pairing and
on the inviter's invitation mailboxes).
"""

from __future__ import annotations

from backchannel.proto import wire
from backchannel.proto.invitation import parse_invitation
from backchannel.proto.line import ACCEPTER
from backchannel.proto.wire import CircuitKeys
from backchannel.station.lines import Lines
from backchannel.station.store import Store

#: The sequence number of the accepter's hello: the only entry wrapped with the hello keys.
HELLO_SEQ = 1


class CircuitKeyring:
    """Circuit and hello keys of every circuit, derived on first use and kept."""

    def __init__(self, lines: Lines, store: Store) -> None:
        self._lines = lines
        self._store = store
        self._keys: dict[tuple[bytes, str, int], CircuitKeys] = {}
        self._hello: dict[tuple[bytes, str], CircuitKeys | None] = {}

    def sending(self, line_id: bytes, url: str, seq: int) -> CircuitKeys:
        """The keys that wrap our entry ``seq`` of the line for the circuit ``url``."""
        live = self._lines[line_id]
        if live.state.role == ACCEPTER and seq == HELLO_SEQ:
            hello = self.hello(line_id, url)
            if hello is not None:
                return hello
        return self.outbound(line_id, url)

    def outbound(self, line_id: bytes, url: str) -> CircuitKeys:
        """The circuit keys of our sending direction on ``url`` (every frame but the hello:
        entries, and cover frames, :func:`backchannel.proto.wire.seal_cover`)."""
        return self._circuit(line_id, url, self._lines[line_id].state.out_direction)

    def receiving(self, line_id: bytes, url: str) -> CircuitKeys:
        """The keys that open the peer's frames of a line we have (pairing or established) on
        ``url``."""
        return self._circuit(line_id, url, self._lines[line_id].state.in_direction)

    def hello(self, line_id: bytes, url: str) -> CircuitKeys | None:
        """The hello keys of ``url`` for this line: from our invitation (inviter) or the
        inviter's mailbox capability (accepter); None if neither is known here (also kept:
        garbage on a mailbox must not cost a database read per frame)."""
        cache = (line_id, url)
        if cache not in self._hello:
            send_key = self._invitation_send_key(line_id, url)
            self._hello[cache] = None if send_key is None else wire.hello_keys(send_key, url)
        return self._hello[cache]

    def _circuit(self, line_id: bytes, url: str, direction: int) -> CircuitKeys:
        cache = (line_id, url, direction)
        keys = self._keys.get(cache)
        if keys is None:
            line_key = self._lines[line_id].state.keys.for_direction(direction)
            keys = self._keys[cache] = wire.circuit_keys(line_key, url)
        return keys

    def _invitation_send_key(self, line_id: bytes, url: str) -> bytes | None:
        atrest = self._lines.atrest
        found = self._store.get_invitation(line_id)
        if found is not None:  # we invited: the capability is in our invitation
            signed = parse_invitation(atrest.open(found.blob, b"invitation-blob" + line_id))
            for cap in signed.invitation.mailboxes:
                if cap.url == url:
                    return cap.send_key
            return None
        for row in self._store.peer_mailboxes(line_id):  # we accepted: the inviter's mailbox
            if row.url == url:
                return atrest.open(row.send_key_sealed, b"send-key" + row.send_id)
        return None
