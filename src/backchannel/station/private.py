"""Local secrecy: the station directory, and what the station writes, belong to its user alone.

Theory of operation
-------------------
The station directory holds the keystore, the database (operators' Argon2id hashes, the audit
log, drafts, console session and CSRF tokens, line metadata), its WAL and SHM, the config, the
lock and the control socket. No other account on the machine may read, list or write any of it,
whatever the umask of whoever started the station:

- the directory is created 0700 and tightened to 0700 at every open (:func:`secure_home`);
- every file the station creates is created 0600 with an explicit mode (:func:`write_private`,
  :func:`replace_private`, :func:`create_private`), never left to the umask. SQLite makes the
  ``-wal`` and ``-shm`` files with the mode of the database file, so the database is created
  0600 before SQLite first opens it;
- files found looser at an open (written by an older version, or the config by an editor)
  are tightened to 0600 there and then.

The CLI also sets its process umask to 077 (:func:`private_umask`), so a file some library
creates on its behalf cannot come out readable either.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from backchannel.errors import InvalidArgument

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> None:
    """New files and directories of this process: for its user only."""
    os.umask(0o077)


def secure_home(home: Path) -> None:
    """Create ``home`` 0700 if needed; tighten it and everything in it (symlinks not followed)."""
    home.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(home, DIR_MODE)
    for root, dirs, files in os.walk(home):
        for name in dirs:
            _tighten(Path(root) / name, DIR_MODE)
        for name in files:
            _tighten(Path(root) / name, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & ~mode:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)


def create_private(path: Path) -> None:
    """Make sure ``path`` exists as a 0600 file (empty if new) before a library opens it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by this user only (an existing file is made 0600 too).

    For files the operator asked for outside the station directory: exports, invitations.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, FILE_MODE)
        _write_all(fd, data)
    finally:
        os.close(fd)


def replace_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, 0600, durable once this returns.

    A temporary file beside it is written and fsynced, renamed over ``path``, and the
    directory fsynced so the rename itself survives a crash: at every instant ``path`` holds
    either the old bytes or the new, never a mix.
    """
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crash; O_EXCL below refuses anything planted meanwhile
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
