"""SVAMP in the suite's columns: 1,000 human-written elementary arithmetic word problems (one or two operations,
up to grade 4), for evaluation only: no training path reads it.

SVAMP (Patel, Bhattamishra and Goyal, NAACL 2021, https://aclanthology.org/2021.naacl-main.168) is published
under the MIT licence in ``arkilpatel/SVAMP`` on GitHub as one file, ``SVAMP.json`` (``ID``, ``Body``,
``Question``, ``Equation``, ``Answer``, ``Type``). This module reads that file as it is, pinned by commit and
SHA-256 (:data:`SVAMP_URL`, :data:`SVAMP_SHA256`); the repository holds no copy of it. :func:`load_svamp` takes
a local copy (``path``, ``$GRPO_SVAMP_DIR``, the user cache) or
downloads the pinned file once into the cache (``$GRPO_NOTEBOOKS_CACHE/svamp``), checked against the SHA-256
and written atomically.

Each row: ``question`` is ``Body + " " + Question`` (the usual way of asking it; upstream's spacing, e.g.
``$ 3``, is kept), ``answer`` the exact value of ``Equation`` (fractions, no floating point) when it equals
the stated ``Answer`` and is a plain number (an integer or a terminating decimal), ``reasoning`` the equation
with its result, ``difficulty`` the number of operations, ``id`` upstream's ``ID`` (``chal-1`` ...), so every
row can be traced to its source. Other records are dropped and counted. Rows come in a fixed order (by a
hash of their ID, not upstream's, which groups variations of one problem), so the first ``n`` rows are a
sample of the whole set, the same on every machine and for every seed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
from fractions import Fraction
from pathlib import Path

from helpers.data.answers import format_number, parse_number
from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat
from helpers.data.rows import DataUnavailableError, NoUsableRowsError, make_row, rows_dataset
from helpers.files.atomic import atomic_write
from helpers.model.embedded import cache_dir

log = logging.getLogger(__name__)

SVAMP_REPO = "arkilpatel/SVAMP"
SVAMP_COMMIT = "689d7ccac74b9983a2ac7cc3b264f441b99e7c53"  # upstream HEAD (2022-06-30); SVAMP.json last changed in 7827fb8
SVAMP_FILE = "SVAMP.json"
SVAMP_URL = f"https://raw.githubusercontent.com/{SVAMP_REPO}/{SVAMP_COMMIT}/{SVAMP_FILE}"
SVAMP_SHA256 = "5be77703a6d891ae476d7c082787ad361392aa02453b132516cdd5f4e7934e3e"  # 339,970 bytes, 1,000 records
SVAMP_DIR_ENV = "GRPO_SVAMP_DIR"

_OPS = {ast.Add: Fraction.__add__, ast.Sub: Fraction.__sub__, ast.Mult: Fraction.__mul__, ast.Div: Fraction.__truediv__}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return Fraction(repr(node.value))  # 76.0 -> 76, 0.1 -> 1/10 (by its text, not its binary value)
    raise ValueError(f"not an arithmetic expression: {ast.dump(node)}")


def _plain(node: ast.AST) -> str:
    """The equation as a person writes it: ``( 76.0 - 25.0 )`` -> ``76 - 25``."""
    if isinstance(node, ast.BinOp):
        return f"({_plain(node.left)} {_SYMBOL[type(node.op)]} {_plain(node.right)})"
    return format_number(_value(node))


def svamp_answer(equation: str, stated) -> tuple[str, str, int] | None:
    """``(answer, worked equation, operations)`` of one SVAMP record: the exact value of ``equation`` (``+ - * /``
    and numbers only), when it equals the ``stated`` answer and is a plain number; else ``None``.

    >>> svamp_answer("( ( 121.0 - 105.0 ) + 170.0 )", 186.0)
    ('186', '(121 - 105) + 170 = 186', 2)
    >>> svamp_answer("( 7.0 / 2.0 )", 3.5), svamp_answer("( 1.0 / 3.0 )", 0.333), svamp_answer("( 4.0 - 3.0 )", 2.0)
    (('3.5', '7 / 2 = 3.5', 1), None, None)
    >>> svamp_answer("__import__('os')", 0), svamp_answer("( 1.0 / 0.0 )", 0)
    (None, None)
    """
    try:
        tree = ast.parse(str(equation).strip(), mode="eval").body
        value = _value(tree)
        text = format_number(value)
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError, RecursionError):
        return None
    if "/" in text or parse_number(stated) != value:  # "1/3": no plain number; a stated answer that disagrees
        return None
    steps = _plain(tree)
    steps = steps[1:-1] if steps.startswith("(") else steps
    return text, f"{steps} = {text}", sum(isinstance(n, ast.BinOp) for n in ast.walk(tree))


def _order(record_id: str) -> str:
    return hashlib.sha256(record_id.encode("utf-8")).hexdigest()


def svamp_rows(records, fmt: ReasoningFormat = DEFAULT_FORMAT, system: str | None = None) -> tuple[list[dict], int]:
    """SVAMP records as rows (the module docstring says how), in the fixed order; returns ``(rows, dropped)``,
    where dropped counts records that are not a mapping, lack a text field, or whose equation does not give
    the stated answer as a plain number."""
    rows, dropped = [], 0
    for record in records:
        try:
            body, question, record_id = (str(record[k]).strip() for k in ("Body", "Question", "ID"))
            solved = svamp_answer(record["Equation"], record["Answer"])
            if not question or not record_id or solved is None:
                raise ValueError("unusable")
        except (KeyError, TypeError, ValueError, AttributeError):
            dropped += 1
            continue
        answer, reasoning, operations = solved
        row = make_row(f"{body} {question}".strip(), reasoning, answer, difficulty=max(1, operations),
                       source="svamp", fmt=fmt, system=system)
        row["id"] = record_id
        rows.append(row)
    rows.sort(key=lambda r: _order(r["id"]))
    return rows, dropped


def svamp_cache_file() -> Path:
    """Where :func:`download_svamp` keeps the file: ``$GRPO_NOTEBOOKS_CACHE/svamp/SVAMP.json``."""
    return cache_dir() / "svamp" / SVAMP_FILE


def default_svamp_file() -> Path | None:
    """A local ``SVAMP.json``: in ``$GRPO_SVAMP_DIR`` (a folder, or the file itself), else the user cache; ``None``
    if there is none."""
    candidates = []
    if os.environ.get(SVAMP_DIR_ENV):
        folder = Path(os.environ[SVAMP_DIR_ENV]).expanduser()
        candidates.append(folder / SVAMP_FILE if folder.is_dir() else folder)
    candidates.append(svamp_cache_file())
    return next((c for c in candidates if c.is_file()), None)


def download_svamp(dest: str | os.PathLike | None = None, *, url: str | None = None, sha256: str | None = None,
                   timeout: float = 20.0) -> Path:
    """Download ``url`` (default: the pinned :data:`SVAMP_URL`) to ``dest`` (default :func:`svamp_cache_file`),
    refuse it unless its SHA-256 is ``sha256`` (default :data:`SVAMP_SHA256`), and write it atomically;
    :class:`DataUnavailableError` (one line) when it cannot."""
    import urllib.error
    import urllib.request

    dest = Path(dest) if dest is not None else svamp_cache_file()
    url, sha256 = url or SVAMP_URL, sha256 or SVAMP_SHA256
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataUnavailableError(f"SVAMP could not be downloaded from {url} ({exc}); fix: put SVAMP.json (from "
                                   f"github.com/{SVAMP_REPO}) in a folder and set {SVAMP_DIR_ENV} to it.") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DataUnavailableError(f"the file downloaded from {url} has SHA-256 {digest}, not the pinned {sha256}; "
                                   f"nothing was written; fix: check the URL, or pass a local copy with {SVAMP_DIR_ENV}.")
    try:
        atomic_write(dest, data)
        log.info("SVAMP: downloaded %s (%d bytes, SHA-256 checked) to %s", url, len(data), dest)
        return dest
    except OSError as exc:
        raise DataUnavailableError(f"SVAMP could not be saved to {dest} ({exc}); fix: set GRPO_NOTEBOOKS_CACHE to a "
                                   "writable folder.") from exc


def load_svamp(path: str | os.PathLike | None = None, *, fmt: ReasoningFormat = DEFAULT_FORMAT,
               system: str | None = None, limit: int | None = None, download: bool = True):
    """SVAMP as a ``datasets.Dataset`` in the suite's columns plus ``id``, in the fixed order, the first ``limit``
    rows. ``path``: an ``SVAMP.json`` file or a folder holding one; ``None``: :func:`default_svamp_file`, else
    (``download``) :func:`download_svamp`. A file that is not upstream's (another SHA-256) is read all the same,
    with a warning. Raises :class:`DataUnavailableError` when there is no file, :class:`NoUsableRowsError` when
    it has no usable record."""
    if path is not None:
        file = Path(path) / SVAMP_FILE if Path(path).is_dir() else Path(path)
        if not file.is_file():
            raise DataUnavailableError(f"no SVAMP file at {file}; fix: pass SVAMP.json or the folder holding it.")
    else:
        file = default_svamp_file()
        if file is None:
            if not download:
                raise DataUnavailableError(f"no local SVAMP.json; fix: set {SVAMP_DIR_ENV} to a folder holding it, "
                                           "or allow the download (download=True).")
            file = download_svamp()
    data = file.read_bytes()
    try:
        records = json.loads(data)
    except ValueError as exc:
        raise NoUsableRowsError(f"{file} is not JSON ({exc}); fix: download SVAMP.json again ({SVAMP_URL}).") from exc
    rows, dropped = svamp_rows(records if isinstance(records, list) else [], fmt, system)
    if not rows:
        raise NoUsableRowsError(f"{file} has no usable SVAMP record ({dropped} dropped: each needs ID, Body, Question, "
                                f"an Equation and the Answer it gives); fix: download SVAMP.json again ({SVAMP_URL}).")
    upstream = hashlib.sha256(data).hexdigest() == SVAMP_SHA256
    if not upstream:
        log.warning("%s is not upstream's SVAMP.json (another SHA-256): its scores are not SVAMP's", file)
    if dropped:
        log.warning("SVAMP: dropped %d records whose equation does not give a plain-number answer", dropped)
    kept = rows[:limit] if limit is not None else rows
    return rows_dataset(kept, f"SVAMP ({'upstream file' if upstream else 'NOT the upstream file'} {file}): {len(kept)} "
                          f"of {len(rows)} usable problems, {dropped} dropped (no plain-number answer)")
