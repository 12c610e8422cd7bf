"""The one profile table: every per-profile value in ``helpers.runtime.profiles.PROFILE_TABLE``, named fields
with help, checked in the user's own names, read by every stage; a value changed in the table reaches TRL's
``SFTConfig`` and ``GRPOConfig`` through notebooks 06 and 07's own cells, and the evaluation."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import pytest
from stages import notebook, run_stage

from helpers.run.stage import code_cells
from helpers.runtime.hardware import Hardware
from helpers.runtime.profiles import PROFILE_TABLE, PROFILES, profile_settings
from helpers.runtime.settings import Settings
from helpers.train.trainer_args import machine_args, rollout_args

REPO = Path(__file__).resolve().parents[1]

CPU = Hardware(cuda=False, gpu_name=None, cuda_capability=None, vram_gib=None, bf16=False, cpu_threads=2,
               colab=False, notebook=False, unsloth=False, vllm=False)
T4 = Hardware(cuda=True, gpu_name="Tesla T4", cuda_capability=(7, 5), vram_gib=15.0, bf16=False, cpu_threads=2,
              colab=True, notebook=True, unsloth=True, vllm=False)
H100 = Hardware(cuda=True, gpu_name="H100", cuda_capability=(9, 0), vram_gib=80.0, bf16=True, cpu_threads=16,
                colab=False, notebook=False, unsloth=True, vllm=True)


def test_one_row_per_profile_every_field_explained():
    assert tuple(PROFILE_TABLE) == PROFILES
    for name, row in PROFILE_TABLE.items():
        assert row.profile == name
    stages = {f.metadata["stage"] for f in fields(Settings)}
    assert stages == {"model", "sft", "grpo", "eval"}
    assert all(len(f.metadata["help"]) > 20 for f in fields(Settings))


def test_the_recipes_per_profile():
    t4, gpu, cpu = PROFILE_TABLE["colab-t4"], PROFILE_TABLE["gpu"], PROFILE_TABLE["cpu"]
    assert t4.grpo_learning_rate == 5e-6 and 8 <= t4.num_generations <= 16  # Unsloth's T4 notebooks
    assert gpu.grpo_learning_rate == 2e-5 and gpu.grpo_batch_size == 2 * gpu.num_generations  # two prompts a step
    assert cpu.grpo_learning_rate > 5e-6 and cpu.group_filter == "drop" and cpu.eval_gsm8k_problems == 0
    assert t4.model_name and cpu.model_name is None and PROFILE_TABLE["ci"].model_name is None


def test_notebook_parameters_override_and_none_keeps_the_profiles():
    s = profile_settings("ci", grpo_steps=7, sft_steps=None)
    assert s.grpo_steps == 7 and s.sft_steps == PROFILE_TABLE["ci"].sft_steps
    assert profile_settings("cpu", num_generations=2).grpo_batch_size == 8  # 8 holds whole groups of 2
    assert profile_settings("gpu", num_generations=12).grpo_batch_size == 12  # one group per step
    with pytest.raises(TypeError, match="unknown setting.*max_steps.*fix"):
        profile_settings("ci", max_steps=3)


@pytest.mark.parametrize(("values", "message"), [
    ({"grpo_steps": 0}, "grpo_steps=0 must be a whole number >= 1; fix"),
    ({"grpo_steps": 1.5}, "grpo_steps=1.5 must be a whole number"),
    ({"num_generations": 1}, "num_generations=1: GRPO compares at least 2.*fix"),
    ({"grpo_temperature": 0.0}, "grpo_temperature=0.0: GRPO must sample.*fix"),
    ({"grpo_learning_rate": float("nan")}, "grpo_learning_rate=nan is outside.*fix"),
    ({"grpo_learning_rate": -1}, "grpo_learning_rate=-1 is outside"),
    ({"grpo_batch_size": 12, "num_generations": 8}, "grpo_batch_size=12 is not a multiple of num_generations=8.*fix: grpo_batch_size=8"),
    ({"max_completion_length": 256}, "leaves no room for the prompt in max_seq_length=256; fix"),
    ({"group_filter": "bogus"}, "group_filter='bogus'; fix: one of off, drop, resample"),
    ({"train_levels": (4,)}, r"train_levels=\(4,\); fix"),
    ({"lora_rank": 0}, "lora_rank=0 must be a whole number >= 1"),
    ({"lora_rank": 7}, "lora_rank=7 is not supported; fix"),
    ({"eval_problems": 0}, "eval_problems=0 must be a whole number >= 1"),
    ({"sft_warmup_ratio": 1.5}, "sft_warmup_ratio=1.5 must be in"),
])
def test_invalid_values_are_refused_in_the_users_own_names(values, message):
    with pytest.raises(ValueError, match=message) as err:
        profile_settings("ci", **values)
    assert "\n" not in str(err.value)


def test_machine_arguments():
    cpu = machine_args(CPU)
    assert cpu["use_cpu"] and not cpu["fp16"] and not cpu["bf16"] and not cpu["gradient_checkpointing"]
    assert cpu["report_to"] == "none" and cpu["disable_tqdm"] and cpu["dataloader_num_workers"] == 0
    t4 = machine_args(T4)
    assert t4["fp16"] and not t4["bf16"] and t4["gradient_checkpointing"] and "use_cpu" not in t4
    h100 = machine_args(H100)
    assert h100["bf16"] and not h100["fp16"]


def test_rollout_arguments_only_for_vllm():
    from helpers.generate.backends import Backend

    assert rollout_args(Backend("transformers", "model.generate", "no GPU"), hw=CPU) == {}
    assert rollout_args(Backend("suite-sampler", "sampler", "T4"), hw=T4) == {}


def test_every_argument_the_notebooks_pass_exists_in_trls_configs():
    """Notebook 07's GRPOConfig(...) and 06's SFTConfig(...) name only options TRL 1.15 has (no
    max_prompt_length: gone in TRL >= 1.0, prompts are filtered instead)."""
    import ast

    from trl import GRPOConfig, SFTConfig

    for number, config in ((6, SFTConfig), (7, GRPOConfig)):
        calls = [node for source, _ in code_cells(notebook(number)) for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == config.__name__]
        (call,) = calls
        names = {k.arg for k in call.keywords if k.arg}
        assert names <= {f.name for f in fields(config)}, names - {f.name for f in fields(config)}
    assert "max_prompt_length" not in {f.name for f in fields(GRPOConfig)}
    assert set(machine_args(H100)) <= {f.name for f in fields(GRPOConfig)} & {f.name for f in fields(SFTConfig)}


def test_the_benchmarks_train_with_notebook_07s_fixed_grpo_settings():
    """benchmarks/grpo_speed_gpu/grpo_gpu.py and benchmarks/t4/measure.py time "notebook 07's GRPOConfig": the
    constant arguments of the notebook's call (weight decay, clipping, loss, reward scaling) are theirs too, so an
    edit in the notebook fails here until the benchmarks follow."""
    import ast

    (call,) = [node for source, _ in code_cells(notebook(7)) for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "GRPOConfig"]
    fixed = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
    assert {"weight_decay", "max_grad_norm", "loss_type", "scale_rewards"} <= set(fixed)
    for script in ("benchmarks/grpo_speed_gpu/grpo_gpu.py", "benchmarks/t4/measure.py"):
        tree = ast.parse((REPO / script).read_text())
        (config,) = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", None)
                     == "dict" and any(k.arg == "loss_type" for k in node.keywords)]
        theirs = {k.arg: k.value.value for k in config.keywords if isinstance(k.value, ast.Constant)}
        shared = {k: fixed[k] for k in ("weight_decay", "max_grad_norm", "loss_type", "scale_rewards")}
        assert {k: theirs.get(k) for k in shared} == shared, script


class _Captured(Exception):
    """Raised instead of training: the config the notebook built is all the test needs."""


@pytest.mark.slow
def test_a_value_changed_in_the_table_reaches_sft_grpo_and_the_evaluation(tmp_path, monkeypatch):
    """Change the ci row of the table, run notebooks 06 and 07's own cells up to ``trainer.train()``, and the
    evaluation's sizes: each changed value arrives where TRL and the evaluation read it."""
    import trl

    from helpers.evaluate.held_out import held_out_sets

    row = replace(PROFILE_TABLE["ci"], sft_learning_rate=7e-4, sft_batch_size=2, grpo_learning_rate=3e-5,
                  num_generations=2, grpo_batch_size=6, max_completion_length=20, grpo_warmup_ratio=0.2,
                  save_steps=5, eval_problems=6, eval_gsm8k_problems=0)
    monkeypatch.setitem(PROFILE_TABLE, "ci", row)
    seen = {}
    for name, trainer in (("sft", trl.SFTTrainer), ("grpo", trl.GRPOTrainer)):
        def train(self, *args, _name=name, **kwargs):
            seen[_name] = self.args
            raise _Captured()

        monkeypatch.setattr(trainer, "train", train)
    for number in (6, 7):
        with pytest.raises(_Captured):
            run_stage(number, tmp_path)
    sft, grpo = seen["sft"], seen["grpo"]
    assert sft.learning_rate == 7e-4 and sft.per_device_train_batch_size == 2 and sft.max_length == row.max_seq_length
    assert grpo.learning_rate == 3e-5 and grpo.num_generations == 2 and grpo.per_device_train_batch_size == 6
    assert grpo.max_completion_length == 20 and grpo.warmup_steps == 0.2 and grpo.save_steps == 5
    assert grpo.temperature == row.grpo_temperature and grpo.max_steps == row.grpo_steps
    sets = held_out_sets(profile="ci")
    assert len(sets["synthetic"]) == 6 and len(sets["paraphrased"]) == 3 and "gsm8k" not in sets
    json.dumps(sft.to_dict()), json.dumps(grpo.to_dict())  # both configs are whole TRL configs
