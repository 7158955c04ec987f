"""The station's part of the record: store entries, exchange and compare checkpoints, export.

Theory of operation
-------------------
Every entry, in both directions, is stored with the chain hash after it (sealed at rest),
in the same transaction as the frame it belongs to. That gives three things:

- the ``seen`` claim in each received entry (the sender's view of *our* direction) is
  checked against our own chain at once: a mismatch means the two records of the line
  have split, and an alarm names our first entry the peer saw differently;
- checkpoints: on demand and every ``checkpoint_interval`` each station sends its two chain
  heads (signed with ML-DSA-65 on the record, and with Ed25519 like every entry) plus the
  last 128 entry hashes of each direction; the receiver compares them with its own
  (:func:`backchannel.proto.record.compare_checkpoint`), records the outcome, and raises a
  ``record_divergence`` alarm naming the first entry where the views differ;
- the export: every entry's exact bytes (or, withheld, its digest), the two stations' public
  keys and this station's seal, which :func:`backchannel.proto.export.verify_export` checks
  anywhere with the two stations' identity files.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from backchannel.clock import Clock
from backchannel.errors import BadSignature, InvalidArgument, LineNotReady, ProtocolError, RecordInvalid
from backchannel.proto.engine import effects as fx
from backchannel.proto.export import (
    EXPORT_FORMAT,
    VerifiedExport,
    readable,
    seal_export,
    station_block,
    verify_export,
)
from backchannel.proto.identity import identity_document
from backchannel.proto.payloads import Checkpoint
from backchannel.proto.primitives import mldsa_public, mldsa_sign, sha256
from backchannel.proto.record import (
    Seen,
    checkpoint_message,
    compare_checkpoint,
    decode_entry,
    short_hashes,
)
from backchannel.proto.transcript import genesis
from backchannel.station.alarms import Alarms
from backchannel.station.config import StationConfig
from backchannel.station.keystore import AtRest
from backchannel.station.lines import Lines, entry_context
from backchannel.station.liveline import LiveLine
from backchannel.station.outbox import Outbox
from backchannel.station.store import Store

DIVERGENCE = "record_divergence"


class Recorder:
    def __init__(
        self,
        name: str,
        lines: Lines,
        outbox: Outbox,
        alarms: Alarms,
        store: Store,
        atrest: AtRest,
        clock: Clock,
        config: StationConfig,
    ) -> None:
        self._name = name
        self._lines = lines
        self._outbox = outbox
        self._alarms = alarms
        self._config = config
        self._store = store
        self._verified: dict[bytes, tuple[str, VerifiedExport]] = {}
        self._atrest = atrest
        self._clock = clock
        sealed = store.get_meta("mldsa")
        if sealed is None:  # a station created before the record existed
            from backchannel.clock import SystemRng

            seed = SystemRng().bytes(32)
            with store.transaction():
                store.set_meta("mldsa", atrest.seal(seed, b"mldsa-seed"))
        else:
            seed = atrest.open(sealed, b"mldsa-seed")
        self._pq_seed = seed
        self.pq_public = mldsa_public(seed)

    # ---- entries ---------------------------------------------------------------------------

    def record(self, line_id: bytes, direction: int, seq: int, chain_hash: bytes, raw: bytes) -> None:
        """Store one entry (inside the caller's transaction)."""
        self._lines.record_entry(fx.StoreEntry(line_id, direction, seq, chain_hash, raw))

    def check_seen(self, live: LiveLine, seq: int, seen: Seen, after: list[Callable[[], object]]) -> None:
        """The peer's entry ``seq`` says what it had received from us; does our record agree?"""
        ours = live.state.out_direction
        if seen.count == 0:
            expected: bytes | None = genesis(live.line_id, ours)
        else:
            expected = self._store.entry_hash(live.line_id, ours, seen.count)
        if expected != seen.head:
            detail = (
                f"entry {seq} from {live.row.peer_name} says it had received {seen.count} of our "
                f"entries with a different chain: the records differ at or before our entry "
                f"{seen.count}"
            )
            after.append(functools.partial(self.alarm, live.line_id, f"{ours}:{seen.count}", detail))

    def peer_seen(self, live: LiveLine) -> int:
        """The ``seen`` count of the peer's latest readable entry: where end-to-end recovery
        starts after a restart (0 if there is none)."""
        signer = live.row.peer_signing if live.state.on_record else None
        direction = live.state.in_direction
        for seq, sealed in self._store.latest_entries(live.line_id, direction, 16):
            raw = self._atrest.open(sealed, entry_context(live.line_id, direction, seq))
            try:
                return decode_entry(raw, live.line_id, direction, seq, signer).seen.count
            except (ProtocolError, BadSignature):
                continue  # a spent entry: look further back
        return 0

    # ---- checkpoints -----------------------------------------------------------------------

    def make_checkpoint(self, live: LiveLine) -> Checkpoint:
        t = live.state.transcript
        recent = (
            short_hashes(self._store.entry_hashes(live.line_id, 0)[: t.counts[0]]),
            short_hashes(self._store.entry_hashes(live.line_id, 1)[: t.counts[1]]),
        )
        signature = b""
        if live.state.on_record:
            signature = mldsa_sign(self._pq_seed, checkpoint_message(live.line_id, t.counts, t.heads))
        return Checkpoint(t.counts, t.heads, recent, signature)

    def checkpoint_sent(self, live: LiveLine, seq: int, checkpoint: Checkpoint) -> None:
        self._store.add_checkpoint(
            live.line_id,
            live.state.out_direction,
            seq,
            checkpoint.counts,
            checkpoint.heads,
            checkpoint.pq_signature,
            "sent",
            "",
            self._clock.now(),
        )

    def checkpoint_received(
        self, live: LiveLine, seq: int, checkpoint: Checkpoint, after: list[Callable[[], object]]
    ) -> None:
        from backchannel.errors import BadSignature
        from backchannel.proto.primitives import mldsa_verify

        status, detail = "agreed", ""
        if live.state.on_record:
            try:
                message = checkpoint_message(live.line_id, checkpoint.counts, checkpoint.heads)
                mldsa_verify(live.row.peer_pq or b"", checkpoint.pq_signature, message)
            except BadSignature:
                status, detail = "diverged", "the checkpoint's ML-DSA-65 signature does not verify"
                after.append(
                    functools.partial(
                        self.alarm,
                        live.line_id,
                        f"checkpoint:{seq}",
                        f"checkpoint {seq} from the peer: {detail}",
                    )
                )
        if status == "agreed":
            local = {d: self._store.entry_hashes(live.line_id, d) for d in (0, 1)}
            # The checkpoint is itself our latest entry from the peer: compare what preceded it.
            local[live.state.in_direction] = local[live.state.in_direction][: seq - 1]
            result = compare_checkpoint(checkpoint, local, live.state.out_direction, live.line_id)
            status, detail = result.status, result.detail
            if result.status == "diverged":
                subject = f"{result.direction}:{result.seq}"
                after.append(functools.partial(self.alarm, live.line_id, subject, detail))
            elif result.seq is not None:  # agreed so far, but the peer lacks our latest entries
                sealed_at = self._store.entry_time(live.line_id, live.state.out_direction, result.seq)
                interval = self._config.checkpoint_interval
                if sealed_at is not None and self._clock.now() - sealed_at > interval:
                    subject = f"{result.direction}:{result.seq}"
                    after.append(
                        functools.partial(
                            self.alarm,
                            live.line_id,
                            subject,
                            f"{detail}, although entry {result.seq} was sealed "
                            f"{self._clock.now() - sealed_at:.0f} s ago (dropped?)",
                        )
                    )
        self._store.add_checkpoint(
            live.line_id,
            live.state.in_direction,
            seq,
            checkpoint.counts,
            checkpoint.heads,
            checkpoint.pq_signature,
            status,
            detail,
            self._clock.now(),
        )

    def alarm(self, line_id: bytes, subject: str, detail: str) -> None:
        """Raise the record-divergence alarm for ``subject`` ("direction:seq") of the line."""
        name = self._lines.name(line_id)
        self._alarms.raise_alarm(DIVERGENCE, line_id, subject, f"line {name}: {detail}")

    def send_checkpoint(self, line_id: bytes) -> int:
        """Seal, store and send a checkpoint of the line's record now; returns its sequence number."""
        live = self._lines[line_id]
        with self._lines.mutation():
            checkpoint = self.make_checkpoint(live)
            seq = self._outbox.store_payload(live, checkpoint, "checkpoint")
            self.checkpoint_sent(live, seq, checkpoint)
        self._outbox.enqueue([(line_id, seq)])
        return seq

    def last_checkpoint_sent(self, line_id: bytes) -> float | None:
        sent = [c["at"] for c in self._store.checkpoints(line_id) if c["status"] == "sent"]
        return max(sent) if sent else None

    def identity_file(self) -> dict[str, str]:
        """This station's self-certifying identity file (``proto.identity``)."""
        ident = self._lines.identity
        doc = identity_document(self._name, ident.identity_key, ident.signing_key, self.pq_public, ident.sign)
        return {**doc, "signing_key": doc["ed25519"]}

    # ---- export ----------------------------------------------------------------------------

    def export(self, live: LiveLine, withhold: frozenset[tuple[int, int]] = frozenset()) -> dict[str, Any]:
        """Everything an arbiter needs, with the two identity files, to verify the record.

        ``withhold`` names entries ``(direction, seq)`` whose body the export leaves out (only
        their digest stays, and a checkpoint their sender signed must cover them). An entry this
        station could not read when it arrived is exported the same way: it has no body to give.
        """
        row = live.row
        on = live.state.on_record
        identity = self._lines.identity
        mine = station_block(
            self._name,
            identity.identity_key,
            identity.signing_key,
            self.pq_public if on else b"",
        )
        theirs = station_block(
            row.peer_name, row.peer_identity, row.peer_signing, (row.peer_pq or b"") if on else b""
        )
        role = "inviter" if live.state.role == 0 else "accepter"
        stations = (
            {"inviter": mine, "accepter": theirs}
            if role == "inviter"
            else {"inviter": theirs, "accepter": mine}
        )
        signers = {0: row.peer_signing, 1: row.peer_signing}
        signers[live.state.out_direction] = identity.signing_key
        entries: list[dict[str, Any]] = []
        for direction, seq, chain_hash, sealed, at in self._store.entries(live.line_id):
            raw = self._atrest.open(sealed, entry_context(live.line_id, direction, seq))
            item: dict[str, Any] = {"direction": direction, "seq": seq}
            try:
                entry = decode_entry(raw, live.line_id, direction, seq, signers[direction] if on else None)
            except (ProtocolError, BadSignature):
                entry = None  # a frame this station could not read: it has no body to show
            if entry is None or (direction, seq) in withhold:
                item.update(withheld=True, digest=sha256(raw).hex())
            else:
                item.update(entry=raw.hex(), payload=readable(entry.payload.to_cbor()))
            item.update(hash=chain_hash.hex(), recorded_at=round(at * 1000))
            entries.append(item)
        t = live.state.transcript
        doc: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "line_id": live.line_id.hex(),
            "line": row.name,
            "on_record": on,
            "exported_by": role,
            "exported_at": round(self._clock.now() * 1000),
            "stations": stations,
            "counts": list(t.counts),
            "head": t.head().hex(),
            "entries": entries,
        }
        if on:  # off the record nothing is signed, not even the export
            seal_export(doc, identity.sign)
        return doc

    # ---- the operator's record commands ------------------------------------------------------

    def checkpoint(self, live: LiveLine) -> dict[str, Any]:
        """Send a checkpoint now; the peer compares it with its own record and records the outcome."""
        if not live.established:
            raise LineNotReady(f"line {live.row.name!r} is not established yet")
        seq = self.send_checkpoint(live.line_id)
        return {"line": live.row.name, "seq": seq, "head": live.state.transcript.head().hex()}

    def export_withholding(self, live: LiveLine, withhold: list[str] | None) -> dict[str, Any]:
        """The export, leaving out the bodies of ``withhold``: entries "D:N" (direction, seq)."""
        wanted: set[tuple[int, int]] = set()
        for spec in withhold or []:
            d, _, n = str(spec).partition(":")
            if d not in ("0", "1") or not n.isdigit() or int(n) < 2:
                raise InvalidArgument(
                    f"{spec!r} names no entry that can be withheld: give DIRECTION:SEQ, e.g. 1:3 "
                    "(the hello and the welcome, 1:1 and 0:1, are always shown)"
                )
            wanted.add((int(d), int(n)))
        return self.export(live, frozenset(wanted))

    def verify(self, live: LiveLine) -> dict[str, Any]:
        """Check the local record: the chain, every signature (on the record), checkpoints.

        The full check runs on the event loop, so its result is kept until the line's head
        moves: a console page viewed again and again does not stall the station.
        """
        head = live.state.transcript.head().hex()
        cached = self._verified.get(live.line_id)
        if cached is not None and cached[0] == head:
            result = cached[1]
        else:
            doc = self.export(live)
            result = verify_export(doc, None, require_signatures=live.state.on_record)
            if result.head != head:
                raise RecordInvalid("the stored entries do not lead to the line's current head")
            self._verified[live.line_id] = (head, result)
        checkpoints = self._store.checkpoints(live.line_id)
        received = [c for c in checkpoints if c["status"] != "sent"]
        return {
            "line": live.row.name,
            "on_record": live.state.on_record,
            "entries": list(result.counts),
            "head": result.head,
            "checkpoints_sent": len(checkpoints) - len(received),
            "checkpoints_received": len(received),
            "last_checkpoint": received[-1] if received else None,
            "diverged": [c for c in received if c["status"] == "diverged"],
            "withheld": list(result.withheld),
            "unreadable": list(result.unreadable),
            "contradicted": list(result.contradicted),
        }
