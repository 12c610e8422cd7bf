"""Files that must read back, manifests of folders, weights that must not be pickles: one-line errors.

- **Read back** (:func:`file_problem`): a ``.json`` file must parse, a ``.safetensors`` file must open
  (its header must cover the whole file: a truncated one does not), a ``torch.save`` file (``.pt``,
  ``.pth``, ``.bin``) must be a whole zip archive (its central directory sits at the end, so a cut-off
  file has none). Each check reads a header, never the tensors: milliseconds for a checkpoint.
- **Manifests** (:func:`write_manifest`, :func:`manifest_problems`): the size and SHA-256 of every file
  of a folder, written when the folder is built, with a SHA-256 of 16 sampled 64 KiB blocks and the file's
  identity (``stat``: size, mtime, ctime, inode) when it was last fully hashed. On use: the sizes, the
  sampled hash and the headers and small configs are compared (milliseconds); a file whose identity
  changed since (any write to it, e.g. bytes overwritten in place at the same size, moves its ctime) gets
  the full SHA-256, as does every file when asked (``full=True``); a full hash that matches records the
  new identity, so the next use is cheap again.
- **Pickles** (:func:`check_weights_folder`): a model folder must hold ``*.safetensors`` weights; a
  folder with only pickles (``pytorch_model.bin``, ``*.pt``, ``*.ckpt``) is refused unless the caller
  opts in, since unpickling can run code.

Full or read-only disks are ``helpers.files.disk``'s; the manifest is written with ``helpers.files.atomic.atomic_write``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

from helpers.files.atomic import atomic_write
from helpers.files.disk import first_line

MANIFEST = ".grpo-notebooks-manifest.json"
_PARSE_LIMIT = 256 * 2**10  # with sizes matching, larger JSON files (tokenizer.json, 3.5 MB: 70 ms) are not re-parsed
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


class PickleWeightsError(ValueError):
    """A model folder holds only pickled weights and the caller did not opt in to loading them."""


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
        return f"unreadable ({type(exc).__name__}: {first_line(exc)})"
    except zipfile.BadZipFile as exc:
        return f"truncated or not a torch file ({first_line(exc)})"
    except OSError as exc:
        return f"unreadable ({first_line(exc)})"
    except Exception as exc:  # safetensors' SafetensorError is not an OSError
        return f"truncated or corrupt ({first_line(exc)})"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


SAMPLE_BLOCKS, SAMPLE_BLOCK = 16, 64 * 2**10  # 1 MiB read per file: milliseconds


def _sampled_sha256(path: Path, size: int) -> str:
    """SHA-256 of ``SAMPLE_BLOCKS`` blocks spread evenly over the file (first and last included); the
    whole file when it is that small."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= SAMPLE_BLOCKS * SAMPLE_BLOCK:
            digest.update(fh.read())
        else:
            step = (size - SAMPLE_BLOCK) // (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):
                fh.seek(i * step)
                digest.update(fh.read(SAMPLE_BLOCK))
    return digest.hexdigest()


def file_identity(path: Path) -> list[int]:
    """What changes when a file is written, replaced or copied: size, mtime, ctime (not settable by
    ``touch``), inode."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _entry(path: Path, sha256: str | None = None) -> dict:
    identity = file_identity(path)
    return {"size": identity[0], "sha256": sha256 or _sha256(path), "sample": _sampled_sha256(path, identity[0]),
            "stat": identity}


def _write(folder: Path, manifest: dict) -> Path:
    return atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1))


def write_manifest(folder: str | os.PathLike, **info) -> Path:
    """Record the size, SHA-256, sampled hash and identity of every file in ``folder`` (not recursing) in
    ``folder/MANIFEST``, with ``info``; written to a temporary file and renamed, so a manifest is whole or absent."""
    folder = Path(folder)
    files = {p.name: _entry(p)
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST
             and not p.name.startswith((".tmp", f".{MANIFEST}."))}  # atomic_write's temporary, left by a kill
    return _write(folder, {"format": 1, "written": time.strftime("%Y-%m-%dT%H:%M:%S"), **info, "files": files})


def manifest_problems(folder: str | os.PathLike, *, full: bool = False) -> list[str] | None:
    """What is wrong with ``folder`` against its manifest: ``[]`` when every file has its recorded size,
    sampled hash and SHA-256 (hashed in full only when asked or when the file's identity changed since
    it was last hashed: see the module docstring) and reads back; ``None`` when there is no readable
    manifest. After a full hash that matches, the new identities are recorded (best effort: a read-only
    folder keeps its manifest, and is hashed in full at every use)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        recorded = manifest["files"]
        if not isinstance(recorded, dict) or not all(isinstance(e, dict) for e in recorded.values()):
            raise TypeError("files is not an object of objects")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    problems, renewed = [], {}
    for name, entry in recorded.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        same_file = entry.get("stat") == file_identity(path)
        if size != entry.get("size"):
            problems.append(f"{name}: {size:,} bytes, {entry.get('size'):,} expected")
        elif (full or not same_file) and _sha256(path) != entry.get("sha256"):
            problems.append(f"{name}: SHA-256 differs from the one recorded when it was built (changed since)")
        elif same_file and entry.get("sample") not in (None, _sampled_sha256(path, size)):
            problems.append(f"{name}: sampled blocks differ from the ones recorded when it was built")
        elif (full or path.suffix != ".json" or size < _PARSE_LIMIT) and (issue := file_problem(path)) is not None:
            problems.append(f"{name}: {issue}")  # sizes match: headers and small configs are read back too
        elif not same_file:
            renewed[name] = _entry(path, entry["sha256"])  # hashed in full just now, and it matched
    if renewed and not problems:
        try:
            _write(folder, {**manifest, "files": {**recorded, **renewed}})
        except OSError:
            pass
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
