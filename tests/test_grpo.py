"""helpers.train.grpo: settings per profile and their refusals, reward and dataset guards, checkpoints, and
real GRPO on CPU with the embedded model: training changes what it must, and a run killed with
SIGKILL resumes with no gap and no duplicate in its history."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from helpers.rewards.guard import GuardedReward, RewardFunctionError, guard_rewards
from helpers.runtime.hardware import Hardware
from helpers.train.checkpoints import complete_checkpoints, newest_checkpoint
from helpers.train.grpo_config import GRPOSettings
from helpers.train.grpo_inputs import check_dataset

REPO = Path(__file__).resolve().parents[1]
CPU = Hardware(cuda=False, gpu_name=None, cuda_capability=None, vram_gib=None, bf16=False, cpu_threads=2,
               colab=False, notebook=False, unsloth=False, vllm=False)
T4 = Hardware(cuda=True, gpu_name="Tesla T4", cuda_capability=(7, 5), vram_gib=15.0, bf16=False, cpu_threads=2,
              colab=True, notebook=True, unsloth=True, vllm=True)
H100 = Hardware(cuda=True, gpu_name="H100", cuda_capability=(9, 0), vram_gib=80.0, bf16=True, cpu_threads=16,
                colab=False, notebook=False, unsloth=True, vllm=False)


def grpo_config_fields() -> set[str]:
    from trl import GRPOConfig

    return {f.name for f in fields(GRPOConfig)}


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["colab-t4", "gpu", "cpu", "ci"])
def test_every_option_exists_in_trl_grpo_config(profile):
    kwargs = GRPOSettings.for_profile(profile).trl_kwargs("/tmp/x", CPU)
    assert set(kwargs) <= grpo_config_fields()
    assert "max_prompt_length" not in grpo_config_fields()  # gone in TRL >= 1.0: prompts are filtered instead
    assert kwargs["logging_steps"] == 1 and kwargs["report_to"] == "none" and kwargs["max_grad_norm"] == 0.1
    assert kwargs["use_cpu"] and not kwargs["fp16"] and not kwargs["bf16"] and kwargs["dataloader_num_workers"] == 0
    assert kwargs["remove_unused_columns"] is False  # the answer column must reach the rewards
    assert kwargs["per_device_train_batch_size"] % kwargs["num_generations"] == 0


def test_gpu_profiles_follow_unsloths_recipe():
    t4 = GRPOSettings.for_profile("colab-t4").trl_kwargs("/tmp/x", T4, use_vllm=True)
    assert t4["fp16"] and not t4["bf16"] and "use_cpu" not in t4
    assert t4["learning_rate"] == 5e-6 and t4["max_grad_norm"] == 0.1 and t4["beta"] == 0.0
    assert 8 <= t4["num_generations"] <= 16 and t4["use_vllm"] and t4["vllm_mode"] == "colocate"
    assert t4["gradient_checkpointing"] is True
    gpu = GRPOSettings.for_profile("gpu").trl_kwargs("/tmp/x", H100)
    assert gpu["bf16"] and not gpu["fp16"] and 8 <= gpu["num_generations"] <= 16
    assert gpu["max_completion_length"] >= t4["max_completion_length"] and "use_vllm" not in gpu
    assert gpu["per_device_train_batch_size"] == 2 * gpu["num_generations"]  # two prompts per step
    assert GRPOSettings.for_profile("cpu").learning_rate > 5e-6  # few steps on a small model


def test_real_grpo_config_builds_on_cpu(tmp_path):
    s = GRPOSettings.for_profile("ci")
    config = s.to_trl(tmp_path)
    assert config.num_generations == s.num_generations and config.use_cpu and not config.bf16
    assert config.generation_batch_size % config.num_generations == 0
    assert config.scale_rewards == "group" and config.loss_type == "dapo" and config.save_steps == s.save_steps


def test_batch_not_holding_whole_groups_is_refused_with_the_fix():
    with pytest.raises(ValueError) as err:
        GRPOSettings.for_profile("gpu", per_device_train_batch_size=12)
    msg = str(err.value)
    assert "12 is not a multiple of num_generations=16" in msg and "fix: set per_device_train_batch_size=16" in msg


@pytest.mark.parametrize(("override", "message"), [
    ({"num_generations": 1}, "at least 2 completions.*fix: num_generations=8-16"),
    ({"temperature": 0.0}, "temperature=0.0: GRPO must sample.*fix"),
    ({"loss_type": "ppo"}, "loss_type='ppo' is not supported.*fix: use one of dapo, grpo, dr_grpo"),
    ({"scale_rewards": "std"}, "scale_rewards='std'; fix: use one of group, batch, none"),
    ({"max_completion_length": 256}, "leaves no room for the prompt in max_seq_length=256; fix"),
    ({"beta": -0.1}, "beta=-0.1 must be >= 0; fix"),
    ({"learning_rate": 0.1}, "learning_rate=0.1 is outside.*fix: 5e-6"),
    ({"max_grad_norm": 0}, "max_grad_norm=0 must be > 0; fix"),
    ({"fp16": True, "bf16": True}, "both set; fix"),
    ({"reward_weights": [0, 0]}, "every reward weight is 0.*fix"),
    ({"reward_weights": [1, float("nan")]}, "finite numbers.*fix"),
    ({"save_steps": 0}, "save_steps=0 must be a positive integer; fix"),
])
def test_invalid_settings_are_refused_with_the_fix(override, message):
    with pytest.raises(ValueError, match=message):
        GRPOSettings.for_profile("ci", **override)


def test_machine_dependent_refusals():
    with pytest.raises(ValueError, match="no bf16.*fix: pass fp16=True"):
        GRPOSettings.for_profile("colab-t4", bf16=True).trl_kwargs("/tmp/x", T4)
    with pytest.raises(ValueError, match="on a CPU; fix"):
        GRPOSettings.for_profile("cpu", fp16=True).trl_kwargs("/tmp/x", CPU)
    with pytest.raises(ValueError, match="vLLM is not installed.*fix: use_vllm=False"):
        GRPOSettings.for_profile("gpu", use_vllm=True).trl_kwargs("/tmp/x", H100)


def test_overrides_and_explanations():
    s = GRPOSettings.for_profile("cpu", num_generations=4)
    assert s.per_device_train_batch_size % 4 == 0  # the batch follows the group size when not given
    assert GRPOSettings.for_profile("ci", scale_rewards=False).scale_rewards == "none"
    with pytest.raises(TypeError, match="unknown GRPO setting.*max_prompt_length.*fix"):
        GRPOSettings.for_profile("ci", max_prompt_length=128)
    text = GRPOSettings.explain()
    for name in ("beta", "loss_type", "scale_rewards", "num_generations", "max_grad_norm", "temperature"):
        assert f"\n{name}: " in "\n" + text
    assert "no value model" not in text  # the module docstring explains GRPO; fields explain themselves
    with pytest.warns(UserWarning, match="dr_grpo.*scale_rewards='none'"):
        GRPOSettings.for_profile("ci", loss_type="dr_grpo")


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
    """From the SFT warm-up: rewards finite, some group with reward spread, LoRA weights moved,
    checkpoint, metrics and adapter written. (Never the loss: with beta=0 it is the token-averaged advantage, ~0.)"""
    from test_sft import warm_sft_run

    from helpers.data.synthetic import synthetic_dataset
    from helpers.model.lora import lora_delta, lora_state
    from helpers.train.grpo import train_grpo
    from helpers.train.policy import load_policy

    sft_run, _ = warm_sft_run(tmp_path_factory)
    run = tmp_path_factory.mktemp("grpo-train")
    model, tokenizer, start = load_policy(sft_run, profile="ci")
    assert start.startswith("SFT adapter")
    before = lora_state(model)
    result = train_grpo(model, tokenizer, synthetic_dataset(16, difficulty=1, seed=5), run_dir=run, profile="ci",
                        max_steps=2, save_steps=2, num_generations=4, max_completion_length=40,
                        dashboard={"notebook": False, "plot_every": 0})
    assert result.steps == 2 and result.resumed_from is None
    history = result.history
    assert [row["step"] for row in history] == [1, 2]
    for row in history:
        assert math.isfinite(row["reward"]) and math.isfinite(row["reward_std"])
        for name in ("strict_format_reward", "correctness_reward", "format_compliance", "accuracy"):
            assert math.isfinite(row[f"rewards/{name}/mean"])
    assert any(row["reward_std"] > 0 and row["frac_reward_zero_std"] < 1 for row in history), history
    assert lora_delta(before, model) > 0
    ckpt = run / "grpo" / "checkpoints" / "checkpoint-2"
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "adapter_model.safetensors").is_file()
    assert (ckpt / "optimizer.pt").is_file()
    assert metric_steps(run / "grpo" / "metrics.jsonl") == [1, 2]
    assert (run / "grpo" / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "plots" / "grpo_dashboard.png").is_file()


@pytest.mark.slow
def test_a_reward_that_raises_stops_training_with_its_name(tmp_path, fresh_model):
    from helpers.data.synthetic import synthetic_dataset
    from helpers.train.grpo import train_grpo
    from helpers.train.policy import load_policy

    model, tokenizer, _ = load_policy(tmp_path, profile="ci", model=fresh_model[0], tokenizer=fresh_model[1])
    with pytest.raises(RewardFunctionError, match="'broken_reward' raised KeyError"):
        train_grpo(model, tokenizer, synthetic_dataset(4), [broken_reward], run_dir=tmp_path, profile="ci",
                   max_steps=1, num_generations=2, max_completion_length=4, dashboard=False)


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
    cmd = [sys.executable, "-m", "helpers.train.grpo", "--run-dir", str(run), "--profile", "ci", "--no-sft",
           "--max-steps", str(steps), "--save-steps", str(every), "--num-generations", "2",
           "--max-completion-length", "8", "--problems", "32", "--threads", "1"]
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
    assert f"resuming from {checkpoints / f'checkpoint-{every}'}" in second.stdout, second.stdout[-2000:]
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
