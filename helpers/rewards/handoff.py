"""Notebook 05's reward functions, handed to notebook 07 through the run folder.

A learner defines the reward functions in one cell of notebook 05 (TRL's signature, a few lines each) and
ends the cell with ``reward_funcs = [...]`` and ``reward_weights = [...]``. :func:`save_rewards` writes that
cell, as it was run, to ``<run>/rewards.py`` (atomically) after checking that it runs on its own;
:func:`load_rewards` in notebook 07 imports it, so an edit in 05 is what 07 trains with. Without that file
(notebook 07 opened on its own) the package's reference rewards are used
(``helpers.rewards.reward_set.reward_functions``), which score every completion the same
(``tests/test_notebook_rewards.py`` proves it on the reward fuzz corpus).

``<run>/rewards.py`` is Python that notebook 07 executes: it is written only by the user's own notebook 05.
"""

from __future__ import annotations

import ast
import importlib.util
import linecache
import os
from pathlib import Path

from helpers.files.atomic import atomic_write
from helpers.files.runs import RunLayout
from helpers.rewards.reward_set import reward_functions

REWARDS_FILE = "rewards.py"
_PROBE = "<reasoning>\n1 + 1 = 2\n</reasoning>\n<answer>2</answer>"
_HEADER = ("# The reward functions of notebook 05 (its reward cell as it was run), read by notebook 07.\n"
           "# Edit them in notebook 05 and run it again; this file is rewritten then.\n\n")


def _cell_source(funcs) -> str:
    files = {f.__code__.co_filename for f in funcs}
    if len(files) != 1:
        raise ValueError("the reward functions come from several cells or files; fix: define every reward function "
                         "and the reward_funcs / reward_weights lists in one cell.")
    source = "".join(linecache.getlines(files.pop()))
    if not source:
        raise ValueError("the reward cell's source cannot be read back; fix: define the reward functions in a notebook "
                         "cell (or a .py file) and call save_rewards from the same session.")
    return source


def save_rewards(reward_funcs, reward_weights, run_dir: str | os.PathLike | None = None) -> Path:
    """Write the cell that defined ``reward_funcs`` (and ends with the ``reward_funcs``/``reward_weights`` lists)
    to ``<run>/rewards.py``; refuse (one line, the fix) a cell that does not define those lists as given, or that
    needs names from other cells (it is run on its own first). Returns the file."""
    funcs = list(reward_funcs)
    if not funcs or len(funcs) != len(reward_weights):
        raise ValueError(f"{len(funcs)} reward functions and {len(reward_weights)} weights; fix: one weight per "
                         "function (0 logs a function as a metric without training on it).")
    source = _cell_source(funcs)
    assigned = {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    if not {"reward_funcs", "reward_weights"} <= assigned:
        raise ValueError("the reward cell must end with reward_funcs = [...] and reward_weights = [...]; fix: add "
                         "them to the cell that defines the functions.")
    namespace: dict = {}
    try:  # the cell on its own, as notebook 07 will run it, and each function called once as TRL calls it
        exec(compile(source, "<reward cell>", "exec"), namespace)
        for func in namespace.get("reward_funcs", []):
            func(prompts=[[{"role": "user", "content": "1 + 1?"}]], completions=[_PROBE], answer=["2"])
    except NameError as exc:
        raise ValueError(f"the reward cell uses a name defined in another cell ({exc}); fix: define or import it in "
                         "the reward cell itself.") from None
    if [f.__name__ for f in namespace["reward_funcs"]] != [f.__name__ for f in funcs] or \
            [float(w) for w in namespace["reward_weights"]] != [float(w) for w in reward_weights]:
        raise ValueError("reward_funcs / reward_weights differ from the lists the cell defines; fix: pass the cell's "
                         "own reward_funcs and reward_weights.")
    return atomic_write(RunLayout(run_dir).root / REWARDS_FILE, _HEADER + source)


def load_rewards(run_dir: str | os.PathLike | None = None) -> tuple[list, list[float], str]:
    """``(reward_funcs, reward_weights, origin)``: notebook 05's functions from ``<run>/rewards.py`` when it
    exists, else the package's reference rewards; ``origin`` says which, for the notebook to print."""
    path = RunLayout(run_dir).root / REWARDS_FILE
    if not path.is_file():
        funcs, weights = reward_functions()
        return funcs, weights, "the package's reference rewards (no rewards.py from notebook 05 in this run folder)"
    spec = importlib.util.spec_from_file_location("grpo_notebook_rewards", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.reward_funcs), [float(w) for w in module.reward_weights], f"notebook 05's cell, from {path}"
