"""The relay's requests: CREATE, SUBSCRIBE, AUTH_SEND, SEND, ACK, PING and DELETE, one reply each.

Each connection gets a fresh 32-byte nonce in ``Welcome``; every capability it uses is proven
by an Ed25519 signature over that nonce (``frames.auth_message``), so nothing a client sends
can be replayed on another connection. Writes are queued on the group committer and answered
after their commit: STORED only once the frame is durable.

Nothing a client sends can crash the relay or another connection: every frame is decoded in a
``try``, every failure becomes an ``ERROR`` reply and a counter, and payloads are never logged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from backchannel.clock import Clock, Rng
from backchannel.errors import FrameTooLarge, ProtocolError, UnsupportedVersion
from backchannel.proto import frames
from backchannel.proto.frames import FrameType, RelayErrorCode
from backchannel.relay.clients import Clients
from backchannel.relay.config import RelayConfig
from backchannel.relay.connection import RelayConnection
from backchannel.relay.database import Database, ignore
from backchannel.relay.delivery import Deliveries
from backchannel.relay.records import UNREADABLE, MailboxRecords
from backchannel.relay.storage.base import (
    AddMailbox,
    DeleteMailbox,
    DeleteMessage,
    MailboxRecord,
    Outcome,
    PutMessage,
    TouchMailbox,
    WriteResult,
)


class Requests:
    """Decodes and answers every request of every connection."""

    def __init__(
        self,
        config: RelayConfig,
        *,
        db: Database,
        clients: Clients,
        deliveries: Deliveries,
        records: MailboxRecords,
        clock: Clock,
        rng: Rng,
        counters: dict[str, int],
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.config = config
        #: Told each answered request's type and latency in seconds (the request histogram).
        self._observe = observe or _unobserved
        self._db = db
        self._clients = clients
        self._deliveries = deliveries
        self._records = records
        self._clock = clock
        self._rng = rng
        self._counters = counters

    async def on_message(self, conn: RelayConnection, message: str | bytes) -> None:
        """Handle one WebSocket message; queue exactly one reply (now or after a commit)."""
        self._counters["frames_in"] += 1
        if isinstance(message, str):
            self.refuse(
                conn,
                0,
                RelayErrorCode.MALFORMED,
                "malformed",
                "text messages are not relay frames; send binary messages",
            )
            return
        rid = peek_request_id(message)
        try:
            frame = frames.decode(message, self.config.max_payload)
        except UnsupportedVersion as exc:
            self.refuse(
                conn,
                rid,
                RelayErrorCode.UNSUPPORTED_VERSION,
                "unsupported_version",
                f"{exc}; this relay speaks version {frames.VERSION}",
            )
            return
        except FrameTooLarge as exc:
            self.refuse(
                conn,
                rid,
                RelayErrorCode.TOO_LARGE,
                "too_large",
                f"{exc} (payload limit {self.config.max_payload} bytes)",
            )
            return
        except ProtocolError as exc:
            self.refuse(conn, rid, RelayErrorCode.MALFORMED, "malformed", str(exc))
            return
        started = self._clock.monotonic()
        match frame:
            case frames.Create():
                self._create(conn, frame, started)
            case frames.Subscribe():
                await self._subscribe(conn, frame)
                self._observed("subscribe", started)
            case frames.AuthSend():
                await self._auth_send(conn, frame)
                self._observed("auth_send", started)
            case frames.Send():
                self._send(conn, frame, started)
            case frames.Ack():
                self._ack(conn, frame, started)
            case frames.Ping():
                conn.reply(frames.Ok(frame.request_id))
                self._observed("ping", started)
            case frames.Delete():
                self._delete(conn, frame, started)
            case _:
                self.refuse(
                    conn,
                    rid,
                    RelayErrorCode.MALFORMED,
                    "malformed",
                    f"frame type {type(frame).__name__} is sent by relays, not to them",
                )

    def refuse(
        self, conn: RelayConnection, rid: int, code: RelayErrorCode, counter: str, message: str
    ) -> None:
        self._counters[counter] += 1
        conn.reply(frames.Error(rid, code, message))

    def _observed(self, kind: str, started: float) -> None:
        self._observe(kind, self._clock.monotonic() - started)

    def internal(self, conn: RelayConnection, rid: int) -> None:
        self.refuse(
            conn,
            rid,
            RelayErrorCode.INTERNAL,
            "internal",
            "the relay could not complete the request; retry later",
        )

    # ---- requests ----------------------------------------------------------------------

    def _create(self, conn: RelayConnection, frame: frames.Create, started: float) -> None:
        rid = frame.request_id
        if not conn.may_create:
            self.refuse(
                conn,
                rid,
                RelayErrorCode.TOKEN_REQUIRED,
                "token_refused",
                "this relay creates mailboxes only for clients with its access token "
                "(put it in the relay URL: ws://:TOKEN@host:port)",
            )
            return
        client = self._clients[conn.address]
        now = self._clock.monotonic()
        if conn.creates >= self.config.max_creates_per_connection:
            limit = f"{self.config.max_creates_per_connection} mailboxes per connection"
        elif (
            client.recent_creates(now, self.config.create_window_seconds)
            >= self.config.max_creates_per_address
        ):
            limit = (
                f"{self.config.max_creates_per_address} mailboxes per address"
                f" in {self.config.create_window_seconds:g} s"
            )
        else:
            limit = ""
        if limit:
            self.refuse(
                conn, rid, RelayErrorCode.CLIENT_LIMIT, "create_limit", f"CREATE refused: limit of {limit}"
            )
            return
        conn.creates += 1
        client.creates.append(now)
        record = MailboxRecord(
            recv_id=self._rng.bytes(frames.ID_LEN),
            send_id=self._rng.bytes(frames.ID_LEN),
            recv_key=frame.recv_key,
            send_key=frame.send_key,
            created_at=self._clock.now(),
        )

        def done(result: WriteResult | None) -> None:
            self._observed("create", started)
            if result is None or result.outcome is not Outcome.CREATED:
                conn.creates -= 1  # not created: it does not count against the client
                with contextlib.suppress(ValueError):
                    client.creates.remove(now)
            if result is None or result.outcome is Outcome.ID_TAKEN:
                self.internal(conn, rid)
            elif result.outcome is Outcome.QUOTA:
                self.refuse(
                    conn,
                    rid,
                    RelayErrorCode.QUOTA,
                    "quota",
                    "this relay holds its maximum number of mailboxes",
                )
            else:
                self._counters["created"] += 1
                self._records.remember(record)
                conn.reply(frames.Created(rid, record.recv_id, record.send_id))

        self._db.commit(AddMailbox(record), done)

    async def _subscribe(self, conn: RelayConnection, frame: frames.Subscribe) -> None:
        client = self._clients[conn.address]
        if frame.recv_id not in conn.receivers:
            if len(conn.receivers) >= self.config.max_subscriptions_per_connection:
                limit = f"{self.config.max_subscriptions_per_connection} mailboxes per connection"
            elif client.subscriptions >= self.config.max_subscriptions_per_address:
                limit = f"{self.config.max_subscriptions_per_address} mailboxes per address"
            else:
                limit = ""
            if limit:
                self.refuse(
                    conn,
                    frame.request_id,
                    RelayErrorCode.CLIENT_LIMIT,
                    "subscription_limit",
                    f"SUBSCRIBE refused: limit of {limit} subscribed",
                )
                return
        record = await self._records.find(frame.recv_id, by_send=False)
        if record is UNREADABLE:
            self.internal(conn, frame.request_id)  # not AUTH: the client should retry
            return
        signed = frames.auth_message(conn.nonce, FrameType.SUBSCRIBE, frame.recv_id)
        if record is None or not verify(record.recv_key, frame.signature, signed):
            self.refuse(
                conn,
                frame.request_id,
                RelayErrorCode.AUTH,
                "auth_failed",
                "SUBSCRIBE refused: unknown mailbox or bad signature",
            )
            return
        if frame.recv_id not in conn.receivers:
            conn.receivers.add(frame.recv_id)
            client.subscriptions += 1
        conn.reply(frames.Ok(frame.request_id))  # queued before any DELIVER of this mailbox
        self._deliveries.subscribe(conn, frame.recv_id)
        self._db.commit(TouchMailbox(frame.recv_id), ignore)  # in use: it must not expire

    async def _auth_send(self, conn: RelayConnection, frame: frames.AuthSend) -> None:
        record = await self._records.find(frame.send_id, by_send=True)
        if record is UNREADABLE:
            self.internal(conn, frame.request_id)
            return
        signed = frames.auth_message(conn.nonce, FrameType.AUTH_SEND, frame.send_id)
        if record is None or not verify(record.send_key, frame.signature, signed):
            self.refuse(
                conn,
                frame.request_id,
                RelayErrorCode.AUTH,
                "auth_failed",
                "AUTH_SEND refused: unknown mailbox or bad signature",
            )
            return
        conn.senders[frame.send_id] = record.recv_id
        conn.reply(frames.Ok(frame.request_id))

    def _send(self, conn: RelayConnection, frame: frames.Send, started: float) -> None:
        rid = frame.request_id
        recv_id = conn.senders.get(frame.send_id)
        if recv_id is None:
            self.refuse(
                conn,
                rid,
                RelayErrorCode.NOT_AUTHORISED,
                "not_authorised",
                "SEND needs a successful AUTH_SEND for this mailbox on this connection",
            )
            return

        size = len(frame.payload)
        conn.hold(size)

        def done(result: WriteResult | None) -> None:
            self._observed("send", started)
            conn.unhold(size)
            if result is None:
                self.internal(conn, rid)
            elif result.outcome is Outcome.NO_MAILBOX:
                conn.senders.pop(frame.send_id, None)
                self.refuse(
                    conn,
                    rid,
                    RelayErrorCode.AUTH,
                    "auth_failed",
                    "SEND refused: the mailbox no longer exists (it expired unused)",
                )
            elif result.outcome is Outcome.MAILBOX_FULL:
                self.refuse(
                    conn,
                    rid,
                    RelayErrorCode.MAILBOX_FULL,
                    "mailbox_full",
                    f"mailbox is full ({self.config.max_mailbox_depth} frames waiting)",
                )
            else:
                if result.outcome is Outcome.STORED:
                    self._counters["stored"] += 1
                    self._deliveries.stored(recv_id, result.count, result.msg_id, frame.payload)
                else:
                    self._counters["duplicates"] += 1
                    self._deliveries.maybe_stranded(recv_id, result.count, result.msg_id)
                conn.reply(frames.Stored(rid, result.msg_id))

        self._db.commit(PutMessage(recv_id, frame.payload), done)

    def _ack(self, conn: RelayConnection, frame: frames.Ack, started: float) -> None:
        rid, recv_id, msg_id = frame.request_id, frame.recv_id, frame.msg_id
        if recv_id not in conn.receivers:
            self.refuse(
                conn,
                rid,
                RelayErrorCode.NOT_AUTHORISED,
                "not_authorised",
                "ACK needs a successful SUBSCRIBE to this mailbox on this connection",
            )
            return

        def done(result: WriteResult | None) -> None:
            self._observed("ack", started)
            if result is None:
                self.internal(conn, rid)
                return
            if result.outcome is Outcome.DELETED:
                self._counters["acked"] += 1
            self._deliveries.acked(recv_id, msg_id)
            conn.reply(frames.Ok(rid))

        self._db.commit(DeleteMessage(recv_id, msg_id), done)

    def _delete(self, conn: RelayConnection, frame: frames.Delete, started: float) -> None:
        """Delete a mailbox and its frames for good (its receiver rotated it, PROTOCOL §3.4).

        Only on a connection that SUBSCRIBEd it: that proved the receive key here. Answered OK
        once the deletion is durable; the mailbox is then unknown, as one that expired.
        """
        rid, recv_id = frame.request_id, frame.recv_id
        if recv_id not in conn.receivers:
            self.refuse(
                conn,
                rid,
                RelayErrorCode.NOT_AUTHORISED,
                "not_authorised",
                "DELETE needs a successful SUBSCRIBE to this mailbox on this connection",
            )
            return

        def done(result: WriteResult | None) -> None:
            self._observed("delete", started)
            if result is None:
                self.internal(conn, rid)
                return
            self._records.forget(recv_id)
            sub = self._deliveries.get(recv_id)
            if sub is not None:
                self._deliveries.end(sub)
            if recv_id in conn.receivers:
                conn.receivers.discard(recv_id)
                self._clients[conn.address].subscriptions -= 1
            if result.outcome is Outcome.MAILBOX_DELETED:
                self._counters["mailboxes_deleted"] += 1
                self._counters["deleted_frames"] += result.count
            conn.reply(frames.Ok(rid))

        self._db.commit(DeleteMailbox(recv_id), done)


def _unobserved(kind: str, seconds: float) -> None:
    """No latency histogram (a relay built without metrics)."""


def peek_request_id(message: str | bytes) -> int:
    """The request id of a frame too broken to decode, so the error can still be matched."""
    if isinstance(message, bytes) and len(message) >= frames.HEADER.size:
        return int(frames.HEADER.unpack_from(message)[2])
    return 0


def verify(key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
