"""A full or read-only disk as one line (:class:`DiskFullError`, :class:`ReadOnlyError`): the folder, the
space free and needed, and the fix (:func:`on_full_disk` converts ``OSError`` inside a block)."""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class DiskFullError(OSError):
    """A save ran out of disk space; the message names the folder, the space needed and the fix."""


class ReadOnlyError(PermissionError):
    """A folder cannot be written; the message names it and the fix."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def format_bytes(n: float) -> str:
    """``n`` bytes, readably.

    >>> format_bytes(512), format_bytes(3 * 2**20), format_bytes(2.5 * 2**30)
    ('512 B', '3.0 MiB', '2.5 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Full and read-only disks
# ---------------------------------------------------------------------------------------------


def _free(folder: Path) -> int | None:
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _kind(exc: BaseException) -> str | None:
    """``"full"``, ``"read-only"`` or ``None`` for an exception raised while writing."""
    if isinstance(exc, (DiskFullError, ReadOnlyError)):
        return None
    code = getattr(exc, "errno", None)
    if code in _FULL:
        return "full"
    if code in _READ_ONLY:
        return "read-only"
    text = str(exc)
    if "No space left" in text or "StorageFull" in text or "Disk quota exceeded" in text:
        return "full"
    if "Read-only file system" in text or "ReadOnlyFilesystem" in text:
        return "read-only"
    if "inline_container.cc" in text and ("write" in text.lower() or "unexpected pos" in text):
        return "full"  # torch.save's zip writer reports a failed write this way; a full disk is its usual cause
    cause = exc.__cause__ or exc.__context__
    return _kind(cause) if cause is not None and cause is not exc else None


def disk_error(exc: BaseException, folder: str | os.PathLike, *, needed: int | None = None,
               what: str = "the files", fix: str | None = None) -> OSError | None:
    """A one-line :class:`DiskFullError` or :class:`ReadOnlyError` for ``exc`` raised while writing
    ``what`` into ``folder`` (``needed``: bytes the write takes, estimated), or ``None`` if ``exc`` is
    something else. ``fix``: the advice that ends the line (default: free space or make the folder
    writable, or write to another folder)."""
    kind = _kind(exc)
    folder = Path(folder)
    if kind == "full":
        free = _free(folder)
        need = f"about {format_bytes(needed)} needed" if needed else "more space needed"
        have = f"{format_bytes(free)} free" if free is not None else "free space unknown"
        err = DiskFullError(f"the disk is full: writing {what} to {folder} failed ({have}, {need}); fix: " + (
            fix or "free space on that disk, or write to a folder on another disk (run_dir=... / --out ...)"))
        err.errno = errno.ENOSPC
        return err
    if kind == "read-only":
        err = ReadOnlyError(f"cannot write {what} to {folder}: the folder is read-only or not yours "
                            f"({first_line(exc)}); fix: " + (fix or "make it writable, or write to another folder "
                                                              "(run_dir=... / --out ...)"))
        err.errno = errno.EROFS
        return err
    return None


@contextmanager
def on_full_disk(folder: str | os.PathLike, *, needed: int | None = None, what: str = "the files"):
    """Turn a full or read-only disk under the block into a one-line :func:`disk_error`; anything else
    passes through unchanged."""
    try:
        yield
    except Exception as exc:
        converted = disk_error(exc, folder, needed=needed, what=what)
        if converted is None:
            raise
        raise converted from None
