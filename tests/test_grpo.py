"""GRPO: reward and dataset guards, checkpoints, and real GRPO on CPU with the embedded model through notebook
07's own cells: a failing reward names itself (what training must change: ``tests/test_ci_run.py`` on the ci
chain's run; a run killed with SIGKILL and resumed: ``tests/test_resume.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stages import run_stage

from helpers.rewards.guard import GuardedReward, RewardFunctionError, guard_rewards
from helpers.train.checkpoints import complete_checkpoints, newest_checkpoint
from helpers.train.grpo_inputs import check_dataset

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Reward functions and datasets
# ---------------------------------------------------------------------------------------------


def broken_reward(completions, **kwargs):
    raise KeyError("solution")


def test_a_reward_that_raises_fails_with_its_name():
    from trl.trainer.utils import get_callable_name

    guarded = guard_rewards([broken_reward])[0]
    assert isinstance(guarded, GuardedReward) and get_callable_name(guarded) == "broken_reward"
    with pytest.raises(RewardFunctionError, match=r"reward function 'broken_reward' raised KeyError: 'solution'.*fix"):
        guarded(completions=["a", "b"], prompts=["p", "p"])


def test_bad_reward_values_fail_with_the_name():
    nan = GuardedReward(lambda completions, **kw: [float("nan")] * len(completions))
    with pytest.raises(RewardFunctionError, match="'<lambda>' returned nan; fix"):
        nan(completions=["a"])
    assert GuardedReward(lambda completions, **kw: [None, 1.0])(completions=["a", "b"]) == [None, 1.0]
    with pytest.raises(RewardFunctionError, match="returned int, not a list"):
        GuardedReward(lambda completions, **kw: 3)(completions=["a"])


def test_suite_rewards_keep_their_names_when_guarded():
    from helpers.rewards.reward_set import reward_functions

    funcs, _ = reward_functions()
    assert [g.__name__ for g in guard_rewards(funcs)] == [f.__name__ for f in funcs]


def test_dataset_without_answer_column_is_refused_naming_the_reward():
    from datasets import Dataset

    from helpers.rewards.reward_set import reward_functions

    funcs, _ = reward_functions()
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "1+1?"}], "solution": "2"}])
    with pytest.raises(ValueError, match=r"reward function 'correctness_reward' needs the dataset column\(s\) "
                                         r"\['answer'\].*fix: add an 'answer' column"):
        check_dataset(ds, funcs)
    check_dataset(ds, [f for f in funcs if f.__name__ == "strict_format_reward"])  # a format reward needs none


def test_empty_and_malformed_datasets_are_refused():
    from datasets import Dataset

    from helpers.data.synthetic import synthetic_dataset

    with pytest.raises(ValueError, match="empty.*fix"):
        check_dataset(synthetic_dataset(4).select([]))
    with pytest.raises(ValueError, match="no 'prompt' column.*fix"):
        check_dataset(Dataset.from_list([{"question": "q", "answer": "1"}]))
    with pytest.raises(TypeError, match="must be a datasets.Dataset.*fix"):
        check_dataset([{"prompt": "q", "answer": "1"}])

    def needs_solution(completions, solution, **kwargs):
        return [0.0] * len(completions)

    with pytest.raises(ValueError, match=r"'needs_solution' needs the dataset column\(s\) \['solution'\]"):
        check_dataset(synthetic_dataset(4), [needs_solution])


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def fake_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint folder whose files read back (``complete``) or without ``trainer_state.json``."""
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"lora_A": torch.zeros(2, 2)}, path / "adapter_model.safetensors")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_newest_checkpoint_skips_half_written_ones(tmp_path):
    assert newest_checkpoint(tmp_path / "missing") is None
    fake_checkpoint(tmp_path, 2)
    ten = fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 12, complete=False)  # killed while saving: no trainer_state.json
    (tmp_path / "checkpoint-14").mkdir()  # killed before anything was written
    assert newest_checkpoint(tmp_path) == ten
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]


# ---------------------------------------------------------------------------------------------
# Real training on CPU (the embedded model)
# ---------------------------------------------------------------------------------------------


BROKEN_REWARDS = """
def broken_reward(completions, **kwargs):
    raise KeyError("solution")


reward_funcs = [broken_reward]
reward_weights = [1.0]
"""


@pytest.mark.slow
def test_a_reward_that_raises_stops_training_with_its_name(tmp_path):
    """A reward function of notebook 05 (``<run>/rewards.py``) that raises stops notebook 07 with its name."""
    (tmp_path / "rewards.py").write_text(BROKEN_REWARDS)
    with pytest.raises(RewardFunctionError, match="'broken_reward' raised KeyError"):
        run_stage(7, tmp_path, from_sft=False, grpo_steps=1, num_generations=2, max_completion_length=4)
