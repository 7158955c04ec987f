"""A station's connection to one relay: requests, replies, pushed deliveries, reconnects.

Theory of operation
-------------------
A background task keeps one WebSocket open to the relay, forever, until :meth:`close`.
Each connection is a :class:`rs.Session`: it waits for ``Welcome`` (the session nonce),
proves every registered sender (AUTH_SEND) and receiver (SUBSCRIBE) by signing that nonce,
then reads frames until the socket dies. Replies are matched to requests by request id, so
any number of requests may be in flight (pipelining); pushed DELIVER frames go onto the
station's ``deliveries`` queue. When the socket dies every pending request fails with
``TransportError`` and the loop reconnects with jittered exponential backoff (0.05 s
doubling to 2 s). Registrations (``subscribe``, ``add_sender``) outlive connections: the
relay re-pushes every unacknowledged frame after each SUBSCRIBE, so nothing is lost across
a reconnect, and duplicates are the station's to drop (it does so by sequence number).

``send`` and ``ack`` never wait for a connection: a circuit that is down fails fast, and
the delivery layer retries over this or another circuit.

Faults between here and the relay (a middlebox that drops, delays, duplicates or reorders
WebSocket messages, or cuts connections) are survived this way:

- a request whose request or reply is lost fails with ``TransportError`` after
  ``request_timeout`` (the caller retries; SEND is idempotent at the relay, ACK too);
- a connection cut mid-request fails every pending request with ``TransportError`` at once,
  and the loop reconnects and proves every registration again;
- a SUBSCRIBE that times out (or meets a relay error that says "retry") is retried on the
  same connection until it succeeds or the connection ends: a lost SUBSCRIBE must not leave
  a mailbox silently unheard on a connection that otherwise works;
- replies nobody waits for (duplicated, or late after a timeout) are ignored; a duplicated
  DELIVER is passed on (the station drops copies by sequence number); a lost DELIVER is
  pushed again by the relay after its ``redeliver_seconds``;
- a connection that dies silently is noticed by WebSocket keepalive: a ping every
  ``ping_interval`` s, closed when the pong is ``ping_timeout`` s late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed, WebSocketException

from backchannel.aio import TaskSet
from backchannel.clock import Clock, SystemClock
from backchannel.errors import BackchannelError, InvalidArgument, ProtocolError, RelayRefused, TransportError
from backchannel.proto import frames
from backchannel.proto.frames import FrameType
from backchannel.station import relay_session as rs
from backchannel.station.backoff import next_backoff
from backchannel.station.relay_session import PING_INTERVAL, PING_TIMEOUT, Delivery, ReceiveLimit, Signer
from backchannel.station.relay_trust import RelayTrust
from backchannel.station.relay_url import shown

__all__ = ["Delivery", "ReceiveLimit", "RelayLink", "Signer"]

_LOG = logging.getLogger("backchannel.station.relay_link")


class RelayLink:
    """One station's connection to one relay, re-established with backoff forever until closed."""

    def __init__(
        self,
        url: str,
        deliveries: asyncio.Queue[Delivery],
        *,
        clock: Clock | None = None,
        on_connected: Callable[[bool], None] | None = None,
        request_timeout: float = 10.0,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        receive_limit: ReceiveLimit | None = None,
        trust: RelayTrust | None = None,
    ) -> None:
        rs.require_positive(
            request_timeout=request_timeout, ping_interval=ping_interval, ping_timeout=ping_timeout
        )
        self.url = url
        #: The URL as logs and errors show it: without the relay's access token.
        self.shown_url = shown(url)
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        #: Wall-clock time of the last frame received from the relay (None: never).
        self.last_contact: float | None = None
        #: The latest refusal of a SUBSCRIBE/AUTH_SEND done on connect, per mailbox id.
        self.registration_errors: dict[bytes, BackchannelError] = {}
        self._deliveries = deliveries
        self._clock = clock or SystemClock()
        self._on_connected = on_connected
        self._subs: dict[bytes, Signer] = {}
        self._senders: dict[bytes, Signer] = {}
        self._session: rs.Session | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        #: Every task of this link (the connect loop, AUTH_SENDs, SUBSCRIBEs): ended by close().
        self._tasks = TaskSet(f"relay-link {self.shown_url}")
        self._next_rid = 0
        self._window = rs.ReceiveWindow(receive_limit)
        #: Monotonic time before which the link does not connect (see :meth:`suspend`).
        self._suspended_until = 0.0
        self.trust = trust or RelayTrust(url, self.shown_url, allow_plain=False)  # (TLS, pin, refusal)

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Start the background connect loop; returns immediately."""
        if self._runner is None and not self._closing:
            self._runner = self._tasks.spawn(self._run())

    async def close(self) -> None:
        """Stop for good: close the socket, fail pending requests with ``TransportError``."""
        self._closing = True
        session = self._session
        if session is not None:
            session.fail_all("the relay link was closed")
        await self._tasks.close()
        if session is not None:
            with contextlib.suppress(Exception):
                await session.ws.close()
        self._set_connected(False)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until connected and registered; ``TransportError`` after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                await self.trust.until_connected(self._connected.is_set)
        except TimeoutError:
            raise TransportError(f"no connection to relay {self.shown_url} within {timeout:g} s") from None

    def suspend(self, seconds: float) -> None:
        """Drop the connection now and do not reconnect for ``seconds`` (a relay that floods).

        Requests in flight fail with ``TransportError``; registrations are kept, so the
        link proves them again when it reconnects after the pause.
        """
        self._suspended_until = self._clock.monotonic() + seconds
        session = self._session
        if session is not None:
            session.fail_all(f"the station suspended relay {self.url}")
            self._window.wake()  # a reader waiting for room sees the session is over
            transport = session.ws.transport
            if transport is not None:
                transport.abort()  # no closing handshake with a relay that floods us
        self._set_connected(False)

    @property
    def suspended(self) -> bool:
        return self._clock.monotonic() < self._suspended_until

    def processed(self, delivery: Delivery) -> None:
        """The station is done with a frame this link delivered: its room is free again."""
        self._window.processed(len(delivery.payload))

    def ack_soon(self, recv_id: bytes, msg_id: bytes) -> None:
        """Acknowledge a frame without waiting for the relay's answer (nor keeping the payload).

        ACKs are written in order by one task per connection; without a connection they are
        dropped, which is harmless: the relay pushes the frame again after the next SUBSCRIBE
        and the station drops the copy.
        """
        session = self._session
        if session is not None and session.alive and not self._closing:
            session.acks.append((recv_id, msg_id))
            session.ack_wake.set()

    # ---- registrations -----------------------------------------------------------------

    def subscribe(self, recv_id: bytes, signer: Signer) -> None:
        """Receive from a mailbox, now and after every reconnect."""
        rs.check_id(recv_id, "recv_id")
        self._subs[recv_id] = signer
        session = self._session
        if session is not None and session.alive:
            self._subscribe_on(session, recv_id)

    def resubscribe(self) -> int:
        """SUBSCRIBE again to every mailbox on the live connection; returns how many.

        The relay then starts each subscription afresh and pushes every frame still stored
        and unacknowledged: a frame a relay stored but never pushed (issue 14) arrives. The
        station drops the copies by sequence number. Used when a gap stays open (monitor).
        """
        session = self._session
        if session is None or not session.alive:
            return 0
        for recv_id in list(self._subs):
            session.subscribed.discard(recv_id)
            self._subscribe_on(session, recv_id)
        return len(self._subs)

    def unsubscribe(self, recv_id: bytes) -> None:
        """Stop receiving from a mailbox after the next reconnect (the relay has no UNSUBSCRIBE)."""
        self._subs.pop(recv_id, None)

    def remove_sender(self, send_id: bytes) -> None:
        self._senders.pop(send_id, None)

    def in_use(self) -> bool:
        """Whether any mailbox is still received from or sent to through this link."""
        return bool(self._subs or self._senders)

    def receives(self, recv_id: bytes) -> bool:
        """Whether this link subscribed to ``recv_id`` (a relay may not deliver for others)."""
        return recv_id in self._subs

    def add_sender(self, send_id: bytes, signer: Signer) -> None:
        """Allow ``send`` to this mailbox; AUTH_SEND is proven once per connection."""
        rs.check_id(send_id, "send_id")
        self._senders[send_id] = signer
        session = self._session
        if session is not None and session.alive:
            self._auth_task(session, send_id)

    # ---- requests ----------------------------------------------------------------------

    async def create_mailbox(self, recv_key: bytes, send_key: bytes) -> tuple[bytes, bytes]:
        """Create a mailbox for these two Ed25519 public keys; returns (recv_id, send_id)."""
        if len(recv_key) != frames.KEY_LEN or len(send_key) != frames.KEY_LEN:
            raise InvalidArgument("mailbox keys must be 32-byte Ed25519 public keys")
        if not self.connected:
            await self.wait_connected(self.request_timeout)
        session = self._live_session()
        reply = await self._request(session, lambda rid: frames.Create(rid, recv_key, send_key))
        created = rs.expect(reply, frames.Created, "CREATE")
        return created.recv_id, created.send_id

    async def send(self, send_id: bytes, payload: bytes) -> bytes:
        """Store ``payload`` in a mailbox; returns the relay's msg_id once it is durable."""
        rs.check_id(send_id, "send_id")
        if send_id not in self._senders:
            raise InvalidArgument("unknown send_id: call add_sender() first")
        session = self._live_session()
        await rs.authorised(self._auth_task(session, send_id), self.shown_url)
        reply = await self._request(session, lambda rid: frames.Send(rid, send_id, payload))
        return rs.expect(reply, frames.Stored, "SEND").msg_id

    async def ack(self, recv_id: bytes, msg_id: bytes) -> None:
        """Tell the relay a delivered frame is safely stored here, so it may delete it."""
        rs.check_id(recv_id, "recv_id")
        rs.check_id(msg_id, "msg_id")
        session = self._live_session()
        reply = await self._request(session, lambda rid: frames.Ack(rid, recv_id, msg_id))
        rs.expect(reply, frames.Ok, "ACK")

    async def delete_mailbox(self, recv_id: bytes) -> None:
        """DELETE our mailbox and its frames (rotation): only on a connection that SUBSCRIBEd it, so
        after the registrations; then it is subscribed no more. ``RelayRefused`` if refused."""
        rs.check_id(recv_id, "recv_id")
        await self.wait_connected(self.request_timeout)
        session = self._live_session()
        rs.expect(await self._request(session, lambda rid: frames.Delete(rid, recv_id)), frames.Ok, "DELETE")
        self.unsubscribe(recv_id)
        session.subscribed.discard(recv_id)

    async def ping(self) -> float:
        """Round-trip a PING through the relay; returns the round-trip time in seconds."""
        session = self._live_session()
        started = self._clock.monotonic()
        await self._request(session, frames.Ping)
        return self._clock.monotonic() - started

    # ---- internals: requests -----------------------------------------------------------

    def _live_session(self) -> rs.Session:
        session = self._session
        if session is None or not session.alive or self._closing:
            raise TransportError(f"not connected to relay {self.shown_url}")
        return session

    def _rid(self) -> int:
        self._next_rid = self._next_rid % rs.MAX_RID + 1  # 1 .. 2**32-1; 0 is for pushes
        return self._next_rid

    async def _request(self, session: rs.Session, build: Callable[[int], frames.Frame]) -> frames.Frame:
        """Send one request and wait for its reply; ERROR becomes ``RelayRefused``.

        Nothing is awaited before the frame is written, so concurrent callers put their
        frames on the wire in the order they called.
        """
        if not session.alive:
            raise TransportError(f"connection to relay {self.shown_url} lost")
        rid = self._rid()
        future: asyncio.Future[frames.Frame] = asyncio.get_running_loop().create_future()
        session.pending[rid] = future
        try:
            async with asyncio.timeout(self.request_timeout):
                await session.ws.send(frames.encode(build(rid)))
                reply = await future
        except TimeoutError:
            raise TransportError(
                f"relay {self.shown_url} did not answer within {self.request_timeout:g} s"
            ) from None
        except (ConnectionClosed, OSError) as exc:
            raise TransportError(f"connection to relay {self.shown_url} lost: {exc}") from exc
        finally:
            session.pending.pop(rid, None)
        if isinstance(reply, frames.Error):
            raise RelayRefused(f"relay refused: {reply.message}", reply.code)
        return reply

    def _auth_task(self, session: rs.Session, send_id: bytes) -> asyncio.Task[None]:
        """The AUTH_SEND for ``send_id`` on this connection, started on first need."""
        task = session.auth.get(send_id)
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = self._tasks.spawn(
                self._register(
                    session, send_id, self._senders[send_id], FrameType.AUTH_SEND, raise_errors=True
                ),
                report=False,  # (its senders await it; _swallow marks an unawaited failure seen)
            )
            task.add_done_callback(rs.swallow)
            session.auth[send_id] = task
        return task

    def _subscribe_on(self, session: rs.Session, recv_id: bytes) -> asyncio.Task[None] | None:
        """SUBSCRIBE on this connection unless already done (None then)."""
        if recv_id in session.subscribed:
            return None
        session.subscribed.add(recv_id)
        return self._tasks.spawn(self._register(session, recv_id, self._subs[recv_id], FrameType.SUBSCRIBE))

    async def _register(
        self,
        session: rs.Session,
        mailbox_id: bytes,
        signer: Signer,
        kind: FrameType,
        *,
        raise_errors: bool = False,
    ) -> None:
        """Prove a capability (SUBSCRIBE or AUTH_SEND) on this connection.

        A SUBSCRIBE is retried (with backoff) while this connection lives and the failure
        may pass: a lost request or reply, or a relay error that asks for a retry. An
        AUTH_SEND is not: the next ``send`` starts a new one.
        """
        try:
            signature = signer(frames.auth_message(session.nonce, kind, mailbox_id))
            build = rs.registration(kind, mailbox_id, signature)
        except ValueError as exc:  # a signer that returned the wrong length
            error = InvalidArgument(f"signer for {kind.name} returned a bad signature: {exc}")
            self.registration_errors[mailbox_id] = error
            if raise_errors:
                raise error from exc
            return
        delay = rs.BACKOFF_START
        while True:
            try:
                await self._request(session, build)
                self.registration_errors.pop(mailbox_id, None)
                return
            except BackchannelError as exc:
                self.registration_errors[mailbox_id] = exc
                _LOG.warning("relay %s: %s of a mailbox failed: %s", self.shown_url, kind.name, exc)
                if kind is FrameType.SUBSCRIBE and rs.retryable(exc) and self._usable(session):
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = next_backoff(delay, rs.BACKOFF_MAX)
                    if self._usable(session):
                        continue
                if raise_errors:
                    raise
                return

    def _usable(self, session: rs.Session) -> bool:
        return session.alive and self._session is session and not self._closing

    # ---- internals: the connection loop ------------------------------------------------

    async def _run(self) -> None:
        if self.trust.unusable():  # (plain ws:// beyond loopback, not allowed: said once)
            return
        delay = rs.BACKOFF_START
        while not self._closing:
            pause = self._suspended_until - self._clock.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            try:
                if await self._connect_once():
                    delay = rs.BACKOFF_START  # the session worked; reconnect quickly
                elif self.trust.refusal is not None:
                    delay = rs.BACKOFF_MAX  # an impostor does not go away in 50 ms
            except asyncio.CancelledError:
                raise
            except Exception:  # never let anything kill the loop
                _LOG.exception("relay %s: unexpected failure in the connection loop", self.shown_url)
            if self._closing:
                break
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = next_backoff(delay, rs.BACKOFF_MAX)

    async def _connect_once(self) -> bool:
        """One connection from open to close; True if it got as far as ``Welcome``."""
        try:
            ws = await self.trust.connect(
                compression=None,
                max_size=rs.MAX_INCOMING,
                open_timeout=self.request_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
            )
        except (OSError, WebSocketException, TimeoutError) as exc:
            _LOG.info(
                "relay %s: connect failed: %s", self.shown_url, str(exc).replace(self.url, self.shown_url)
            )
            return False
        session: rs.Session | None = None
        try:
            async with asyncio.timeout(self.request_timeout):
                first = await ws.recv()
            welcome = rs.decode(first)
            if isinstance(welcome, frames.Error):  # e.g. TOO_MANY_CONNECTIONS: retried with backoff
                raise ProtocolError(f"relay refused the connection: {welcome.message}")
            if not isinstance(welcome, frames.Welcome):
                raise ProtocolError("relay did not start with WELCOME")
            session = rs.Session(ws, welcome.nonce)
            self._session = session
            self.last_contact = self._clock.now()
            registering = self._tasks.spawn(self._register_all(session), report=False)
            acking = self._tasks.spawn(rs.write_acks(session, self._rid), report=False)
            try:
                await self._read(session)
            finally:
                registering.cancel()
                acking.cancel()
                await asyncio.gather(registering, acking, return_exceptions=True)
        except (ConnectionClosed, OSError, TimeoutError, ProtocolError) as exc:
            _LOG.info("relay %s: connection ended: %s", self.shown_url, exc)
        finally:
            if session is not None:
                # Pending requests (and AUTH_SENDs awaiting them) now fail with
                # TransportError; nothing is cancelled, so callers never see CancelledError.
                session.fail_all(f"connection to relay {self.shown_url} lost")
            if self._session is session:
                self._session = None
            self._set_connected(False)
            with contextlib.suppress(Exception):
                await ws.close()
        return session is not None

    async def _register_all(self, session: rs.Session) -> None:
        """After Welcome: prove all senders and subscribe all mailboxes, then 'connected'."""
        # Shielded: cancelling this gather must not cancel AUTH_SENDs that sends share.
        jobs = [asyncio.shield(self._auth_task(session, s)) for s in list(self._senders)]
        for recv_id in list(self._subs):
            job = self._subscribe_on(session, recv_id)
            if job is not None:
                jobs.append(job)
        await asyncio.gather(*jobs, return_exceptions=True)
        if session.alive and self._session is session:
            self._set_connected(True)

    async def _read(self, session: rs.Session) -> None:
        """Dispatch frames until the socket closes; a bad frame is logged, not fatal."""
        async for message in session.ws:
            self.last_contact = self._clock.now()
            try:
                frame = rs.decode(message)
            except ProtocolError as exc:
                _LOG.warning("relay %s sent a bad frame: %s", self.shown_url, exc)
                continue
            if isinstance(frame, frames.Deliver):
                if not await self._window.wait_room(len(frame.payload), lambda: self._usable(session)):
                    return
                await self._deliveries.put(Delivery(frame.recv_id, frame.msg_id, frame.payload, self))
                continue
            future = session.pending.get(frame.request_id)
            if future is None:
                if isinstance(frame, frames.Error):
                    _LOG.warning("relay %s: error %d: %s", self.shown_url, frame.code, frame.message)
                continue
            if not future.done():
                future.set_result(frame)

    # ---- small helpers -----------------------------------------------------------------

    def _set_connected(self, up: bool) -> None:
        if up == self._connected.is_set():
            return
        if up:
            self._connected.set()
            self.trust.connected()
        else:
            self._connected.clear()
        if self._on_connected is not None:
            try:
                self._on_connected(up)
            except Exception:
                _LOG.exception("relay %s: on_connected callback failed", self.shown_url)
