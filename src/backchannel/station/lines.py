"""The lines port: the station's in-memory mirror of its lines, kept equal to the disk.

Theory of operation
-------------------
Each line is a :class:`LiveLine`: its database row beside the pure core's state and its Olm
session. Every change to a line happens inside :meth:`Lines.mutation`, a store transaction
whose failure reloads the mirror (and the Olm account, whose one-time key a hello being
opened may already have spent in memory) from disk, so memory never runs ahead of the disk.

This is the narrow port the station's parts receive for lines: find a line, change it in a
transaction, persist it, seal the next entry of our direction, seal bodies at rest. The
parts never see the :class:`~backchannel.station.station.Station` facade.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from backchannel.clock import Clock, Rng
from backchannel.errors import UnknownLine
from backchannel.proto.engine import effects as fx
from backchannel.proto.engine import sending
from backchannel.proto.keyschedule import LineKeys
from backchannel.proto.line import LineState, SealedFrame
from backchannel.proto.payloads import Payload
from backchannel.proto.session import Identity, OlmSession
from backchannel.proto.transcript import Transcript
from backchannel.station.keystore import AtRest
from backchannel.station.liveline import LiveLine
from backchannel.station.store import Store


def entry_context(line_id: bytes, direction: int, seq: int) -> bytes:
    """The at-rest context of one record entry (sealed with the store key)."""
    return b"entry" + line_id + bytes([direction]) + seq.to_bytes(8, "big")


class Lines:
    """The station's lines, in memory and on disk; the Olm account beside them."""

    def __init__(self, store: Store, atrest: AtRest, identity: Identity, clock: Clock, rng: Rng) -> None:
        self.store = store
        self.atrest = atrest
        self.identity = identity
        self.clock = clock
        self.rng = rng
        self._lines: dict[bytes, LiveLine] = {}
        self.load()

    # ---- the mirror ------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)build the mirror from the database (what the peer reported and the link watch,
        in memory only, are kept across a failed transaction)."""
        memory = {line_id: (live.peer, live.watch) for line_id, live in self._lines.items()}
        self._lines.clear()
        for row in self.store.list_lines():
            keys_raw = self.atrest.open(row.keys_sealed, b"line-keys" + row.line_id)
            state = LineState(
                line_id=row.line_id,
                role=row.role,
                keys=LineKeys(keys_raw[:32], keys_raw[32:]),
                next_seq=row.next_seq,
                delivered_upto=row.delivered_upto,
                transcript=Transcript(
                    row.line_id, (row.tx_count0, row.tx_count1), (row.tx_head0, row.tx_head1)
                ),
                on_record=bool(row.on_record),
            )
            session = OlmSession.from_pickle(row.session_pickle, self.atrest.store_key)
            peer, watch = memory.get(row.line_id, (None, None))
            self._lines[row.line_id] = LiveLine(row, state, session, peer, watch)

    def get(self, line_id: bytes) -> LiveLine | None:
        return self._lines.get(line_id)

    def __getitem__(self, line_id: bytes) -> LiveLine:
        return self._lines[line_id]

    def __contains__(self, line_id: object) -> bool:
        return line_id in self._lines

    def ids(self) -> list[bytes]:
        return list(self._lines)

    def all(self) -> list[LiveLine]:
        return list(self._lines.values())

    def add(self, live: LiveLine) -> None:
        """A new line (inside the transaction that stored it)."""
        self._lines[live.line_id] = live

    def find(self, name_or_id: str) -> LiveLine:
        """A line by name or id; ``UnknownLine`` for the operator otherwise."""
        row = self.store.find_line(name_or_id)
        if row is None or row.line_id not in self._lines:
            raise UnknownLine(f"there is no line {name_or_id!r}. `backchannel lines` lists the lines.")
        return self._lines[row.line_id]

    def find_id(self, name: str) -> bytes | None:
        row = self.store.find_line(name)
        return None if row is None else row.line_id

    def established(self) -> list[bytes]:
        return [line_id for line_id, live in self._lines.items() if live.established]

    def name(self, line_id: bytes) -> str:
        live = self._lines.get(line_id)
        return live.row.name if live else line_id.hex()[:8]

    def peer_name(self, line_id: bytes) -> str:
        live = self._lines.get(line_id)
        return live.row.peer_name if live else "the peer"

    # ---- changes ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def mutation(self, durable: bool = True) -> Iterator[None]:
        """A store transaction whose failure also resets the in-memory state to the disk's.

        That is the lines (protocol state, Olm sessions) and the Olm account, whose one-time
        key a hello being opened may already have spent in memory. ``durable``: as
        ``Store.transaction``'s.
        """
        try:
            with self.store.transaction(durable):
                yield
        except BaseException:
            self.load()
            self.reload_account()
            raise

    def reload_account(self) -> None:
        """Take the Olm account back from disk (a failed hello may have spent a key in memory)."""
        account = self.store.get_meta("account")
        if account is not None:
            self.identity = Identity.from_pickle(account.decode("ascii"), self.atrest.store_key)

    def save_account(self) -> None:
        self.store.set_meta("account", self.identity.pickle(self.atrest.store_key).encode("ascii"))

    def persist(self, live: LiveLine, **extra: object) -> None:
        """Write the line's protocol state and session to its row (inside a transaction)."""
        t = live.state.transcript
        fields: dict[str, object] = dict(
            session_pickle=live.session.pickle(self.atrest.store_key),
            next_seq=live.state.next_seq,
            delivered_upto=live.state.delivered_upto,
            tx_count0=t.counts[0],
            tx_head0=t.heads[0],
            tx_count1=t.counts[1],
            tx_head1=t.heads[1],
        )
        fields.update(extra)
        self.store.update_line(live.line_id, **fields)
        live.row = replace(live.row, **fields)  # type: ignore[arg-type]

    def seal(self, live: LiveLine, payload: Payload) -> SealedFrame:
        """Seal the next entry of our direction and record it (inside the caller's transaction)."""
        live.state, effects, sealed = sending.seal(
            live.state, live.session, payload, self.rng, self.identity.sign
        )
        for effect in effects:
            assert isinstance(effect, fx.StoreEntry)
            self.record_entry(effect)
        return sealed

    def record_entry(self, entry: fx.StoreEntry) -> None:
        """Store one record entry, sealed at rest (inside the caller's transaction)."""
        sealed = self.atrest.seal(entry.raw, entry_context(entry.line_id, entry.direction, entry.seq))
        self.store.add_entry(
            entry.line_id, entry.direction, entry.seq, entry.chain_hash, sealed, self.clock.now()
        )

    def body(self, line_id: bytes, direction: str, seq: int, text: str) -> bytes:
        """A message body sealed at rest."""
        return self.atrest.seal(
            text.encode("utf-8"), b"body" + line_id + direction.encode() + seq.to_bytes(8, "big")
        )

    def text(self, line_id: bytes, direction: str, seq: int, sealed: bytes) -> str:
        ctx = b"body" + line_id + direction.encode() + seq.to_bytes(8, "big")
        return self.atrest.open(sealed, ctx).decode("utf-8")
