"""Helpers for the local-user attack tests (``tests/adversarial/test_local_*.py``).

A *local user* is another account on the station's machine: it can list and read whatever the
station leaves readable, and create files in world-writable directories such as ``/tmp``.
These helpers look at the station directory as that user would (modes and owners) and plant
a listening Unix socket where a careless client might connect.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path


def loose_modes(roots: Iterable[Path]) -> tuple[int, list[str]]:
    """Walk ``roots`` (files or directories, symlinks not followed).

    Returns (entries checked, problems): a directory must be 0700 and anything else 0600 or
    tighter, so no other local user reads, lists or writes any of it.
    """
    checked, problems = 0, []
    for root in roots:
        for path in [root, *(root.rglob("*") if root.is_dir() else [])]:
            st = os.lstat(path)
            checked += 1
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{path}: a symlink")
                continue
            mode = stat.S_IMODE(st.st_mode)
            wanted = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if mode & ~wanted:
                problems.append(f"{path}: mode {mode:04o}, wanted {wanted:04o}")
    return checked, problems


@contextlib.contextmanager
def private_tmpdir() -> Iterator[Path]:
    """A short directory of this test's own for ``$TMPDIR`` (Unix socket paths are short)."""
    path = Path(tempfile.mkdtemp(prefix="bc-", dir="/tmp"))
    try:
        yield path
    finally:
        for entry in [path, *path.rglob("*")]:  # a test may have given a part away or locked it
            with contextlib.suppress(OSError):
                os.lchown(entry, os.getuid(), os.getgid())
                if entry.is_dir() and not entry.is_symlink():
                    os.chmod(entry, 0o700)
        shutil.rmtree(path, ignore_errors=True)


class PlantedSocket:
    """A Unix socket a local user planted: it accepts, records every byte, answers nothing useful."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self.received = b""
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                with self._lock:
                    self.connections += 1
                with contextlib.suppress(OSError):
                    data = conn.recv(65536)
                    with self._lock:
                        self.received += data
                    # What the attacker would answer: a fake safety number, or anything at all.
                    conn.sendall(b'{"id": 1, "error": {"code": "internal", "message": "planted"}}\n')

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
