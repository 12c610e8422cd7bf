"""GRPO: reward and dataset guards, checkpoints, and real GRPO on CPU with the embedded model through notebook
07's own cells: training changes what it must, a failing reward names itself, and a run killed with SIGKILL
resumes with no gap and no duplicate in its history."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
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


def metric_steps(path: Path) -> list[int]:
    """The step of every training-step record in a raw metrics.jsonl (the end-of-training summary,
    logged at the last step with ``train_runtime`` and no ``loss``, is not a step record)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line the kill cut short
            continue
    return [r["step"] for r in records if "loss" in r]


@pytest.mark.slow
def test_grpo_training_changes_what_it_must(tmp_path_factory):
    """Notebook 07 from the SFT warm-up (notebook 06): rewards finite, some group with reward spread, LoRA weights
    moved, checkpoint, metrics and adapter written. (Never the loss: with beta=0 it is the token-averaged
    advantage, ~0.)"""
    import shutil

    from test_sft import warm_sft_run

    from helpers.model.lora import lora_delta, lora_state

    sft_run, _ = warm_sft_run(tmp_path_factory)
    run = tmp_path_factory.mktemp("grpo-train")
    shutil.copytree(sft_run / "sft", run / "sft")
    ns = run_stage(7, run, grpo_steps=2, num_generations=4, max_completion_length=40, train_levels=1,
                   grpo_train_problems=16)
    assert ns["start"].startswith("SFT adapter") and ns["trainer"].state.global_step == 2
    assert ns["resume_from"] is None
    history = ns["history"]
    assert [row["step"] for row in history] == [1, 2]
    for row in history:
        assert math.isfinite(row["reward"]) and math.isfinite(row["reward_std"])
        for name in ("strict_format_reward", "correctness_reward", "format_compliance", "accuracy"):
            assert math.isfinite(row[f"rewards/{name}/mean"])
    assert any(row["reward_std"] > 0 and row["frac_reward_zero_std"] < 1 for row in history), history
    from helpers.train.policy import load_policy

    start, _, _ = load_policy(run, profile="ci")  # the SFT adapter, as GRPO started from it
    assert lora_delta(lora_state(start), ns["model"]) > 0
    ckpt = run / "grpo" / "checkpoints" / "checkpoint-2"
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "adapter_model.safetensors").is_file()
    assert (ckpt / "optimizer.pt").is_file()
    assert metric_steps(run / "grpo" / "metrics.jsonl") == [1, 2]
    assert (run / "grpo" / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "plots" / "grpo_dashboard.png").is_file()
    info = json.loads((run / "grpo" / "adapter" / "training.json").read_text())
    assert info["steps"] == 2 and info["settings"]["grpo_steps"] == 2 and info["config"]["num_generations"] == 4


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


@pytest.mark.slow
def test_killed_run_resumes_without_gap_or_duplicate(tmp_path):
    """SIGKILL a GRPO run after its first checkpoint (and a logged step past it), resume, and check the
    step count continues, the metrics history is 1..N exactly once, and the final adapter loads."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from helpers.model.embedded import embedded_model_path

    run = tmp_path / "run"
    steps, every = 4, 2
    assert every == 2  # the ci profile's save_steps
    cmd = [sys.executable, "-m", "helpers.run.cli", "stage", "7", "--out", str(run), "--profile", "ci",
           "-p", "from_sft=False", "-p", f"grpo_steps={steps}", "-p", "num_generations=2",
           "-p", "max_completion_length=8", "-p", "grpo_train_problems=32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    checkpoints, metrics = run / "grpo" / "checkpoints", run / "grpo" / "metrics.jsonl"
    with open(tmp_path / "first.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it was killed:\n{(tmp_path / 'first.log').read_text()[-3000:]}")
            if newest_checkpoint(checkpoints) and metrics.exists() and every + 1 in metric_steps(metrics):
                break
            time.sleep(0.1)
        else:
            proc.kill()
            pytest.fail("no checkpoint within 300 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    logged = metric_steps(metrics)
    assert logged[: every + 1] == list(range(1, every + 2)) and not (run / "grpo" / "adapter").exists()
    killed_at = max(logged)
    # a save the kill interrupted: a checkpoint folder without trainer_state.json must not be resumed from
    fake_checkpoint(checkpoints, killed_at + 1, complete=False)

    second = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    said = [line for line in second.stdout.splitlines() if "GRPO resume" in line]  # helpers.train.checkpoints' notice
    assert said and f"from checkpoint-{every}" in said[0], second.stdout[-2000:]
    partial = checkpoints / f"checkpoint-{killed_at + 1}"  # removed, or written again whole by the resumed run
    assert not partial.exists() or (partial / "trainer_state.json").is_file()
    # the step count continues from the checkpoint, and the history has each step exactly once
    assert f"step {every + 1}/{steps}" in second.stdout and f"step {every}/{steps}" not in second.stdout
    assert metric_steps(metrics) == list(range(1, steps + 1))
    state = json.loads((newest_checkpoint(checkpoints) / "trainer_state.json").read_text())
    assert state["global_step"] == steps
    info = json.loads((run / "grpo" / "adapter" / "training.json").read_text())
    assert info["steps"] == steps and info["resumed_from"].endswith(f"checkpoint-{every}")
    # the final adapter loads onto the base model, with the weights of the last checkpoint
    base = AutoModelForCausalLM.from_pretrained(embedded_model_path())
    model = PeftModel.from_pretrained(base, run / "grpo" / "adapter")
    final = load_file(run / "grpo" / "adapter" / "adapter_model.safetensors")
    last = load_file(newest_checkpoint(checkpoints) / "adapter_model.safetensors")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    loaded = get_peft_model_state_dict(model)
    assert loaded.keys() == final.keys() and all(torch.equal(loaded[k], final[k]) for k in final)
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2, do_sample=False)
    assert out.shape == (1, 5)
