"""vLLM for real, on a CPU: vllm-cpu with the embedded SmolLM2-135M-Instruct.

These tests need vLLM, which the main test environment does not install: ``.ci/vllm-stage`` builds
its own virtual environment (``.venv-vllm``: vllm-cpu 0.32.0 on the CPU torch 2.13.0) and runs
``pytest -m vllm tests/test_vllm_cpu.py`` there. Elsewhere the module is skipped.

What they check:

- greedy evaluation through vLLM, of the base model and with a trained LoRA adapter as a
  ``LoRARequest`` (not a merged copy), writes the tokens transformers + PEFT's greedy decoding writes,
  and the log-probabilities vLLM reports for them agree with transformers' (the numerics, measured,
  with the tolerance explained below);
- the LoRA request changes the outputs (vLLM applied the adapter, it did not fall back to the base);
- ``helpers.evaluate.evaluation.evaluate_sets`` with the vLLM engine writes the results table, from exactly
  those greedy completions;
- helpers' table of vLLM's accepted ``max_lora_rank`` values is still vLLM's;
- GRPO with ``use_vllm=True, vllm_mode="colocate"`` (TRL 1.15's in-process vLLM engine, rollouts
  sampled by vLLM with the policy's merged LoRA weights pushed to it each step) runs a few steps,
  in a child process (colocate mode initialises ``torch.distributed`` in the process that runs it).

One engine and one vLLM greedy run per model serve the whole session (each vLLM generation takes
~10 s on this 2-core machine). transformers is checked teacher-forced: one forward pass over vLLM's
completion says whether its greedy decoding would write the same tokens, without decoding them one by
one. The engine's LoRA slots are the adapter's rank (``helpers.generate.vllm_requests.vllm_engine_kwargs``):
rank-64 slots made every LoRA request 3.8x slower. vLLM starts its engine core in a spawned process; under
``python -m pytest`` the spawned child imports ``pytest.__main__``, whose work is guarded by
``if __name__ == "__main__"``, so a session fixture may start it. ``VLLM_CPU_KVCACHE_SPACE`` (GiB of
KV cache) defaults to 1 here; vLLM's CPU default (4 GiB) is more than these tests need.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

if __name__ != "__main__":  # the GRPO child process runs this file as a script, outside pytest
    pytestmark = pytest.mark.vllm
    pytest.importorskip("vllm", reason="vLLM is not installed here: .ci/vllm-stage runs these tests in .venv-vllm")

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

MAX_NEW_TOKENS = 32
PROBLEMS = 4
LORA_RANK = 64  # the ci profile's rank: the adapter notebook 06 trains
# Tolerances, float32 on both sides. vLLM's CPU kernels (its attention, the LoRA ops that apply x·A·B
# per request) sum in another order than PyTorch's SDPA and PEFT's LoRA layers, so logits differ in
# the last bits: measured below ~1e-4 in log-probability on this model. A greedy pick can only differ
# where the two best logits are closer than that, so a differing token is accepted only at such a
# near-tie (top-2 logit gap under TIE_GAP, measured with transformers), and only that prompt's tokens
# after it are free to differ.
LOGPROB_TOLERANCE = 2e-3
TIE_GAP = 1e-2


# ---------------------------------------------------------------------------------------------
# Fixtures: one trained adapter, one engine, one transformers model, one vLLM greedy run per model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained(tmp_path_factory, embedded_path):
    """A LoRA adapter trained for a few SFT steps by notebook 06's own cells, saved in a run folder."""
    from stages import run_stage

    from helpers.files.runs import RunLayout

    run = tmp_path_factory.mktemp("vllm-run")
    ns = run_stage(6, run, sft_steps=4)
    assert ns["trainer"].state.global_step == 4 and ns["settings"].lora_rank == LORA_RANK
    return RunLayout(run)


@pytest.fixture(scope="session")
def lora(trained):
    from helpers.generate.vllm_requests import vllm_lora_id

    return ("sft", str(trained.sft_adapter), vllm_lora_id(trained.sft_adapter))


@pytest.fixture(scope="session")
def hf(trained, tokenizer):
    """The base model with the saved adapter loaded back from disk (what vLLM reads too)."""
    from helpers.model.adapters import load_adapter
    from helpers.model.load import load_model

    base, _ = load_model(profile="ci")
    return load_adapter(base, trained.sft_adapter, adapter_name="sft")


@pytest.fixture(scope="session")
def engine(embedded_path):
    from vllm import LLM

    from helpers.generate.vllm_requests import vllm_engine_kwargs

    start = time.perf_counter()
    llm = LLM(**vllm_engine_kwargs(embedded_path, lora_rank=LORA_RANK))
    print(f"\nvLLM engine started in {time.perf_counter() - start:.1f} s")
    yield llm
    del llm


@pytest.fixture(scope="session")
def prompts(tokenizer):
    from helpers.data.chat_template import render_prompt
    from helpers.evaluate.held_out import held_out_sets

    ds = held_out_sets(PROBLEMS, gsm8k=False, svamp_n=0, profile="ci")["synthetic"]
    return ds, [render_prompt(tokenizer, p) for p in ds["prompt"]]


@pytest.fixture(scope="session")
def vllm_greedy(engine, tokenizer, prompts, lora):
    """vLLM's greedy token ids and their log-probabilities: ``{"base": (ids, logps), "sft": ...}``."""
    _, texts = prompts
    return {"base": _vllm_greedy(engine, tokenizer, texts), "sft": _vllm_greedy(engine, tokenizer, texts, lora)}


def _vllm_greedy(engine, tokenizer, texts, lora=None, max_new_tokens=MAX_NEW_TOKENS):
    """Token ids and their log-probabilities, greedy, through helpers' argument builders."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    from helpers.generate.vllm_requests import vllm_lora_kwargs, vllm_prompts, vllm_sampling_kwargs

    params = SamplingParams(**vllm_sampling_kwargs(max_new_tokens=max_new_tokens), logprobs=0)
    request = LoRARequest(**vllm_lora_kwargs(*lora)) if lora else None
    outs = engine.generate(vllm_prompts(tokenizer, texts), params, lora_request=request, use_tqdm=False)
    ids, logps = [], []
    for out in outs:
        o = out.outputs[0]
        ids.append(list(o.token_ids))
        logps.append([step[t].logprob for step, t in zip(o.logprobs, o.token_ids, strict=True)])
    return ids, logps


def _hf_logprobs(model, tokenizer, text, completion):
    """Teacher-forced over ``completion`` (unpadded): transformers' log-probabilities of its tokens, the
    top-2 logit gap and the argmax at each position."""
    import torch

    prompt = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    ids = torch.cat([prompt, torch.tensor([completion])], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, prompt.shape[1] - 1:-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]
    top = torch.topk(logits, 2, dim=-1)
    return logp.tolist(), (top.values[:, 0] - top.values[:, 1]).tolist(), top.indices[:, 0].tolist()


def _compare(v_ids, v_logps, hf_model, tokenizer, texts, max_new_tokens=MAX_NEW_TOKENS) -> dict:
    """Would transformers' greedy decoding write vLLM's tokens? One teacher-forced forward pass per prompt
    over vLLM's completion: where every token is transformers' argmax given the tokens before it, its
    greedy decoding writes the same completion (by induction over the positions), end-of-turn included.
    Where one is not, it records the position and how close transformers' two best logits were there."""
    report = {"same": [], "parted_at": [], "tie_gap": [], "max_logprob_diff": 0.0}
    for text, ids, logps in zip(texts, v_ids, v_logps, strict=True):
        h_logps, gaps, argmax = _hf_logprobs(hf_model, tokenizer, text, ids)
        k = next((j for j, (a, b) in enumerate(zip(ids, argmax, strict=True)) if a != b), None)
        if k is None and len(ids) < max_new_tokens and ids[-1] != tokenizer.eos_token_id:
            k = len(ids)  # vLLM stopped early without an end-of-turn token: not what greedy decoding does
        report["same"].append(k is None)
        report["parted_at"].append(k)
        shared = len(ids) if k is None else k
        diffs = [abs(a - b) for a, b in zip(logps[:shared], h_logps[:shared], strict=True)]
        report["max_logprob_diff"] = max([report["max_logprob_diff"], *diffs])
        report["tie_gap"].append(None if k is None or k >= len(gaps) else gaps[k])
    return report


def _explain(report) -> str:
    return (f"same={report['same']} parted_at={report['parted_at']} tie_gap={report['tie_gap']} "
            f"max |logprob diff|={report['max_logprob_diff']:.2e}")


# ---------------------------------------------------------------------------------------------
# Evaluation through vLLM
# ---------------------------------------------------------------------------------------------


def test_lora_ranks_are_vllms():
    """helpers' table of the max_lora_rank values vLLM accepts is vLLM's own (fails when vLLM changes it)."""
    import typing

    from vllm.config.lora import MaxLoRARanks

    from helpers.generate.vllm_requests import VLLM_LORA_RANKS

    assert tuple(typing.get_args(MaxLoRARanks)) == VLLM_LORA_RANKS


@pytest.mark.parametrize("model", ["base", "sft"])
def test_greedy_matches_transformers(model, hf, vllm_greedy, tokenizer, prompts):
    """Greedy, the base model and the trained adapter as a LoRARequest: vLLM writes transformers + PEFT's
    tokens, with log-probabilities within LOGPROB_TOLERANCE; they may part only at a near-tie."""
    import contextlib

    _, texts = prompts
    v_ids, v_logps = vllm_greedy[model]
    with hf.disable_adapter() if model == "base" else contextlib.nullcontext():
        report = _compare(v_ids, v_logps, hf, tokenizer, texts)
    print(f"\n{model}:", _explain(report))
    assert report["max_logprob_diff"] < LOGPROB_TOLERANCE, _explain(report)
    for same, gap in zip(report["same"], report["tie_gap"], strict=True):
        assert same or (gap is not None and gap < TIE_GAP), "vLLM and transformers part away from a tie: " + _explain(report)
    assert sum(report["same"]) >= len(texts) - 1, _explain(report)


def test_lora_request_changes_outputs(vllm_greedy):
    """vLLM applied the adapter: with the LoRA request it writes other completions than without it (and
    test_greedy_matches_transformers[sft] checks they are PEFT's)."""
    assert vllm_greedy["base"][0] != vllm_greedy["sft"][0], "the LoRA request changed nothing in vLLM"


def test_evaluate_sets_through_vllm(trained, engine, tokenizer, prompts, vllm_greedy):
    """evaluate_sets on the vLLM engine: base + the run's adapter (a LoRARequest), the results written,
    and its completions are the greedy ones checked against transformers above."""
    from helpers.evaluate.evaluation import evaluate_sets

    ds, _ = prompts
    tables = evaluate_sets({"synthetic": ds}, trained.root, model=engine, tokenizer=tokenizer,
                                      adapters={"sft": trained.sft_adapter}, max_new_tokens=MAX_NEW_TOKENS,
                                      problems=PROBLEMS, progress=False, profile="ci")
    table = tables["synthetic"]
    assert table.settings["backend"] == "vllm" and [s.name for s in table.scores] == ["base", "sft"]
    for s in table.scores:
        assert s.problems == PROBLEMS and 0 < s.mean_completion_tokens <= MAX_NEW_TOKENS and s.seconds > 0
        ids = vllm_greedy[s.name][0]
        expected = [tokenizer.decode(row, skip_special_tokens=True) for row in ids][:len(s.samples)]
        assert s.samples and [x["completion"] for x in s.samples] == expected, s.name
        lengths = [len(row) - (row[-1] == tokenizer.eos_token_id) for row in ids]  # the end-of-turn token not counted
        assert s.mean_completion_tokens == pytest.approx(sum(lengths) / len(lengths)), s.name
    saved = json.loads((trained.eval / "results.json").read_text())["datasets"]["synthetic"]
    assert saved["settings"]["backend"] == "vllm" and [s["name"] for s in saved["scores"]] == ["base", "sft"]
    assert "| sft |" in (trained.eval / "results.md").read_text()


# ---------------------------------------------------------------------------------------------
# GRPO rollouts through vLLM (TRL colocate mode), in a child process
# ---------------------------------------------------------------------------------------------

GRPO_STEPS = 2


def test_grpo_colocate_rollouts(tmp_path):
    """GRPO for a few steps with use_vllm=True, vllm_mode="colocate": TRL 1.15 starts vLLM inside the
    training process (``distributed_executor_backend="external_launcher"``), pushes the policy's
    merged LoRA weights to it before each step's rollouts, and samples them there.

    The engine TRL builds has no LoRA (it receives merged weights), so vLLM's CPU platform compiles
    the model with TorchInductor (``DYNAMO_TRACE_ONCE``), which took 141 s here at start-up.
    ``VLLM_CPU_CI_ENV=1`` is vLLM's own switch for its CPU CI: Dynamo tracing with the eager backend and
    no warm-up, the same model code without the compile time. TRL passes no ``dtype``, so vLLM's
    ``"auto"`` runs the float32 checkpoint in bfloat16 while the policy trains in float32; TRL's
    importance-sampling correction (on by default) accounts for the sampler/trainer gap, logged as
    ``sampling/sampling_logp_difference``.
    """
    out = tmp_path / "grpo"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "VLLM_CPU_CI_ENV": os.environ.get("VLLM_CPU_CI_ENV", "1")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "grpo", str(out)], env=env, capture_output=True, text=True,
                          timeout=480)
    seconds = time.perf_counter() - start
    result_file = out / "result.json"
    assert proc.returncode == 0 and result_file.exists(), (
        f"GRPO colocate child failed (exit {proc.returncode}) after {seconds:.0f} s:\n" + proc.stdout[-4000:]
        + "\n" + proc.stderr[-6000:])
    result = json.loads(result_file.read_text())
    print(f"\nGRPO colocate: {GRPO_STEPS} steps, child process {seconds:.0f} s: {json.dumps(result)}")
    assert result["used_vllm"] and result["vllm_mode"] == "colocate" and result["engine"] == "vllm.entrypoints.llm.LLM"
    assert result["weights_kept"], "helpers.train.cpu_compat.keep_vllm_cpu_weights was not applied"
    assert result["steps"] == GRPO_STEPS
    assert len(result["rewards"]) == GRPO_STEPS and all(math.isfinite(r) for r in result["rewards"])
    assert any(std and std > 0 for std in result["reward_std"]), "no group had a reward spread: nothing to learn"
    assert result["lora_b_delta"] > 0, "the LoRA weights did not move (a fresh LoRA's B starts at 0)"
    assert all(d is not None and d < 0.5 for d in result["sampling_logp_difference"]), result
    assert Path(result["adapter"]).joinpath("adapter_model.safetensors").exists()


DIGIT_COUNT = """
from helpers.rewards.completions import completion_text
from helpers.rewards.reward_set import reward_functions


def digit_count_reward(completions, **kwargs):
    \"\"\"The number of digits written, /10: a spread at any skill level (the untrained model never writes the
    answer format in 24 tokens, so the suite's rewards are all 0 there and the LoRA weights could not move).\"\"\"
    return [sum(ch.isdigit() for ch in completion_text(c)) / 10 for c in completions]


funcs, weights = reward_functions()
reward_funcs = [*funcs, digit_count_reward]
reward_weights = [*weights, 1.0]
"""


def _grpo_child(out: str) -> None:
    """Notebook 07's own cells for a few steps with rollouts from TRL's colocated vLLM engine (the plain-TRL path:
    ``GRPO_PLAIN_TRL=1``, ``GRPO_ROLLOUT_BACKEND=vllm``); write result.json."""
    import torch
    from stages import run_stage
    from vllm.model_executor.layers import utils as vllm_layer_utils

    os.environ.update(GRPO_PLAIN_TRL="1", GRPO_ROLLOUT_BACKEND="vllm", OMP_NUM_THREADS="2")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "rewards.py").write_text(DIGIT_COUNT)  # notebook 05's hand-off, with the toy reward added
    ns = run_stage(7, out, from_sft=False, grpo_steps=GRPO_STEPS, num_generations=4, max_completion_length=24,
                   save_steps=100)
    trainer = ns["trainer"]
    rows = [r for r in trainer.state.log_history if "reward" in r]
    llm = trainer.vllm_generation.llm
    payload = {
        "used_vllm": bool(trainer.use_vllm), "vllm_mode": trainer.vllm_mode,
        "weights_kept": getattr(vllm_layer_utils.dispatch_cpu_unquantized_gemm, "_keeps_weights", False),
        "engine": type(llm).__module__ + "." + type(llm).__name__,
        "engine_dtype": str(llm.llm_engine.model_config.dtype),
        "steps": trainer.state.global_step,
        "lora_b_delta": max(p.detach().abs().max().item() for n, p in ns["model"].named_parameters() if "lora_B" in n),
        "rewards": [r["reward"] for r in rows], "reward_std": [r.get("reward_std") for r in rows],
        "grad_norm": [r.get("grad_norm") for r in rows],
        "sampling_logp_difference": [r.get("sampling/sampling_logp_difference/mean") for r in rows],
        "importance_sampling_ratio": [r.get("sampling/importance_sampling_ratio/mean") for r in rows],
        "step_time": [r.get("step_time") for r in rows], "adapter": str(ns["adapter"]),
    }
    Path(out, "result.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["grpo"]:
        _grpo_child(sys.argv[2])
