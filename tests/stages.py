"""Run a notebook's code in the test process, as ``grpo-notebooks stage`` does (``helpers.run.stage``): the tests
of training run the notebooks' own cells, so what they check is what a learner runs."""

from __future__ import annotations

from pathlib import Path

from helpers.run.stage import run_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook(number: int) -> Path:
    (path,) = NOTEBOOKS.glob(f"{number:02d}_*.ipynb")
    return path


def run_stage(number: int, run_dir, **parameters) -> dict:
    """Notebook ``number`` run in this process on ``run_dir`` under the ``ci`` profile; its namespace."""
    return run_notebook(notebook(number), {"profile": "ci", "run_dir": str(run_dir), **parameters})
