"""GSM8K (hub or local JSONL) in the suite's columns: the gold answer after ``####``, read by the same
parser as the rewards; rows without a usable answer are dropped and counted."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from helpers.data.answers import normalize_answer
from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat
from helpers.data.rows import DataUnavailableError, NoUsableRowsError, make_row, rows_dataset
from helpers.runtime.hardware import hub_reachable

log = logging.getLogger(__name__)

GSM8K_HUB = ("openai/gsm8k", "main")
GSM8K_DIR_ENV = "GRPO_GSM8K_DIR"
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: 2+1=<<2+1=3>>3


# ---------------------------------------------------------------------------------------------
# GSM8K
# ---------------------------------------------------------------------------------------------


def extract_gsm8k_answer(text) -> str | None:
    """The gold answer of a GSM8K solution: the text after the last ``####``, normalised; else ``None``
    (also when it cannot be read exactly: the row is then dropped and counted, never kept as ``0``).

    >>> extract_gsm8k_answer("He pays 2*3=<<2*3=6>>6 dollars.\\n#### 6"), extract_gsm8k_answer("#### 1,600")
    ('6', '1600')
    >>> extract_gsm8k_answer("no marker"), extract_gsm8k_answer("#### 0x7"), extract_gsm8k_answer("#### 2e3")
    (None, None, '2000')
    """
    if not isinstance(text, str) or "####" not in text:
        return None
    return normalize_answer(text.rsplit("####", 1)[1])


def _gsm8k_reasoning(solution: str) -> str:
    steps = _CALCULATOR.sub("", solution.rsplit("####", 1)[0])
    return "\n".join(line.strip() for line in steps.splitlines() if line.strip())


def gsm8k_rows(records, fmt: ReasoningFormat = DEFAULT_FORMAT, system: str | None = None) -> tuple[list[dict], int]:
    """GSM8K records (``{"question", "answer"}``) as rows; returns ``(rows, dropped)``, where dropped
    counts records that are not a mapping, lack a question, or have no readable answer after ``####``."""
    rows, dropped = [], 0
    for record in records:
        try:
            question, solution = record["question"], record["answer"]
            gold = extract_gsm8k_answer(solution)
            if not isinstance(question, str) or not question.strip() or gold is None:
                raise ValueError("unusable")
            rows.append(make_row(question, _gsm8k_reasoning(solution), gold, fmt=fmt, system=system,
                                 difficulty=max(1, solution.count("<<")), source="gsm8k"))
        except (KeyError, TypeError, ValueError, AttributeError):
            dropped += 1
    return rows, dropped


def _lines(file: Path) -> list[str]:
    """The lines of a UTF-8 (or UTF-8 with a byte-order mark) text file; anything else is a one-line
    :class:`DataUnavailableError` naming the file and the fix."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DataUnavailableError(f"cannot read the GSM8K file {file} ({exc.strerror or exc}); fix: check that path and "
                                   "its permissions, or pass another one.") from None
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataUnavailableError(f"the GSM8K file {file} is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
                                   "fix: save it as UTF-8 JSONL, one {\"question\", \"answer\"} object a line, or pass "
                                   "another path.") from None


def _records(lines):
    for line in lines:
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            yield None  # counted as dropped by gsm8k_rows


def _env_dir() -> Path | None:
    value = os.environ.get(GSM8K_DIR_ENV)
    if not value:
        return None
    if not Path(value).is_dir():
        raise DataUnavailableError(f"${GSM8K_DIR_ENV} is {value!r}, which is not a folder; fix: point it at a folder "
                                   f"holding train.jsonl and test.jsonl (GSM8K's format), or unset it.")
    return Path(value)


def default_gsm8k_dir() -> Path | None:
    """A local GSM8K folder (``train.jsonl``, ``test.jsonl``): ``$GRPO_GSM8K_DIR`` (refused in one line when set
    to something that is not a folder), else ``None``."""
    return _env_dir()


def gsm8k_file(path: str | os.PathLike, split: str = "train") -> Path:
    """The JSONL file that ``path`` names for ``split``: ``path`` itself, or ``<path>/<split>.jsonl`` for a
    folder; a one-line :class:`DataUnavailableError` when there is none."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise DataUnavailableError(f"the GSM8K path {path!r} is not a path; fix: name a folder holding {split}.jsonl "
                                   "or a .jsonl file, or leave it unset (None: a local copy, the hub, else synthetic "
                                   "problems).")
    given = Path(path).expanduser()
    if given.is_dir():
        file = given / f"{split}.jsonl"
        if not file.is_file():
            raise DataUnavailableError(f"the GSM8K folder {given} has no {split}.jsonl; fix: put GSM8K's {split}.jsonl "
                                       "there, or name the .jsonl file itself.")
        return file
    if not given.exists():
        raise DataUnavailableError(f"the GSM8K path {given} does not exist; fix: name a folder holding {split}.jsonl "
                                   "or a .jsonl file, or leave it unset (None: a local copy, the hub, else synthetic "
                                   "problems).")
    if not given.is_file():
        raise DataUnavailableError(f"the GSM8K path {given} is not a file or folder; fix: name a folder holding "
                                   f"{split}.jsonl or a .jsonl file.")
    return given


def check_gsm8k_path(path, split: str = "train") -> None:
    """Refuse, in one line naming the fix, a GSM8K path that ``load_problems(split, path=path)`` could not
    use: missing, empty, not a file or folder, a folder without ``<split>.jsonl``, unreadable, not UTF-8, or
    with no usable row. Cheap enough to run before any work starts: it stops at the first usable row.
    ``None`` (no path given) passes.

    >>> check_gsm8k_path(None)
    >>> check_gsm8k_path("/nonexistent")
    Traceback (most recent call last):
    ...
    helpers.data.rows.DataUnavailableError: the GSM8K path /nonexistent does not exist; fix: name a folder holding train.jsonl or a .jsonl file, or leave it unset (None: a local copy, the hub, else synthetic problems).
    """
    if path is None:
        return
    file = gsm8k_file(path, split)
    for record in _records(_lines(file)):
        if gsm8k_rows([record])[0]:
            return
    raise _no_usable_rows(split, str(file), "every line")


def _no_usable_rows(split: str, where: str, dropped) -> NoUsableRowsError:
    return NoUsableRowsError(
        f"GSM8K {split} from {where} has no usable row ({dropped} dropped: each line needs a 'question' and an "
        "'answer' ending in '#### <number>'); fix: check that file, or pass another path (None: the hub, else "
        "synthetic problems).")


def load_gsm8k(split: str = "train", path: str | os.PathLike | None = None, *,
               fmt: ReasoningFormat = DEFAULT_FORMAT, system: str | None = None, limit: int | None = None):
    """GSM8K ``split`` as a ``datasets.Dataset`` in the suite's columns.

    ``path=None`` downloads ``openai/gsm8k`` (config ``main``) from the hub; otherwise ``path`` is a
    UTF-8 JSONL file in GSM8K's format or a folder holding ``<split>.jsonl`` (else a one-line
    :class:`DataUnavailableError`, see :func:`check_gsm8k_path`). Rows without a usable answer (or
    unreadable lines) are dropped and counted; a gold answer that cannot be read exactly (``#### 0x7``,
    an exponent past 4,000 digits) is such a row. No usable row at all raises :class:`NoUsableRowsError`.
    ``limit`` keeps the first rows only.
    """
    if split not in ("train", "test"):
        raise ValueError(f"GSM8K has splits 'train' and 'test', not {split!r}; fix: pass split='train' or 'test'.")
    if path is None:
        if not hub_reachable():
            raise DataUnavailableError("GSM8K cannot be downloaded: the Hugging Face hub is not reachable; "
                                       "fix: pass path= a local GSM8K folder or JSONL, or use synthetic_dataset().")
        from datasets import load_dataset

        records, where = load_dataset(*GSM8K_HUB, split=split), f"hub {GSM8K_HUB[0]}"
    else:
        file = gsm8k_file(path, split)
        records, where = _records(_lines(file)), str(file)
    rows, dropped = gsm8k_rows(records, fmt, system)
    if not rows:
        raise _no_usable_rows(split, where, dropped)
    if limit is not None:
        rows = rows[:limit]
    if dropped:
        log.warning("GSM8K %s: dropped %d rows without a usable answer", split, dropped)
    return rows_dataset(rows, f"GSM8K {split} from {where}: {len(rows)} rows, {dropped} dropped (no usable answer)")
