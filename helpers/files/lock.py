"""One process at a time in a folder: :func:`folder_lock` takes an exclusive lock on ``<folder>/.grpo-notebooks.lock``
and writes who holds it (pid, host, start time, command) to ``<folder>/.grpo-notebooks.owner.json``.

The lock itself is `filelock <https://py-filelock.readthedocs.io>`_'s ``FileLock`` (``flock`` on Unix, ``LockFileEx``
on Windows): the operating system drops it when its process ends, however it ends (error, Ctrl-C, ``kill -9``), so a
lock is never left held by a dead process. The owner record is ours: filelock keeps no details of a holder that another
process can read. A second process is refused at once with :class:`FolderInUseError`, one line naming the holder; a
process that takes the lock and finds a record left behind (its writer ended without releasing: killed, or the machine
stopped) says so (:attr:`FolderLock.taken_over`). The record is removed on release; the lock file may stay.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers.files.atomic import atomic_write, pid_alive

LOCK_NAME, OWNER_NAME = ".grpo-notebooks.lock", ".grpo-notebooks.owner.json"
_WAIT_FOR_RECORD_S = 2.0  # a holder writes its record right after it takes the lock


class FolderInUseError(RuntimeError):
    """Another process holds the folder's lock; the message names it (pid, host, start, command) and the fix."""


@dataclass(frozen=True)
class FolderLock:
    """A held lock: the folder, this process's owner record, and the record of a holder that ended without
    releasing (``None`` if there was none)."""

    folder: Path
    owner: dict
    taken_over: dict | None

    @property
    def takeover_line(self) -> str | None:
        """One line saying whose stale lock was taken over, or ``None``."""
        if self.taken_over is None:
            return None
        return (f"took over the lock of {self.folder}: it was left by {describe_owner(self.taken_over)}, which "
                "ended without releasing it (killed, or its machine stopped)")


def describe_owner(record: dict | None) -> str:
    """``pid 123 on host h, started 2026-12-06 21:10:05: grpo-notebooks run --out x`` (what a record holds).

    >>> describe_owner({"pid": 7, "host": "h", "started": "2026-12-06 21:10:05", "command": "grpo-notebooks run"})
    'pid 7 on host h, started 2026-12-06 21:10:05: grpo-notebooks run'
    >>> describe_owner(None)
    'a process that has not written who it is yet'
    """
    if not record:
        return "a process that has not written who it is yet"
    text = f"pid {record.get('pid', '?')} on host {record.get('host', '?')}, started {record.get('started', '?')}"
    return text + (f": {record['command']}" if record.get("command") else "")


def _read_record(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _live(record: dict | None) -> bool:
    """Whether ``record`` may belong to a running process (another host's processes cannot be checked)."""
    if not record:
        return False
    if record.get("host") != socket.gethostname():
        return True
    pid = record.get("pid")
    return isinstance(pid, int) and pid_alive(pid)


def _holder(path: Path) -> dict | None:
    """The holder's record; waits briefly while the file holds none or a dead process's (the holder has just
    taken the lock and not yet replaced it)."""
    deadline = time.monotonic() + _WAIT_FOR_RECORD_S
    record = _read_record(path)
    while not _live(record) and time.monotonic() < deadline:
        time.sleep(0.05)
        record = _read_record(path)
    return record


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str | None = None, *,
                fix: str = "wait for it to finish or stop it, or use another folder") -> Iterator[FolderLock]:
    """Hold ``folder``'s lock for the block (the folder must exist); refuse with :class:`FolderInUseError` if
    another process holds it. ``command`` goes into the owner record (default: this process's command line);
    ``fix`` ends the refusal."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    record_path = folder / OWNER_NAME
    lock = FileLock(str(folder / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = _holder(record_path)
        raise FolderInUseError(f"{folder} is in use by another run ({describe_owner(holder)}); fix: {fix}.") from None
    try:
        left = _read_record(record_path)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        atomic_write(record_path, json.dumps(owner, indent=2))
        taken = left if left and (left.get("pid"), left.get("host")) != (owner["pid"], owner["host"]) else None
        yield FolderLock(folder, owner, taken)
    finally:
        try:
            record_path.unlink(missing_ok=True)
        finally:
            lock.release()
