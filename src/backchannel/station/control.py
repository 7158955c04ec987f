"""The control socket: how the CLI (and any local program) talks to a running station.

A Unix socket in the station directory (mode 0600), one JSON object per line each way::

    -> {"id": 1, "method": "send", "params": {"line": "moscow", "text": "..."}}
    <- {"id": 1, "result": {...}}            or
    <- {"id": 1, "error": {"code": "unknown_line", "message": "..."}}

Errors travel as their stable ``code`` and are rebuilt on the client side as the same
exception class, so a CLI command fails with the same named error whether it ran in-process
or through the socket. An unexpected exception in a handler is logged and answered as an
``internal`` error: it never stops the station.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from backchannel.errors import (
    BackchannelError,
    InvalidArgument,
    StationNotRunning,
    TransportError,
    error_from_code,
)
from backchannel.station.station import Station

log = logging.getLogger("backchannel.control")
MAX_REQUEST = 1 << 20


def socket_path(home: Path) -> Path:
    """``home/control.sock``, or a short path under /tmp when that is too long for AF_UNIX."""
    path = home.resolve() / "control.sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"backchannel-{digest}.sock"


def _json(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


class ControlServer:
    def __init__(self, station: Station) -> None:
        self.station = station
        self._server: asyncio.AbstractServer | None = None
        s = station
        self._methods: dict[str, Callable[..., Any]] = {
            "ping": lambda: {"name": s.name, "pending": s.sender.pending(), "links": s.links_open()},
            "identity": s.identity,
            "invite": s.invite,
            "accept": s.accept,
            "lines": s.lines,
            "line": s.line,
            "invitations": s.pending_invitations,
            "send": s.send,
            "ack": s.ack,
            "inbox": s.inbox,
            "outbox": s.outbox,
            "message": s.message,
            "verify": s.verify,
            "transcript": s.transcript,
            "counters": s.counters,
            "alarms": s.list_alarms,
            "ack_alarm": s.ack_alarm,
            "add_circuit": s.add_circuit,
            "checkpoint": s.checkpoint,
            "drafts": s.drafts,
            "release": s.release,
            "export_transcript": s.export_transcript,
            "verify_transcript": s.verify_transcript,
            "remove_circuit": s.remove_circuit,
            "circuit_proposals": s.circuit_proposals,
            "approve_circuit": s.approve_circuit,
            "reject_circuit": s.reject_circuit,
        }

    async def start(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(path), limit=MAX_REQUEST)
        os.chmod(path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests on one connection may be pipelined: each is answered when it completes."""
        lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()

        async def respond(line: bytes) -> None:
            reply = await self._handle(line)
            async with lock:
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()

        try:
            while line := await reader.readline():
                task = asyncio.create_task(respond(line))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        request_id: Any = None
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise InvalidArgument("a control request must be a JSON object")
            request_id = request.get("id")
            method = self._methods.get(str(request.get("method")))
            if method is None:
                raise InvalidArgument(f"unknown control method {request.get('method')!r}")
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise InvalidArgument("control params must be an object")
            try:
                result = method(**params)
            except TypeError as exc:
                raise InvalidArgument(f"bad parameters: {exc}") from None
            if isinstance(result, Awaitable):
                result = await result
            return {"id": request_id, "result": _json(result)}
        except BackchannelError as exc:
            return {"id": request_id, "error": {"code": exc.code, "message": str(exc)}}
        except ValueError:  # not JSON, or not UTF-8
            return {"id": None, "error": {"code": "invalid_argument", "message": "the request is not JSON"}}
        except Exception as exc:
            log.exception("control request failed")
            return {"id": request_id, "error": {"code": "internal", "message": f"internal error: {exc}"}}


class ControlClient:
    """A blocking client for the control socket (the CLI uses it)."""

    def __init__(self, home: Path, timeout: float = 60.0) -> None:
        self.path = socket_path(home)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._next_id = 0

    def connect(self) -> ControlClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise StationNotRunning() from None
        self._sock, self._file = sock, sock.makefile("rwb")
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._file.close()
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pipeline(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Send many requests before reading any reply; results (or errors) in call order."""
        if self._sock is None:
            self.connect()
        first = self._next_id + 1
        try:
            for method, params in calls:
                self._next_id += 1
                request = {"id": self._next_id, "method": method, "params": params}
                self._file.write(json.dumps(request).encode() + b"\n")
            self._file.flush()
            replies: dict[int, Any] = {}
            while len(replies) < len(calls):
                line = self._file.readline()
                if not line:
                    raise TransportError("the station closed the control connection")
                reply = json.loads(line)
                replies[reply["id"]] = reply
        except OSError as exc:
            raise TransportError(f"the station's control socket failed: {exc}") from None
        except ValueError:
            raise TransportError("the station's control reply was cut off") from None
        results: list[Any] = []
        for request_id in range(first, first + len(calls)):
            reply = replies[request_id]
            if "error" in reply:
                results.append(error_from_code(reply["error"]["code"], reply["error"]["message"]))
            else:
                results.append(reply["result"])
        return results

    def call(self, method: str, **params: Any) -> Any:
        if self._sock is None:
            self.connect()
        self._next_id += 1
        request = {"id": self._next_id, "method": method, "params": params}
        try:
            self._file.write(json.dumps(request).encode() + b"\n")
            self._file.flush()
            line = self._file.readline()
        except OSError as exc:
            raise TransportError(f"the station's control socket failed: {exc}") from None
        if not line:
            raise TransportError("the station closed the control connection")
        try:
            reply = json.loads(line)
        except ValueError:
            raise TransportError("the station's control reply was cut off") from None
        if "error" in reply:
            raise error_from_code(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]
