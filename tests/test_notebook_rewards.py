"""Notebook 05's reward functions are the package's: the same names, weights and scores on the reward fuzz
corpus (so the tutorial cannot drift from what is tested), and notebook 07 trains with what 05 defines."""

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rewards import COMPLETION, GOLDS, NUMBER, ODD, trl_call

from helpers.rewards.handoff import REWARDS_FILE, load_rewards, save_rewards
from helpers.rewards.reward_set import reward_functions
from helpers.run.stage import code_cells, run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_rewards.ipynb"


def reward_cell() -> str:
    """The source of notebook 05's cell that defines the rewards (it ends with reward_funcs / reward_weights)."""
    (source,) = [s for s, _ in code_cells(NOTEBOOK) if "\nreward_funcs = [" in s]
    return source


@pytest.fixture(scope="module")
def notebook_rewards():
    namespace = {}
    exec(compile(reward_cell(), "<notebook 05 reward cell>", "exec"), namespace)
    return namespace["reward_funcs"], namespace["reward_weights"]


def same_scores(notebook_funcs, completions, answers):
    package = reward_functions().funcs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mine, theirs in zip(notebook_funcs, package, strict=True):
            got, expected = trl_call(mine, completions, answers), trl_call(theirs, completions, answers)
            assert [type(v) for v in got] == [float] * len(completions), mine.__name__
            assert got == expected, (mine.__name__, completions, answers, got, expected)


def test_same_names_and_weights_as_the_package(notebook_rewards):
    funcs, weights = notebook_rewards
    package = reward_functions()
    assert [f.__name__ for f in funcs] == package.names
    assert weights == package.weights


@pytest.mark.parametrize("gold", GOLDS, ids=repr)
def test_same_scores_on_the_odd_completions(notebook_rewards, gold):
    same_scores(notebook_rewards[0], ODD, [gold] * len(ODD))


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(COMPLETION, min_size=10, max_size=10), st.lists(st.one_of(NUMBER, st.none()), min_size=10,
                                                                 max_size=10))
def test_same_scores_on_generated_completions(notebook_rewards, completions, answers):
    """4,000 generated completions (the strategies of tests/test_rewards.py's fuzz test), bit for bit."""
    same_scores(notebook_rewards[0], completions, answers)


def _edited_notebook(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if "\nreward_funcs = [" in source:
            for old, new in edits:
                assert old in source
                source = source.replace(old, new)
            cell["source"] = source
    path = tmp_path / NOTEBOOK.name
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def test_notebook_07_trains_with_what_notebook_05_defines(tmp_path, monkeypatch):
    """A learner's edit in 05 (a weight, a function body) is what load_rewards, notebook 07's source of the
    rewards, returns; without 05's file it falls back to the package's rewards."""
    monkeypatch.setenv("GRPO_PROFILE", "ci")
    run = tmp_path / "run"
    funcs, weights, origin = load_rewards(run)
    assert "package" in origin and weights == reward_functions().weights
    edited = _edited_notebook(
        tmp_path, ("reward_weights = [0.5, 0.5, 2.0, 0.5,", "reward_weights = [0.5, 0.5, 3.0, 0.5,"),
        ("return [1.0 if parse_completion(c, prefilled=PREFILLED).strict else 0.0 for c in completions]",
         "return [0.25 for c in completions]"))
    run_notebook(edited, {"run_dir": str(run)})
    funcs, weights, origin = load_rewards(run)
    assert origin.startswith("notebook 05") and (run / REWARDS_FILE).is_file()
    assert weights[2] == 3.0
    assert funcs[0](["<reasoning>r</reasoning><answer>7</answer>"]) == [0.25]


def test_save_rewards_refuses_a_cell_that_borrows_from_another(tmp_path):
    namespace = {"OTHER_CELL_VALUE": 1}
    source = ("def strict_format_reward(completions, **kwargs):\n    return [float(OTHER_CELL_VALUE)] * len(completions)\n"
              "reward_funcs = [strict_format_reward]\nreward_weights = [1.0]\n")
    path = tmp_path / "cell.py"
    path.write_text(source)
    exec(compile(source, str(path), "exec"), namespace)
    with pytest.raises(ValueError, match="another cell.*fix:"):
        save_rewards(namespace["reward_funcs"], namespace["reward_weights"], tmp_path / "run")
    with pytest.raises(ValueError, match="one weight per function"):
        save_rewards(namespace["reward_funcs"], [1.0, 2.0], tmp_path / "run")
