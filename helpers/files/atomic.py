"""Writes that are never half done: a file or a folder is written under a temporary name and renamed into
place; folders that must not be overwritten are moved aside to an unused name instead of deleted."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from helpers.files.disk import disk_error, on_full_disk

# ---------------------------------------------------------------------------------------------
# Moving a folder aside instead of deleting it
# ---------------------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike, data: bytes | str | None = None, *, write=None) -> Path:
    """Write ``data`` (bytes, or text as UTF-8), or let ``write(tmp_path)`` write the file, to a temporary file
    beside ``path``, flush it to disk, then rename it onto ``path``: a reader (or a killed process) sees the old
    file or the new one, never half of one; the temporary file is removed if anything fails. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if write is None:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from a notebook server run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def unused_path(base: str | os.PathLike) -> Path:
    """``base`` if nothing is there yet, else ``base-2``, ``base-3``, ...: a name to move something to without
    replacing what is already there."""
    base = Path(base)
    target, i = base, 1
    while target.exists() or target.is_symlink():
        i += 1
        target = base.with_name(f"{base.name}-{i}")
    return target


def retire_folder(path: str | os.PathLike, aside: str | os.PathLike) -> Path | None:
    """Rename ``path`` into the folder ``aside`` under a name that says when it was last written
    (``<aside>/<name>-<YYYYmmdd-HHMMSS>``, numbered if taken); returns the new path, or ``None`` if
    ``path`` does not exist. Nothing is deleted."""
    path, aside = Path(path), Path(aside)
    if not path.exists():
        return None
    aside.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    target = unused_path(aside / f"{path.name}-{stamp}")
    os.replace(path, target)
    return target


def retire_stale_adapter(adapter: str | os.PathLike) -> Path | None:
    """Before a fresh training run: move the stage's previous final adapter (``<stage>/adapter``) to
    ``<stage>/previous-adapters/adapter-<time>``, so that a run killed before it saves its own adapter
    (the save is atomic) never leaves an older run's adapter beside its new metrics. Nothing is
    deleted; the move is printed. Returns the new path, or ``None`` if there was no adapter."""
    adapter = Path(adapter)
    moved = retire_folder(adapter, adapter.parent / "previous-adapters")
    if moved is not None:
        print(f"fresh run: moved the previous run's adapter to {moved}", flush=True)
    return moved


# ---------------------------------------------------------------------------------------------
# Atomic folders
# ---------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(final: Path) -> None:
    """Delete ``.<name>.partial-<pid>-*`` folders left by processes that no longer run."""
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        try:
            pid = int(stale.name.rsplit(".partial-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_folder(final: str | os.PathLike, *, needed: int | None = None):
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final`` by a rename.

    On an exception the temporary folder is deleted and ``final`` (if it existed) is left as it was.
    ``final`` is never a half-written folder: it is the old complete folder, briefly absent during
    the swap, then the new complete one. Partial folders of killed processes are cleaned up on the
    next save to the same place. A full or read-only disk raises ``helpers.files.disk.DiskFullError`` /
    ``ReadOnlyError`` (one line: the folder, the space free and ``needed``, the fix).
    """
    final = Path(final)
    with on_full_disk(final.parent, needed=needed, what=final.name):
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        converted = disk_error(exc, final.parent, needed=needed, what=final.name) if isinstance(exc, Exception) else None
        if converted is not None:
            raise converted from None
        raise
