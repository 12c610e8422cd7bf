"""helpers.train.sft: data, responses-only masking, atomic adapter saving, and a real warm-up on CPU.

``warm_sft_run`` runs notebook 06's own cells once per test session (a few steps at the ``ci`` profile's
learning rate) into a run folder; tests/test_grpo.py starts GRPO from the adapter it saves.
"""

from __future__ import annotations

import json

import pytest
from stages import run_stage

from helpers.runtime.hardware import Hardware
from helpers.runtime.threads import cpu_threads, free_cores
from helpers.save.adapter import save_adapter
from helpers.train.sft import mask_prompts, response_markers, responses_only, sft_dataset

CPU = Hardware(cuda=False, gpu_name=None, cuda_capability=None, vram_gib=None, bf16=False, cpu_threads=2,
               colab=False, notebook=False, unsloth=False, vllm=False)
A100 = Hardware(cuda=True, gpu_name="A100", cuda_capability=(8, 0), vram_gib=80.0, bf16=True, cpu_threads=8,
                colab=False, notebook=False, unsloth=True, vllm=True)

WARM_STEPS = 6  # the warm-up the GRPO tests start from
_WARM: dict = {}


def warm_sft_run(tmp_path_factory):
    """``(run_dir, namespace)`` of notebook 06 run once per session: a short SFT warm-up of the embedded model."""
    if "namespace" not in _WARM:
        run = tmp_path_factory.getbasetemp() / "sft-warm"
        _WARM["namespace"], _WARM["run"] = run_stage(6, run, sft_steps=WARM_STEPS), run
    return _WARM["run"], _WARM["namespace"]


def test_responses_only_uses_trls_loss_here_and_unsloths_masking_on_its_path(tokenizer):
    data = sft_dataset(n=4)
    same, args = responses_only(data, tokenizer, CPU)
    assert same is data and args == {"completion_only_loss": True}
    rendered, args = responses_only(data, tokenizer, A100)  # Unsloth's path: text rows for train_on_responses_only
    assert args == {"dataset_text_field": "text"} and rendered.column_names == ["text"]
    assert rendered[0]["text"].startswith("<|im_start|>system") and "<answer>" in rendered[0]["text"]
    trainer = object()
    assert mask_prompts(trainer, tokenizer, CPU) is trainer


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
    run, ns = warm_sft_run(tmp_path_factory)
    assert ns["trainer"].state.global_step == WARM_STEPS
    assert 0 <= ns["before"] <= 1 and 0 <= ns["after"] <= 1
    assert ns["after"] > ns["before"], (ns["samples_before"], ns["samples_after"])
    adapter = run / "sft" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    info = json.loads((adapter / "training.json").read_text())
    assert info["stage"] == "sft" and info["steps"] == WARM_STEPS and info["compliance_after"] == ns["after"]
    assert info["settings"]["sft_steps"] == WARM_STEPS and info["config"]["learning_rate"] == 1e-3  # ci's rate
    records = [json.loads(line) for line in (run / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, WARM_STEPS + 1))  # one row per step
    assert list((run / "plots").glob("sft_*.png"))


@pytest.mark.slow
def test_loss_is_on_the_completion_only(tmp_path_factory):
    _, ns = warm_sft_run(tmp_path_factory)
    trainer = ns["trainer"]
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

    run, ns = warm_sft_run(tmp_path_factory)
    model, tokenizer, start = load_policy(run, profile="ci")
    assert start.startswith("SFT adapter")
    prompts = list(ns["held_out"]["prompt"])
    with cpu_threads():
        assert generate(model, tokenizer, prompts, max_new_tokens=ns["settings"].compliance_max_new_tokens) \
            == ns["samples_after"]
