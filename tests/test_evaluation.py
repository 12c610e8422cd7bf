"""helpers.evaluate.evaluation: metrics on hand-made completions (exact expected numbers), pass@k, the vLLM
arguments, the results files, and (slow) base vs adapter on the real model."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from helpers.evaluate.evaluation import EvalTable, evaluate_sets, find_adapters
from helpers.evaluate.held_out import held_out_sets
from helpers.evaluate.results import write_results
from helpers.evaluate.scoring import pass_at_k, score_completions
from helpers.generate.backends import uses_vllm
from helpers.generate.completions import generate_completions
from helpers.generate.vllm_requests import (
    vllm_engine_kwargs,
    vllm_lora_id,
    vllm_lora_kwargs,
    vllm_sampling_kwargs,
)

# Eight hand-made completions and what each should score:        strict lenient format
CASES = [
    ("<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>7</answer>", "7", 10, False),          # 1 1 1
    ("<reasoning>\nprice\ntimes 2\n</reasoning>\n<answer>$1,234.00</answer>", "1234", 12, False),  # 1 1 1 normalised
    ("The answer is 12.", "12", 5, False),                                                 # 0 1 0 no tags
    ("<reasoning>\n6 + 6 = 12\n</reasoning>\n<answer>12</answer> or 13", "12", 20, False),  # 1 0 0 text after
    ("<answer>5</answer>", "4", 8, False),                                                 # 0 0 0 wrong, no reasoning
    ("", "3", 0, False),                                                                   # 0 0 0 empty
    ("<reasoning>\nstep 1\nstep 2\n</reasoning>\n<answer>3/4</answer>", "0.75", 15, False),  # 1 1 1 3/4 = 0.75
    ("<reasoning>\nTom has 3 apples and buys 4, so 7", "7", 4, True),                     # 0 1 0 cut off
]


def test_metrics_on_hand_made_completions():
    completions, answers, lengths, truncated = map(list, zip(*CASES, strict=True))
    s = score_completions(completions, answers, lengths=lengths, truncated=truncated, name="hand")
    assert (s.strict_correct, s.lenient_correct, s.formatted) == (4, 5, 3)
    assert s.strict_accuracy == 0.5
    assert s.lenient_accuracy == 0.625
    assert s.format_compliance == 0.375
    assert s.mean_completion_tokens == 74 / 8 == 9.25
    assert s.truncated == 0.125
    assert s.pass_at_k == {"pass@1": 0.5}
    assert (s.problems, s.samples_per_problem, s.name) == (8, 1, "hand")
    assert [(x["strict"], x["lenient"], x["formatted"]) for x in s.samples] == [(True, True, True)] * 2 + [(False, True, False)]


def test_prefilled_prompts_score_the_same():
    """A prompt that ends with the opening tag: the completion lacks it, and scoring puts it back."""
    prefix = "<reasoning>\n"
    opened = [(c, a) for c, a, *_ in CASES if c.startswith(prefix)]  # cases 1, 2, 4, 7, 8
    completions, answers = [c for c, _ in opened], [a for _, a in opened]
    plain = score_completions(completions, answers)
    prefilled = score_completions([c[len(prefix):] for c in completions], answers, prefilled=True)
    assert (prefilled.strict_correct, prefilled.lenient_correct, prefilled.formatted) == (4, 4, 3)
    assert (plain.strict_correct, plain.lenient_correct, plain.formatted) == (4, 4, 3)
    unrestored = score_completions([c[len(prefix):] for c in completions], answers)  # forgetting prefilled=True
    assert unrestored.formatted == 0


def test_chat_message_completions_are_read():
    s = score_completions([[{"role": "assistant", "content": "<reasoning>\nx\n</reasoning>\n<answer>2</answer>"}]], ["2"])
    assert (s.strict_accuracy, s.format_compliance) == (1.0, 1.0)


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 2) == 0.5
    assert pass_at_k(4, 2, 2) == 1 - 1 / 6
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0 and pass_at_k(5, 3, 3) == 1.0
    with pytest.raises(ValueError, match="fix:"):
        pass_at_k(4, 1, 5)


def test_pass_at_k_over_problems():
    ok, bad = "<reasoning>\nr\n</reasoning>\n<answer>7</answer>", "<answer>8</answer>"
    s = score_completions([[ok, bad, bad, bad], [bad, bad, bad, bad], [ok, ok, bad, bad]], ["7", "7", "7"], ks=(1, 2, 4))
    assert s.samples_per_problem == 4 and s.strict_correct == 3
    assert s.strict_accuracy == 0.25  # 3 of 12 samples
    assert s.pass_at_k["pass@1"] == pytest.approx((0.25 + 0 + 0.5) / 3)
    assert s.pass_at_k["pass@2"] == pytest.approx((0.5 + 0 + 5 / 6) / 3)
    assert s.pass_at_k["pass@4"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same number"):
        score_completions([[ok, bad], [ok]], ["7", "7"])


def test_sampling_settings_are_checked():
    with pytest.raises(ValueError, match="temperature"):
        vllm_sampling_kwargs(max_new_tokens=8, samples_per_problem=4)  # greedy x4 = 4 copies
    with pytest.raises(ValueError, match="temperature"):
        vllm_sampling_kwargs(max_new_tokens=8, temperature=-1)


def test_vllm_arguments():
    assert vllm_sampling_kwargs(max_new_tokens=64, temperature=0.8, samples_per_problem=4, seed=3) == {
        "n": 4, "temperature": 0.8, "top_p": 1.0, "top_k": -1, "max_tokens": 64, "seed": 3}
    assert vllm_lora_kwargs("sft", "/r/sft/adapter", 1) == {
        "lora_name": "sft", "lora_int_id": 1, "lora_path": "/r/sft/adapter"}
    with pytest.raises(ValueError, match="start at 1"):
        vllm_lora_kwargs("sft", "/r", 0)
    assert uses_vllm(object()) is False


def test_vllm_engine_arguments():
    """LoRA slots as small as the adapter's rank allows (vLLM's CPU LoRA ops scale with max_lora_rank)."""
    assert vllm_engine_kwargs("/m") == {"model": "/m", "dtype": "float32", "max_model_len": 1024, "seed": 0}
    lora = vllm_engine_kwargs("/m", lora_rank=16, max_loras=2)
    assert (lora["enable_lora"], lora["max_lora_rank"], lora["max_loras"]) == (True, 16, 2)
    assert [vllm_engine_kwargs("/m", lora_rank=r)["max_lora_rank"] for r in (1, 2, 9, 64, 65, 300)] == [
        1, 8, 16, 64, 128, 320]
    for bad in (0, 513):
        with pytest.raises(ValueError, match="fix: train the adapter with a rank"):
            vllm_engine_kwargs("/m", lora_rank=bad)


def _table(name="synthetic", strict=(1, 3)):
    scores = []
    for model, correct in zip(("base", "grpo"), strict, strict=True):
        completions = ["<reasoning>\nr\n</reasoning>\n<answer>1</answer>"] * correct + ["no"] * (4 - correct)
        scores.append(score_completions(completions, ["1"] * 4, name=model, lengths=[5] * 4, truncated=[False] * 4))
    return EvalTable(name, f"{name} problems", {"problems": 4, "max_new_tokens": 16, "temperature": 0.0,
                                                         "samples_per_problem": 1, "backend": "transformers"}, scores)


def test_results_files(tmp_path):
    paths = write_results(_table(), tmp_path / "eval")
    write_results(_table("gsm8k", (0, 2)), tmp_path / "eval")
    data = json.loads(paths["json"].read_text())["datasets"]
    assert list(data) == ["synthetic", "gsm8k"]
    assert [s["strict_accuracy"] for s in data["synthetic"]["scores"]] == [0.25, 0.75]
    md = paths["markdown"].read_text()
    assert "| grpo | 75.0% (3/4) | 75.0% (3/4) | 75.0% (3/4) | 5.0 | 0.0% |" in md
    assert "### gsm8k" in md and "| base | 0.0% (0/4)" in md
    # base solves problem 1, grpo problems 1-3: the change is read on the same problems, with its noise
    assert data["synthetic"]["scores"][1]["strict_per_problem"] == [1, 1, 1, 0]
    assert "- grpo vs base: +50.0 points (2 problems gained, 0 lost of 4; standard error 28.9)" in md
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["accuracy.png", "results.json", "results.md"]
    write_results(_table(strict=(2, 4)), tmp_path / "eval")  # a rerun replaces its own table only
    data = json.loads(paths["json"].read_text())["datasets"]
    assert [s["strict_accuracy"] for s in data["synthetic"]["scores"]] == [0.5, 1.0] and "gsm8k" in data


def test_paired_change_reads_gains_and_losses_on_the_same_problems():
    from helpers.evaluate.scoring import paired_change

    before = {"name": "sft", "strict_per_problem": [1, 1, 0, 0, 1, 0], "samples_per_problem": 1}
    after = {"name": "grpo", "strict_per_problem": [1, 0, 1, 1, 1, 0], "samples_per_problem": 1}
    change = paired_change(before, after)
    assert (change["points"], change["gained"], change["lost"], change["problems"]) == (16.7, 2, 1, 6)
    assert change["standard_error"] == 30.7  # differences [0, -1, 1, 1, 0, 0]: sd 0.753 / sqrt(6)
    # with 4 samples per problem the per-problem fraction counts: 2/4 -> 4/4 is half a problem gained
    assert paired_change({"strict_per_problem": [2], "samples_per_problem": 4},
                         {"strict_per_problem": [4], "samples_per_problem": 4})["points"] == 50.0
    assert paired_change({"name": "old run"}, after) is None  # results written before per-problem scores
    assert paired_change(before, {**after, "strict_per_problem": [1, 0]}) is None  # not the same problems
    assert paired_change(after, after)["points"] == 0.0


def test_table_markdown_shows_counts():
    md = _table().to_markdown()
    assert "strict accuracy" in md and "| base | 25.0% (1/4)" in md


def test_find_adapters(tmp_path):
    from helpers.files.runs import RunLayout

    layout = RunLayout(tmp_path)
    assert find_adapters(layout) == {}
    layout.grpo_adapter.mkdir(parents=True)
    assert find_adapters(tmp_path) == {"grpo": layout.grpo_adapter}


def test_held_out_sets_offline(gsm8k_dir):
    sets = held_out_sets(3, gsm8k_path=gsm8k_dir, svamp_n=0, profile="ci")  # cpu skips GSM8K: eval_gsm8k_problems=0
    assert list(sets) == ["synthetic", "paraphrased", "gsm8k"] and [len(s) for s in sets.values()] == [3, 1, 3]
    assert sets["gsm8k"][0]["answer"] == "18"  # Janet's ducks
    assert Fraction(sets["synthetic"][0]["answer"]) >= 0
    assert held_out_sets(2, gsm8k=False, paraphrased=0, svamp_n=0).keys() == {"synthetic"}
    assert len(held_out_sets(2, gsm8k=False, paraphrased=5, svamp_n=0)["paraphrased"]) == 5


def _svamp_file(folder, n=40):
    """An SVAMP.json of ``n`` made-up records in upstream's format."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"ID": f"chal-{i}", "Body": f"Ann had {i} stickers. She got {i + 2} more.", "Question": "How many now?",
                "Equation": f"( {i}.0 + {i + 2}.0 )", "Answer": float(2 * i + 2), "Type": "Addition"} for i in range(n)]
    (folder / "SVAMP.json").write_text(json.dumps(records))
    return folder / "SVAMP.json"


def test_held_out_sets_with_svamp_per_profile(tmp_path):
    from helpers.runtime.profiles import PROFILE_TABLE

    svamp_slice = {name: row.eval_svamp_problems for name, row in PROFILE_TABLE.items()}
    file = _svamp_file(tmp_path / "svamp")
    ci = held_out_sets(8, gsm8k=False, svamp_path=file, profile="ci")
    assert list(ci) == ["synthetic", "paraphrased", "svamp"] and len(ci["svamp"]) == svamp_slice["ci"] == 4
    assert ci["svamp"][0]["source"] == "svamp" and ci["svamp"][0]["answer"] == str(2 * int(ci["svamp"][0]["id"][5:]) + 2)
    assert len(held_out_sets(64, gsm8k=False, paraphrased=0, svamp_path=file, profile="cpu")["svamp"]) == min(
        40, svamp_slice["cpu"])
    assert len(held_out_sets(30, gsm8k=False, paraphrased=0, svamp_path=file, profile="gpu")["svamp"]) == 30  # n
    assert len(held_out_sets(8, gsm8k=False, paraphrased=0, svamp_path=file, svamp_n=7, profile="ci")["svamp"]) == 7
    without = held_out_sets(8, gsm8k=False, svamp_n=0, profile="ci")
    assert list(without) == ["synthetic", "paraphrased"]
    for name in without:  # adding SVAMP changes nothing of the other sets
        assert ci[name].to_list() == without[name].to_list()


def test_held_out_sets_skip_svamp_when_it_cannot_be_had(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GRPO_NOTEBOOKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GRPO_SVAMP_DIR", raising=False)
    monkeypatch.setattr("helpers.data.svamp.SVAMP_URL", "http://127.0.0.1:9/SVAMP.json")  # nothing listens there
    sets = held_out_sets(4, gsm8k=False, profile="ci")
    assert list(sets) == ["synthetic", "paraphrased"]
    assert "SVAMP skipped: SVAMP could not be downloaded from http://127.0.0.1:9/SVAMP.json" in caplog.text
    assert "fix: put SVAMP.json" in caplog.text and not (tmp_path / "cache").exists()


def test_new_sets_are_generated_in_batches_of_their_own(monkeypatch, tmp_path, tokenizer):
    """Greedy outputs can depend on a batch's padding: the cpu default's synthetic and paraphrased problems must go
    through ``generate`` exactly as without SVAMP (the same prompts in the same call, so the same batches), SVAMP's
    in calls of their own after them; each set is scored on its own completions."""
    from helpers.data.chat_template import render_prompt
    from helpers.generate.sampling import Generation

    calls = []

    def fake_generate(model, tokenizer, prompts, *, on_batch=None, batch_size=16, **kwargs):
        calls.append(list(prompts))
        for begin in range(0, len(prompts), batch_size):
            on_batch(min(begin + batch_size, len(prompts)))
        solved = [re.search(r"Ann had (\d+) stickers", p) for p in prompts]  # SVAMP's even problems right
        answers = [2 * int(m[1]) + 2 if m and int(m[1]) % 2 == 0 else -1 for m in solved]
        texts = [[f"<reasoning>\nr\n</reasoning>\n<answer>{a}</answer>"] for a in answers]
        return Generation(texts, [[3]] * len(prompts), [[False]] * len(prompts), "transformers", 1.0)

    monkeypatch.setattr("helpers.evaluate.evaluation.generate_completions", fake_generate)
    sets = held_out_sets(64, gsm8k=False, svamp_path=_svamp_file(tmp_path / "svamp"), profile="cpu")
    assert [len(s) for s in sets.values()] == [64, 32, min(40, 32)]
    kwargs = dict(model=object(), tokenizer=tokenizer, adapters={}, problems=64, write=True, progress=False,
                  profile="cpu", batch_size=32)
    tables = evaluate_sets({k: sets[k] for k in ("synthetic", "paraphrased")}, tmp_path / "old", **kwargs)
    before = calls[:]
    calls.clear()
    new = evaluate_sets(sets, tmp_path / "new", **kwargs)
    assert len(before) == 1 and len(calls) == 2 and calls[0] == before[0]  # the old sets' one call, unchanged
    assert calls[1] == [render_prompt(tokenizer, p) for p in sets["svamp"]["prompt"]]
    for name in ("synthetic", "paraphrased"):
        assert new[name].scores[0].as_dict() | {"seconds": 0} == tables[name].scores[0].as_dict() | {"seconds": 0}
    expected = [int(int(i[5:]) % 2 == 0) for i in sets["svamp"]["id"]]
    assert new["svamp"].scores[0].strict_per_problem == expected and 0 < sum(expected) < len(expected)
    progress = [json.loads(line) for line in (tmp_path / "new" / "eval" / "progress.jsonl").read_text().splitlines()]
    assert [r["done"] for r in progress] == [0, 32, 64, 96, 128] and {r["total"] for r in progress} == {128}


# ---------------------------------------------------------------------------------------------
# The real model (slow)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_sets_base_vs_adapter(tmp_path):
    import torch
    from peft import PeftModel

    from helpers.files.runs import RunLayout
    from helpers.model.load import load_model
    from helpers.model.lora import add_lora
    from helpers.save.adapter import save_lora

    model, tokenizer = load_model(profile="ci")
    peft_model, _ = add_lora(model, rank=8, gradient_checkpointing=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    layout = RunLayout(tmp_path / "run")
    save_lora(peft_model, tokenizer, layout.sft_adapter)
    base = peft_model.unload()  # the plain base model again

    from helpers.data.synthetic import synthetic_dataset

    sets = {"synthetic": synthetic_dataset(2, split="test"), "other": synthetic_dataset(1, split="test", seed=5)}
    tables = evaluate_sets(sets, layout.root, model=base, tokenizer=tokenizer, max_new_tokens=8,
                                      progress=False, profile="ci")
    assert list(tables) == ["synthetic", "other"]
    table = tables["synthetic"]
    assert [s.name for s in table.scores] == ["base", "sft"] and tables["other"].scores[0].problems == 1
    for s in table.scores:
        assert s.problems == 2
        assert all(0 <= x <= 1 for x in (s.strict_accuracy, s.lenient_accuracy, s.format_compliance))
        assert 0 < s.mean_completion_tokens <= 8 and len(s.samples) == 2
    assert table.scores[0].samples[0]["question"] == sets["synthetic"][0]["question"]
    assert tables["other"].scores[0].samples[0]["question"] == sets["other"][0]["question"]
    texts = [[x["completion"] for x in s.samples] for s in table.scores]
    assert texts[0] != texts[1], "the adapter was not applied: base and sft wrote the same"
    assert not isinstance(base, PeftModel) and not any("lora_" in n for n, _ in base.named_parameters())
    files = sorted(p.name for p in layout.eval.iterdir())
    assert files == ["accuracy.png", "progress.jsonl", "results.json", "results.md"]
    progress = [json.loads(line) for line in (layout.eval / "progress.jsonl").read_text().splitlines()]
    assert [(r["model"], r["index"], r["done"], r["total"]) for r in progress] == [  # "other": batches of its own
        ("base", 1, 0, 3), ("base", 1, 2, 3), ("base", 1, 3, 3), ("sft", 2, 0, 3), ("sft", 2, 2, 3), ("sft", 2, 3, 3)]
    assert list(json.loads((layout.eval / "results.json").read_text())["datasets"]) == ["synthetic", "other"]
    # the real model: the synthetic problems' completions are the same with or without another set beside them
    alone = evaluate_sets({"synthetic": sets["synthetic"]}, layout.root, model=base, tokenizer=tokenizer,
                          max_new_tokens=8, progress=False, profile="ci", write=False)["synthetic"]
    for with_other, by_itself in zip(table.scores, alone.scores, strict=True):
        assert [x["completion"] for x in with_other.samples] == [x["completion"] for x in by_itself.samples]
        assert with_other.strict_per_problem == by_itself.strict_per_problem

    sampled = generate_completions(base, tokenizer, ["Say hi.", "Count to 3."], max_new_tokens=4,
                                              temperature=1.0, samples_per_problem=2, progress=False)
    assert [len(t) for t in sampled.texts] == [2, 2] and all(0 < n <= 4 for row in sampled.lengths for n in row)


# ---------------------------------------------------------------------------------------------
# The vLLM path against a stand-in engine (the real one: tests/test_vllm_cpu.py, .ci/vllm-stage)
# ---------------------------------------------------------------------------------------------


class _FakeVLLM:
    """A stand-in ``vllm`` package: records what helpers sends and answers like ``vllm.LLM.generate``."""

    def __init__(self, monkeypatch):
        import importlib.machinery
        import sys
        import types

        self.calls = []
        fake = self

        def module(name):
            m = types.ModuleType(name)
            m.__spec__ = importlib.machinery.ModuleSpec(name, None)
            monkeypatch.setitem(sys.modules, name, m)
            return m

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

        class LoRARequest:
            def __init__(self, lora_name, lora_int_id, lora_path):
                self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path

        class LLM:
            def generate(self, prompts, params, *, lora_request=None, use_tqdm=True):
                fake.calls.append({"prompts": prompts, "params": params.kwargs, "lora": lora_request})
                tag = lora_request.lora_name if lora_request else "base"
                outs = []
                for i, _ in enumerate(prompts):
                    ended = types.SimpleNamespace(text=f"{tag} {i}", token_ids=[5, 6, 2], finish_reason="stop")
                    cut = types.SimpleNamespace(text=f"{tag} {i} ...", token_ids=[5, 6, 7, 8], finish_reason="length")
                    outs.append(types.SimpleNamespace(outputs=[ended if i % 2 == 0 else cut]))
                return outs

        LLM.__module__ = "vllm.entrypoints.llm"
        vllm = module("vllm")
        vllm.SamplingParams, vllm.LLM = SamplingParams, LLM
        module("vllm.lora")
        module("vllm.lora.request").LoRARequest = LoRARequest
        self.engine = LLM()


def test_vllm_path_with_a_stand_in_engine(monkeypatch, tmp_path, tokenizer):
    """evaluate_sets on a vLLM engine: token-id prompts as transformers tokenizes them, one LoRA request per
    adapter, lengths without the end-of-turn token, the results table written with backend vllm."""
    from helpers.data.synthetic import synthetic_dataset
    from helpers.files.runs import RunLayout

    fake = _FakeVLLM(monkeypatch)
    assert uses_vllm(fake.engine)
    layout = RunLayout(tmp_path / "run")
    for folder in (layout.sft_adapter, layout.grpo_adapter):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": "m"}))
        (folder / "adapter_model.safetensors").write_bytes(b"x")
    monkeypatch.setattr("helpers.evaluate.evaluation.check_adapter_dir", lambda path, **kwargs: {})
    sets = {"synthetic": synthetic_dataset(3, split="test")}
    tables = evaluate_sets(sets, layout.root, model=fake.engine, tokenizer=tokenizer, max_new_tokens=4,
                                      progress=False, profile="ci")
    table = tables["synthetic"]
    assert table.settings["backend"] == "vllm" and [s.name for s in table.scores] == ["base", "sft", "grpo"]
    assert [c["lora"] and (c["lora"].lora_name, c["lora"].lora_path) for c in fake.calls] == [
        None, ("sft", str(layout.sft_adapter)), ("grpo", str(layout.grpo_adapter))]
    ids = [c["lora"].lora_int_id for c in fake.calls[1:]]
    assert len(set(ids)) == 2 and min(ids) >= 1
    assert fake.calls[0]["params"] == vllm_sampling_kwargs(max_new_tokens=4)
    from helpers.data.chat_template import render_prompt

    rendered = render_prompt(tokenizer, sets["synthetic"][0]["prompt"])
    assert fake.calls[0]["prompts"][0] == {"prompt_token_ids": tokenizer(rendered, add_special_tokens=False)["input_ids"]}
    sft = table.by_name("sft")
    assert sft.samples[0]["completion"] == "sft 0" and sft.samples[1]["completion"] == "sft 1 ..."
    assert sft.mean_completion_tokens == (2 + 4 + 2) / 3  # the end-of-turn token (id 2) is not counted
    assert sft.truncated == 1 / 3
    assert json.loads((layout.eval / "results.json").read_text())["datasets"]["synthetic"]["settings"]["backend"] == "vllm"

    with pytest.raises(ValueError, match="lora=.*vLLM adapter"):
        generate_completions(object(), tokenizer, ["x"], lora=("sft", "/r", 1))


def test_vllm_lora_id_follows_the_adapter_on_disk(tmp_path):
    """vLLM reuses a cached adapter for an id it has seen: a retrained adapter must get a new id."""
    import os

    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"1234")
    first = vllm_lora_id(a)
    assert first >= 1 and vllm_lora_id(a) == first and vllm_lora_id(str(a) + "/") == first
    assert vllm_lora_id(b) != first
    (a / "adapter_model.safetensors").write_bytes(b"123456")  # retrained in place
    os.utime(a / "adapter_model.safetensors", ns=(1, 1))
    assert vllm_lora_id(a) not in (first, vllm_lora_id(b))
