"""One relay address that leads each station process to its own relay process.

Stations on one line share their relay URL (it is in the invitation), so to attach the
sender to relay process A and the receiver to relay process B, as two stations far apart
would be behind a load balancer, the URL names this forwarder on 127.0.0.1. For every
connection it finds the local process that opened it (``/proc/net/tcp`` gives the socket's
inode, ``/proc/PID/fd`` the process holding it) and forwards the bytes, unchanged, to the
port routed for that process. Routes name ports, so a relay restarted on its port is
reached again. It runs in its own thread; ``stop()`` closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable


class Switchboard:
    def __init__(self, routes: dict[int, Callable[[], int]]) -> None:
        """``routes``: process id -> a function giving the port its connections go to now."""
        self.routes = routes
        self.port = 0
        self.connections: dict[int, int] = dict.fromkeys(routes, 0)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="switchboard")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the switchboard did not start")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._forward(reader, writer)
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_port = int(writer.get_extra_info("peername")[1])
        pid = _owner(client_port, self.port, self.routes)
        if pid is None:
            writer.close()
            return
        self.connections[pid] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.routes[pid]())
        except OSError:
            writer.close()  # the relay is down: the station sees a refused connection, and retries
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def _owner(client_port: int, server_port: int, routes: dict[int, Callable[[], int]]) -> int | None:
    """The routed process that holds the client end of the connection from ``client_port``."""
    local, remote = f"0100007F:{client_port:04X}", f"0100007F:{server_port:04X}"
    inode = ""
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                inode = fields[9]
                break
    if not inode:
        return None
    wanted = f"socket:[{inode}]"
    for pid in routes:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                        return pid
    return None
