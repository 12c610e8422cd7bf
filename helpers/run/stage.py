"""Run one notebook's code in this process (:func:`run_notebook`), as papermill runs it in a kernel, so the code
a learner reads in a notebook is the code that trains everywhere: ``grpo-notebooks stage 7`` under
``accelerate launch`` (one process per GPU), and the tests.

The code cells run in order in one namespace; the cell tagged ``parameters`` runs first among them, then the
given parameters as assignments (papermill's injected cell). Each cell's source is registered with
``linecache`` under its own name, as IPython does, so tracebacks show the notebook's lines and
``inspect.getsource`` (notebook 05's ``save_rewards``) reads them back. Cells that use IPython syntax (``%``
magics, ``!`` commands) are refused: the suite's notebooks are plain Python.
"""

from __future__ import annotations

import json
import linecache
import os
import time
from pathlib import Path

from helpers.run.checks import UsageError, check_out, check_seed, parse_parameters
from helpers.run.suite import notebooks_dir, select_notebooks
from helpers.runtime.distributed import shutdown
from helpers.runtime.profiles import check_profile, pick_profile


class NotebookCodeError(ValueError):
    """A cell uses IPython-only syntax, so the notebook cannot run outside a kernel (message: which and the fix)."""


def code_cells(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """``(source, tags)`` of each code cell of the notebook at ``path``, in order."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for cell in notebook["cells"]:
        if cell.get("cell_type") == "code":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            cells.append((source, list(cell.get("metadata", {}).get("tags", []))))
    return cells


def _check_python(source: str, where: str) -> None:
    for line in source.splitlines():
        if line.lstrip().startswith(("%", "!")):
            raise NotebookCodeError(f"{where} uses IPython syntax ({line.strip()[:40]!r}); fix: write it as plain "
                                    "Python so the notebook runs outside a kernel too.")


def _execute(source: str, filename: str, namespace: dict) -> None:
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)  # kept: like IPython's cell cache
    exec(compile(source, filename, "exec"), namespace)


def run_notebook(path: str | os.PathLike, parameters: dict | None = None, *, namespace: dict | None = None) -> dict:
    """Execute the code cells of the notebook at ``path`` in this process with ``parameters`` (``{name: value}``,
    as ``papermill -p``) and return the namespace they ran in. The notebook's first cell (the Colab setup
    cell, identical in every notebook) runs too: outside Colab it does nothing."""
    path = Path(path)
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    cells = code_cells(path)
    if parameters and not any("parameters" in tags for _, tags in cells):
        raise NotebookCodeError(f"{path.name} has no cell tagged 'parameters' to take {sorted(parameters)}; fix: tag "
                                "its parameters cell, or pass no parameters.")
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    for index, (source, tags) in enumerate(cells):
        where = f"{path.name} cell {index + 1}"
        _check_python(source, where)
        _execute(source, f"<{path.stem} cell {index + 1} {stamp}>", namespace)
        if "parameters" in tags and parameters:
            injected = "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
            _execute(injected, f"<{path.stem} injected parameters {stamp}>", namespace)
    return namespace


def stage_command(notebook: str, out: str, *, profile: str | None = None, model: str | None = None,
                  params: list[str] | tuple = (), seed: int | None = None, resume: bool | None = None) -> dict:
    """``grpo-notebooks stage NOTEBOOK --out RUN``: run one notebook (its number, e.g. ``7``, or a path) in this
    process on the run folder ``out``, its ``-p`` values checked and typed as ``run`` checks them; ``resume``: True
    (``--resume``) continues GRPO from its newest checkpoint, False (``--fresh``) starts over. Meant for
    ``accelerate launch`` (every process runs the notebook; rank 0 writes the run folder). Returns the namespace."""
    import papermill as pm  # heavy: only to read the parameters cell

    path = Path(notebook)
    if not path.is_file():
        number = int(notebook) if notebook.isdigit() else -1
        path = select_notebooks(notebooks_dir(), number, number)[0]
    check_seed(seed)
    run_dir = check_out(out)
    declared = pm.inspect_notebook(str(path))
    try:  # the profile the -p ranges are read from: the one the notebook will pick
        profile_name = check_profile(profile) if profile else pick_profile()
    except ValueError as exc:  # an unknown name, or GRPO_PROFILE set to one
        raise UsageError(str(exc)) from None
    values = parse_parameters(list(params), {path.name: declared}, profile_name)[path.name]
    given = {"profile": profile, "run_dir": str(run_dir), "model_name": model, "seed": seed, "resume": resume}
    values.update({k: v for k, v in given.items() if v is not None and k in declared})
    namespace = run_notebook(path, values)
    shutdown()  # else every NCCL rank warns at exit that destroy_process_group() was not called
    return namespace
