"""helpers.train.sft: settings, data, responses-only masking, atomic adapter saving, and a real warm-up on CPU.

``warm_sft_run`` trains the embedded model once per test session (a few steps at the ``ci`` profile's
learning rate) into a run folder; tests/test_grpo.py starts GRPO from the adapter it saves.
"""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from helpers.runtime.hardware import Hardware
from helpers.runtime.threads import cpu_threads, free_cores
from helpers.save.adapter import save_adapter
from helpers.train.sft import response_markers, sft_dataset
from helpers.train.sft_config import SFTSettings

CPU = Hardware(cuda=False, gpu_name=None, cuda_capability=None, vram_gib=None, bf16=False, cpu_threads=2,
               colab=False, notebook=False, unsloth=False, vllm=False)
T4 = Hardware(cuda=True, gpu_name="Tesla T4", cuda_capability=(7, 5), vram_gib=15.0, bf16=False, cpu_threads=2,
              colab=True, notebook=True, unsloth=True, vllm=True)
A100 = Hardware(cuda=True, gpu_name="A100", cuda_capability=(8, 0), vram_gib=80.0, bf16=True, cpu_threads=8,
                colab=False, notebook=False, unsloth=True, vllm=True)

# The warm-up the GRPO tests start from: level-1 problems fit in 48 new tokens.
WARM_STEPS, WARM_PROMPTS = 6, 4
_WARM: dict = {}


def warm_sft_run(tmp_path_factory):
    """``(run_dir, SFTResult)`` of one short SFT warm-up on the embedded model, trained once per session."""
    if "result" not in _WARM:
        import torch

        from helpers.data.synthetic import synthetic_dataset
        from helpers.model.load import load_model
        from helpers.train.sft import train_sft

        torch.manual_seed(0)
        run = tmp_path_factory.getbasetemp() / "sft-warm"
        model, tokenizer = load_model(profile="ci")
        held_out = synthetic_dataset(WARM_PROMPTS, difficulty=1, seed=99)
        _WARM["result"] = train_sft(model, tokenizer, run_dir=run, profile="ci", held_out=held_out,
                                    max_steps=WARM_STEPS, compliance_prompts=WARM_PROMPTS,
                                    compliance_max_new_tokens=48, dashboard={"notebook": False, "plot_every": 0})
        _WARM["run"], _WARM["held_out"] = run, held_out
    return _WARM["run"], _WARM["result"]


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["colab-t4", "gpu", "cpu", "ci"])
def test_settings_per_profile_build_valid_sft_config_arguments(profile):
    from trl import SFTConfig

    s = SFTSettings.for_profile(profile)
    kwargs = s.trl_kwargs("/tmp/x", CPU)
    assert set(kwargs) <= {f.name for f in fields(SFTConfig)}, "an option TRL 1.15's SFTConfig does not have"
    assert kwargs["completion_only_loss"] is True and kwargs["packing"] is False
    assert kwargs["use_cpu"] and not kwargs["fp16"] and not kwargs["bf16"] and kwargs["report_to"] == "none"
    assert kwargs["logging_steps"] == 1 and kwargs["dataloader_num_workers"] == 0


def test_precision_follows_the_gpu():
    s = SFTSettings.for_profile("colab-t4")
    t4 = s.trl_kwargs("/tmp/x", T4)
    assert t4["fp16"] and not t4["bf16"] and "use_cpu" not in t4
    a100 = s.trl_kwargs("/tmp/x", A100)
    assert a100["bf16"] and not a100["fp16"]
    # Unsloth's responses-only masking trains on rendered text
    assert s.trl_kwargs("/tmp/x", A100, completion_only=False)["dataset_text_field"] == "text"
    with pytest.raises(ValueError, match="no bf16.*fix: pass fp16=True"):
        SFTSettings.for_profile("colab-t4", bf16=True).trl_kwargs("/tmp/x", T4)
    with pytest.raises(ValueError, match="on a CPU; fix"):
        SFTSettings.for_profile("cpu", fp16=True).trl_kwargs("/tmp/x", CPU)


def test_real_sft_config_builds_on_cpu(tmp_path):
    config = SFTSettings.for_profile("ci").to_trl(tmp_path)
    assert config.completion_only_loss is True and config.use_cpu and not config.bf16
    assert config.max_steps == SFTSettings.for_profile("ci").max_steps


@pytest.mark.parametrize(("override", "message"), [
    ({"max_steps": 0}, "max_steps=0 must be a positive integer; fix"),
    ({"learning_rate": 0.5}, "learning_rate=0.5 is outside.*fix: 2e-4"),
    ({"fp16": True, "bf16": True}, "both set; fix"),
    ({"warmup_ratio": 1.5}, "warmup_ratio=1.5.*fix"),
])
def test_invalid_settings_are_refused_with_the_fix(override, message):
    with pytest.raises(ValueError, match=message):
        SFTSettings.for_profile("ci", **override)


def test_unknown_setting_names_the_valid_ones():
    with pytest.raises(TypeError, match="unknown SFT setting.*lerning_rate.*fix"):
        SFTSettings.for_profile("ci", lerning_rate=1e-4)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def test_default_data_is_synthetic_prompt_completion_traces():
    ds = sft_dataset(n=8)
    assert ds.column_names == ["prompt", "completion"] and len(ds) == 8
    assert ds[0]["prompt"][0]["role"] == "system" and ds[0]["completion"][0]["role"] == "assistant"
    assert ds[0]["completion"][0]["content"].startswith("<reasoning>")


def test_messages_column_is_split_into_prompt_and_completion():
    rows = [{"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<answer>2</answer>"}]}]
    ds = sft_dataset(rows)
    assert ds[0]["prompt"] == [{"role": "user", "content": "1+1?"}]
    assert ds[0]["completion"] == [{"role": "assistant", "content": "<answer>2</answer>"}]


def test_bad_sft_data_is_refused_with_the_fix():
    from datasets import Dataset

    with pytest.raises(ValueError, match="needs 'prompt' and 'completion'.*fix"):
        sft_dataset(Dataset.from_list([{"question": "q", "answer": "1"}]))
    with pytest.raises(ValueError, match="empty; fix"):
        sft_dataset(Dataset.from_list([{"prompt": [], "completion": []}]).select([]))
    with pytest.raises(TypeError, match="fix"):
        sft_dataset("data.jsonl")


def test_response_markers_from_the_chat_template(tokenizer):
    assert response_markers(tokenizer) == ("<|im_start|>user\n", "<|im_start|>assistant\n")


# ---------------------------------------------------------------------------------------------
# Atomic adapter saving
# ---------------------------------------------------------------------------------------------


class FakeAdapterModel:
    def __init__(self, content: bytes, fail: bool = False):
        self.content, self.fail = content, fail

    def save_pretrained(self, folder, safe_serialization=True):
        (folder / "adapter_config.json").write_text("{}")
        if self.fail:
            raise OSError("disk full")
        (folder / "adapter_model.safetensors").write_bytes(self.content)


def test_adapter_save_is_atomic(tmp_path):
    dest = tmp_path / "sft" / "adapter"
    save_adapter(FakeAdapterModel(b"one"), None, dest, info={"steps": 1})
    assert (dest / "adapter_model.safetensors").read_bytes() == b"one"
    assert json.loads((dest / "training.json").read_text()) == {"steps": 1}
    with pytest.raises(OSError, match="disk full"):  # a save that dies keeps the previous adapter whole
        save_adapter(FakeAdapterModel(b"two", fail=True), None, dest)
    assert (dest / "adapter_model.safetensors").read_bytes() == b"one"
    save_adapter(FakeAdapterModel(b"three"), None, dest)  # a complete save replaces it
    assert (dest / "adapter_model.safetensors").read_bytes() == b"three"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["adapter"], "temporary folders left behind"


def test_free_cores_sees_other_processes(monkeypatch):
    import os
    import subprocess
    import sys
    import time

    from helpers.runtime.threads import others_busy_cores

    if others_busy_cores() is None:
        pytest.skip("no /proc/stat here")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert others_busy_cores() >= 0.5  # another process spinning a core is seen
    finally:
        spinner.kill()
    monkeypatch.setattr("helpers.runtime.threads.others_busy_cores", lambda: None)  # no /proc: the load average
    monkeypatch.setattr("os.getloadavg", lambda: (1.7, 0.0, 0.0))
    assert free_cores() == max(1, (os.cpu_count() or 1) - 1)


def test_cpu_threads_are_restored(monkeypatch):
    import torch

    before = torch.get_num_threads()
    with cpu_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads(0) as n:  # 0: leave torch alone
        assert n == before
    monkeypatch.setattr("helpers.runtime.threads.others_busy_cores", lambda: 64.0)  # a busy machine: one thread
    assert free_cores() == 1
    with cpu_threads() as n:
        assert n == 1
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------------------------
# A real warm-up on CPU
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sft_warmup_teaches_the_format_and_saves_the_adapter(tmp_path_factory):
    run, result = warm_sft_run(tmp_path_factory)
    assert result.steps == WARM_STEPS and result.responses_only == "TRL completion_only_loss"
    assert 0 <= result.compliance_before <= 1 and 0 <= result.compliance_after <= 1
    assert result.compliance_after > result.compliance_before, (result.samples_before, result.samples_after)
    adapter = run / "sft" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    info = json.loads((adapter / "training.json").read_text())
    assert info["stage"] == "sft" and info["steps"] == WARM_STEPS
    summary = json.loads((run / "sft" / "summary.json").read_text())
    assert summary["compliance_after"] == result.compliance_after
    records = [json.loads(line) for line in (run / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, WARM_STEPS + 1))  # one row per step
    assert list((run / "plots").glob("sft_*.png"))


@pytest.mark.slow
def test_loss_is_on_the_completion_only(tmp_path_factory):
    _, result = warm_sft_run(tmp_path_factory)
    trainer = result.trainer
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    tok = trainer.processing_class
    trained = tok.decode(ids[labels != -100])
    assert trained.startswith("<reasoning>") and "</answer>" in trained and "<|im_end|>" in trained
    assert "Solve the math problem" not in trained and "<|im_start|>user" not in trained


@pytest.mark.slow
def test_grpo_starts_from_the_saved_adapter(tmp_path_factory):
    """The saved adapter reloads into a fresh model and gives the same greedy completions as after training."""
    from helpers.generate.chat import generate
    from helpers.train.policy import load_policy

    run, result = warm_sft_run(tmp_path_factory)
    model, tokenizer, start = load_policy(run, profile="ci")
    assert start.startswith("SFT adapter")
    prompts = list(_WARM["held_out"]["prompt"])
    with cpu_threads():
        assert generate(model, tokenizer, prompts, max_new_tokens=48) == result.samples_after
