"""The control socket: how the CLI (and any local program) talks to a running station.

A Unix socket (mode 0600) in a directory only this user may write, one JSON object per line
each way::

    -> {"id": 1, "method": "send", "params": {"line": "moscow", "text": "..."}}
    <- {"id": 1, "result": {...}}            or
    <- {"id": 1, "error": {"code": "unknown_line", "message": "..."}}

Errors travel as their stable ``code`` and are rebuilt on the client side as the same
exception class, so a CLI command fails with the same named error whether it ran in-process
or through the socket. An unexpected exception in a handler is logged and answered as an
``internal`` error: it never stops the station.

Where the socket lives
----------------------
Whoever answers on the socket *is* the station to the CLI: it shows that party's safety
number and hands it the text of every ``send``. So the socket must sit where no other local
user can create or replace it (:func:`socket_path`):

- ``HOME/control.sock`` when that path fits in a Unix socket address (the station directory
  is 0700, see :mod:`backchannel.station.private`);
- else ``$XDG_RUNTIME_DIR/backchannel/<hash>.sock`` (the per-user runtime directory);
- else ``$TMPDIR/backchannel-<uid>/<hash>.sock`` (``/tmp`` when ``$TMPDIR`` is unset), as tmux
  does: a directory of this user's own, created 0700.

Both the station (before it binds) and the client (before it connects) check the directory
with ``lstat``: a directory, not a symlink, owned by this user, with no access for group or
others, in a parent that others cannot rename it out of (:func:`check_private_dir`); and the
client checks that the socket itself is a socket owned by this user with mode 0600. Anything
else is :class:`~backchannel.errors.UnsafeControlSocket`, naming the path and the fix; a
planted directory is never used, never "repaired".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from backchannel.aio import TaskSet
from backchannel.errors import (
    BackchannelError,
    ConfigError,
    InvalidArgument,
    StationNotRunning,
    TransportError,
    UnsafeControlSocket,
    error_from_code,
)
from backchannel.station.station import Station

log = logging.getLogger("backchannel.control")
MAX_REQUEST = 1 << 20


#: Longest socket path we bind: AF_UNIX allows 107 bytes on Linux, fewer on some systems.
MAX_SOCKET_PATH = 100


def socket_path(home: Path) -> Path:
    """Where the station at ``home`` listens: in ``home`` itself, or a private runtime directory."""
    path = home.resolve() / "control.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    path = runtime_dir() / f"{digest}.sock"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"the station directory's path is too long for its control socket, and so is {path}: "
            "use a shorter --home, or set XDG_RUNTIME_DIR to a short directory of yours (mode 0700)"
        )
    return path


def runtime_dir() -> Path:
    """This user's directory for sockets of stations whose own directory path is too long."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "backchannel"
    base = os.environ.get("TMPDIR") or "/tmp"
    return Path(base if os.path.isabs(base) else "/tmp") / f"backchannel-{os.getuid()}"


def check_private_dir(directory: Path) -> None:
    """Refuse a socket directory another local user could plant a socket in, or swap out.

    ``lstat`` (a symlink is refused, never followed); owned by this user; no group or other
    permission bits; and its parent either not writable by others or sticky (as ``/tmp`` is),
    so nobody else can rename the directory away and put their own in its place.
    """
    try:
        st = os.lstat(directory)
        parent = os.stat(directory.parent)
    except FileNotFoundError:
        raise StationNotRunning() from None
    except OSError as exc:
        raise UnsafeControlSocket(
            f"the control socket directory {directory} cannot be checked: {exc}"
        ) from None
    uid = os.geteuid()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeControlSocket(
            f"the control socket directory {directory} is a symlink or not a directory; another user "
            f"may have planted it: remove it (rm {directory}) and start the station again"
        )
    if st.st_uid != uid:
        raise UnsafeControlSocket(
            f"the control socket directory {directory} belongs to uid {st.st_uid}, not to you (uid {uid}); "
            "another user may have planted it: have it removed, or set XDG_RUNTIME_DIR to a directory "
            "of yours (mode 0700), or use a shorter --home"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UnsafeControlSocket(
            f"the control socket directory {directory} has mode {stat.S_IMODE(st.st_mode):04o}: others "
            f"could plant a socket in it. Run: chmod 700 {directory}"
        )
    if parent.st_mode & stat.S_IWOTH and not parent.st_mode & stat.S_ISVTX and parent.st_uid != uid:
        raise UnsafeControlSocket(
            f"{directory.parent} is writable by everyone without the sticky bit: another user could "
            "replace the control socket directory in it. Use another --home or XDG_RUNTIME_DIR"
        )


def prepare_socket_dir(path: Path) -> None:
    """The station's side: create the socket's runtime directory 0700 if needed, then check it."""
    directory = path.parent
    if directory != directory.parent and not directory.exists() and not directory.is_symlink():
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    check_private_dir(directory)


def check_socket(path: Path) -> None:
    """The client's side: the directory is private and the socket is this user's own, 0600."""
    check_private_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise StationNotRunning() from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise UnsafeControlSocket(
            f"{path} is not a socket of yours with mode 0600; remove it and start the station again"
        )


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
            "rotate_line": s.circuits.rotations.rotate,
            "line_cover": s.pacer.line_cover,
        }

    async def start(self, path: Path) -> None:
        prepare_socket_dir(path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of ours: the directory is private, checked above
        old_umask = os.umask(0o177)  # the socket is born 0600, not chmodded afterwards
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(path), limit=MAX_REQUEST)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests on one connection may be pipelined: each is answered when it completes."""
        lock = asyncio.Lock()
        tasks = TaskSet("control requests")

        async def respond(line: bytes) -> None:
            reply = await self._handle(line)
            async with lock:
                with contextlib.suppress(ConnectionError):  # the client left: nobody to answer
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()

        try:
            while line := await reader.readline():
                tasks.spawn(respond(line), "control request")
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            await tasks.join()  # requests already under way complete, as a station call should
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        request_id: Any = None
        try:
            request = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8
            return {"id": None, "error": {"code": "invalid_argument", "message": "the request is not JSON"}}
        try:
            if not isinstance(request, dict):
                raise InvalidArgument("a control request must be a JSON object")
            request_id = request.get("id")
            method = self._methods.get(str(request.get("method")))
            if method is None:
                raise InvalidArgument(f"unknown control method {request.get('method')!r}")
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise InvalidArgument("control params must be an object")
            # The parameters are checked against the signature before the call: a TypeError
            # raised *inside* a handler is a bug of ours (internal), not the caller's mistake.
            try:
                inspect.signature(method).bind(**params)
            except TypeError as exc:
                raise InvalidArgument(f"bad parameters: {exc}") from None
            result = method(**params)
            if isinstance(result, Awaitable):
                result = await result
            return {"id": request_id, "result": _json(result)}
        except BackchannelError as exc:
            return {"id": request_id, "error": {"code": exc.code, "message": str(exc)}}
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
        check_socket(self.path)
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
