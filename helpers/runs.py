"""Run folders: where notebooks hand artifacts to the next one (checkpoints, metrics, plots, tables)."""

from __future__ import annotations

import os
from pathlib import Path

RUN_DIR_ENV = "GRPO_RUN_DIR"


def project_root(start: Path | None = None) -> Path | None:
    """The checkout's root (the folder holding pyproject.toml and helpers/), if we run inside one."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "helpers").is_dir():
            return folder
    return None


def run_folder(run_dir: str | os.PathLike | None = None) -> Path:
    """The run folder, created if missing: ``run_dir``, else ``$GRPO_RUN_DIR``, else ``runs/latest``
    under the project root (or the current folder outside a checkout, e.g. on Colab)."""
    chosen = run_dir or os.environ.get(RUN_DIR_ENV)
    if chosen:
        path = Path(chosen).expanduser()
    else:
        path = (project_root() or Path.cwd()) / "runs" / "latest"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()
