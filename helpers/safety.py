"""Files that must read back, weights that must not be pickles, and disks that fill up: one-line errors.

- **Read back** (:func:`file_problem`): a ``.json`` file must parse, a ``.safetensors`` file must open
  (its header must cover the whole file: a truncated one does not), a ``torch.save`` file (``.pt``,
  ``.pth``, ``.bin``) must be a whole zip archive (its central directory sits at the end, so a cut-off
  file has none). Each check reads a header, never the tensors: milliseconds for a checkpoint.
- **Manifests** (:func:`write_manifest`, :func:`manifest_problems`): the size and SHA-256 of every file
  of a folder, written when the folder is built; on use the sizes are compared and the headers and small
  configs read back (milliseconds), the hashes only when asked (``full=True``: 0.6 s for the embedded
  model's 538 MB).
- **Pickles** (:func:`check_weights_folder`): a model folder must hold ``*.safetensors`` weights; a
  folder with only pickles (``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) is refused unless the caller
  opts in, since unpickling can run code.
- **Full or read-only disks** (:func:`on_full_disk`): the ``OSError`` (``ENOSPC``, ``EDQUOT``,
  ``EROFS``, ``EACCES``) and ``RuntimeError`` (torch's ``enforce fail at inline_container.cc ... file
  write failed``, safetensors' ``StorageFull``) that a save raises on a full or read-only disk become a
  :class:`DiskFullError` / :class:`ReadOnlyError` naming the folder, the space free and the space needed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "MANIFEST", "PICKLE_PATTERNS", "DiskFullError", "PickleWeightsError", "ReadOnlyError", "check_weights_folder",
    "disk_error", "file_problem", "format_bytes", "manifest_problems", "on_full_disk", "retire_folder", "retire_stale_adapter",
    "write_manifest",
]

MANIFEST = ".grpo-notebooks-manifest.json"
_PARSE_LIMIT = 256 * 2**10  # with sizes matching, larger JSON files (tokenizer.json, 3.5 MB: 70 ms) are not re-parsed
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class DiskFullError(OSError):
    """A save ran out of disk space; the message names the folder, the space needed and the fix."""


class ReadOnlyError(PermissionError):
    """A folder cannot be written; the message names it and the fix."""


class PickleWeightsError(ValueError):
    """A model folder holds only pickled weights and the caller did not opt in to loading them."""


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
# Reading files back
# ---------------------------------------------------------------------------------------------


def file_problem(path: str | os.PathLike) -> str | None:
    """``None`` if ``path`` reads back as its kind of file (see the module docstring), else what is wrong."""
    path = Path(path)
    try:
        if not path.is_file():
            return "missing"
        if path.stat().st_size == 0:
            return "empty (0 bytes)"
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt"):
                pass
        elif path.suffix in (".pt", ".pth", ".bin"):
            with zipfile.ZipFile(path) as zf:  # torch.save's format; reading the central directory finds a cut
                if not zf.namelist():
                    return "an empty archive"
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        return f"unreadable ({type(exc).__name__}: {_first_line(exc)})"
    except zipfile.BadZipFile as exc:
        return f"truncated or not a torch file ({_first_line(exc)})"
    except OSError as exc:
        return f"unreadable ({_first_line(exc)})"
    except Exception as exc:  # safetensors' SafetensorError is not an OSError
        return f"truncated or corrupt ({_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | os.PathLike, **info) -> Path:
    """Record the size and SHA-256 of every file in ``folder`` (not recursing) in ``folder/MANIFEST``,
    with ``info``; written to a temporary file and renamed, so a manifest is whole or absent."""
    folder = Path(folder)
    files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST and not p.name.startswith(".tmp")}
    target = folder / MANIFEST
    tmp = folder / f".tmp-{os.getpid()}-{MANIFEST}"
    tmp.write_text(json.dumps({"format": 1, "written": time.strftime("%Y-%m-%dT%H:%M:%S"), **info, "files": files},
                              indent=1))
    os.replace(tmp, target)
    return target


def manifest_problems(folder: str | os.PathLike, *, full: bool = False) -> list[str] | None:
    """What is wrong with ``folder`` against its manifest: ``[]`` when every file has its recorded size
    (and, with ``full``, its SHA-256) and reads back; ``None`` when there is no readable manifest."""
    folder = Path(folder)
    try:
        recorded = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    problems = []
    for name, entry in recorded.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        if size != entry.get("size"):
            problems.append(f"{name}: {size:,} bytes, {entry.get('size'):,} expected")
        elif full and _sha256(path) != entry.get("sha256"):
            problems.append(f"{name}: SHA-256 differs from the one recorded when it was built")
        elif (full or path.suffix != ".json" or size < _PARSE_LIMIT) and (issue := file_problem(path)) is not None:
            problems.append(f"{name}: {issue}")  # sizes match: headers and small configs are read back too
    return problems


# ---------------------------------------------------------------------------------------------
# Pickles
# ---------------------------------------------------------------------------------------------


def check_weights_folder(folder: str | os.PathLike, *, allow_pickle: bool = False) -> None:
    """Refuse a local model folder that has no ``*.safetensors`` weights: with pickles only (unless
    ``allow_pickle``), or with no weights at all. One line: the cause and the fix."""
    folder = Path(folder)
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted({p.name for pattern in PICKLE_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    if pickles and allow_pickle:
        return
    if pickles:
        raise PickleWeightsError(
            f"{folder} holds its weights only as pickles ({', '.join(pickles[:3])}), which can run code when loaded, "
            "so they are not loaded by default; fix: convert them to safetensors where you trust the source "
            "(model.save_pretrained(folder, safe_serialization=True)), or pass allow_pickle=True if you trust it.")
    raise PickleWeightsError(f"{folder} has a config.json but no weights (no *.safetensors file); fix: copy the "
                             "model's *.safetensors files into it, or pass the folder that holds them.")


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
               what: str = "the files") -> OSError | None:
    """A one-line :class:`DiskFullError` or :class:`ReadOnlyError` for ``exc`` raised while writing
    ``what`` into ``folder`` (``needed``: bytes the write takes, estimated), or ``None`` if ``exc`` is
    something else."""
    kind = _kind(exc)
    folder = Path(folder)
    if kind == "full":
        free = _free(folder)
        need = f"about {format_bytes(needed)} needed" if needed else "more space needed"
        have = f"{format_bytes(free)} free" if free is not None else "free space unknown"
        err = DiskFullError(f"the disk is full: writing {what} to {folder} failed ({have}, {need}); fix: free "
                            "space on that disk, or write to a folder on another disk (run_dir=... / --out ...)")
        err.errno = errno.ENOSPC
        return err
    if kind == "read-only":
        err = ReadOnlyError(f"cannot write {what} to {folder}: the folder is read-only or not yours "
                            f"({_first_line(exc)}); fix: make it writable, or write to another folder "
                            "(run_dir=... / --out ...)")
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
