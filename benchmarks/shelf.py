"""What the studies' ``summarize.py`` scripts share: read a study's raw files (a folder, or the study's
``raw.tar.xz``), write its ``summary.json`` and render its tables as Markdown.

A study's ``summary.json`` holds ``about`` (question, device, date, commit: written by hand, kept as it is)
and ``tables`` (written by ``summarize.py --write`` from the raw files, never by hand):
``tests/test_repository.py`` recomputes ``tables`` from ``raw.tar.xz`` and finds each rendered table in the
study's README.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def raw_folder(path: str | Path) -> Iterator[Path]:
    """``path`` itself if it is a folder; a ``.tar.xz`` archive extracted into a temporary folder otherwise
    (removed on exit)."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise SystemExit(f"no raw files at {path}; fix: give a study's raw.tar.xz or a folder of its runs")
    with tempfile.TemporaryDirectory(prefix="raw-") as tmp, tarfile.open(path, "r:xz") as archive:
        archive.extractall(tmp, filter="data")
        yield Path(tmp)


def write_summary(path: str | Path, tables: dict) -> Path:
    """Replace the ``tables`` of the summary file at ``path``, keeping its hand-written ``about``; written
    to a temporary file beside it, then renamed over it."""
    path = Path(path)
    about = json.loads(path.read_text())["about"] if path.exists() else {}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"about": about, "tables": tables}, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_tables(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())["tables"]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: one header row, a separator, one line per row (cells already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rounded(value: float | None, digits: int) -> float | None:
    """``value`` rounded for a summary file (None stays None)."""
    return None if value is None else round(float(value), digits)


def main(study: str | Path, build, render, argv: list[str] | None = None) -> None:
    """The command line of a study's ``summarize.py``: print its tables from RAW (default: the study's
    ``raw.tar.xz``); ``--write`` also rewrites the tables of its ``summary.json``."""
    import argparse

    study = Path(study)
    parser = argparse.ArgumentParser(description=f"The tables of benchmarks/{study.name} from its raw files.")
    parser.add_argument("raw", nargs="?", default=str(study / "raw.tar.xz"),
                        help="the study's raw.tar.xz (default) or a folder laid out like it")
    parser.add_argument("--write", action="store_true", help=f"rewrite the tables of {study.name}/summary.json")
    args = parser.parse_args(argv)
    with raw_folder(args.raw) as folder:
        tables = build(folder)
    for text in render(tables).values():
        print(text, end="\n\n")
    if args.write:
        print("wrote", write_summary(study / "summary.json", tables))
