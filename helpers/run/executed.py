"""The executed notebooks of a run are always whole JSON files.

papermill saves the executed notebook at its start, around every cell and at the end by rewriting the file in place
(``LocalHandler.write``: ``open(path, "w")``, then ``write``): a full disk or a kill in the middle of a save leaves a
truncated file that Jupyter cannot open. :func:`atomic_notebook_saves` registers, through papermill's own extension
point (``papermill.iorw.papermill_io.register``, the one its ``papermill.io`` entry points use), a handler for the paths
inside a folder whose ``write`` goes through ``helpers.files.atomic.atomic_write`` (a temporary file, then a rename): a
failed save leaves the previous save in place and raises the ``OSError`` (e.g. ``ENOSPC``) to the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers.files.atomic import atomic_write


class AtomicLocalHandler:
    """papermill I/O handler for local absolute paths: reads like papermill's ``LocalHandler``, writes atomically."""

    @staticmethod
    def read(path: str) -> str:
        return Path(path).read_text(encoding="utf-8")

    @staticmethod
    def listdir(path: str) -> list[str]:
        return [os.path.join(path, name) for name in os.listdir(path)]

    @staticmethod
    def write(buf: str, path: str) -> None:
        atomic_write(path, buf)

    @staticmethod
    def pretty_path(path: str) -> str:
        return path


def atomic_notebook_saves(folder: str | os.PathLike) -> Path:
    """Make papermill save every notebook it writes inside ``folder`` atomically (for this process; a folder already
    handled is left as it is). Returns the folder's absolute path, the prefix the handler answers to."""
    from papermill.iorw import papermill_io

    folder = Path(folder).absolute()
    prefix = str(folder) + os.sep  # papermill picks a handler by str.startswith on the path
    if not isinstance(papermill_io.get_handler(prefix + "x.ipynb"), AtomicLocalHandler):
        papermill_io.register(prefix, AtomicLocalHandler())
    return folder
