"""Run folders: where notebooks hand artifacts to the next one (checkpoints, metrics, plots, tables)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

RUN_DIR_ENV = "GRPO_RUN_DIR"

log = logging.getLogger(__name__)


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


class RunLayout:
    """The agreed places inside a run folder, so each notebook finds what the previous one wrote.

    ``sft/adapter``      LoRA adapter after the SFT warm-up (notebook 06)
    ``grpo/checkpoints`` TRL checkpoints ``checkpoint-N`` (notebook 07; resume reads the newest)
    ``grpo/adapter``     LoRA adapter after GRPO (notebook 07)
    ``<stage>/metrics.jsonl`` every logged training value of a stage (sft, grpo), one JSON object per log step
    ``plots/``           PNG curves
    ``saved/lora``, ``saved/merged_16bit``   exported models (notebook 08)
    ``eval/``            evaluation tables (JSON + markdown) and charts (notebook 08)
    ``report.md``        the run's report (``grpo-notebooks run``)
    ``notices.jsonl``    what a notebook must tell the person running the command (``helpers.runtime.notices.notice``)
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = run_folder(root)

    def stage(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def sft_adapter(self) -> Path:
        return self.root / "sft" / "adapter"

    @property
    def grpo_checkpoints(self) -> Path:
        return self.root / "grpo" / "checkpoints"

    @property
    def grpo_adapter(self) -> Path:
        return self.root / "grpo" / "adapter"

    def metrics(self, stage: str = "grpo") -> Path:
        return self.root / stage / "metrics.jsonl"

    @property
    def plots(self) -> Path:
        return self.stage("plots")

    @property
    def saved(self) -> Path:
        return self.stage("saved")

    @property
    def eval(self) -> Path:
        return self.stage("eval")

    @property
    def report(self) -> Path:
        return self.root / "report.md"


