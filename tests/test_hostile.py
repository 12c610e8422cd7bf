"""Hostile input (issue 16): no hang, no silent wrong result, one line with cause and fix.

Reward functions and answer parsers run in linear time (timed at two sizes: the ratio, not an absolute
time); numbers parse as documented; bad rows and bad gold answers are dropped and counted.
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import pytest
from errors import one_line_fix
from hostile_inputs import BUILDERS, TooSlow, per_call, per_call_pair, targets
from model_folders import saved_sft_adapter, stand_in_embedded_cache, tiny_causal_lm
from stages import run_stage

from helpers.data.answers import last_number, normalize_answer, parse_number

SMALL, LARGE = 2048, 8192  # 4x the input may take at most MAX_RATIO x the time (linear: ~4x)
MAX_RATIO = 8.0


def _ratio(fn, small, large, **kwargs) -> float:
    t_small, t_large = per_call_pair(fn, small, large, **kwargs)
    return t_large / t_small


@pytest.fixture(scope="module")
def functions():
    return targets()


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_reward_and_parser_time_is_linear(builder, functions):
    small, large = BUILDERS[builder](SMALL), BUILDERS[builder](LARGE)
    assert (len(small), len(large)) == (SMALL, LARGE)
    slow = {}
    for name, fn in functions.items():
        try:
            ratio = _ratio(fn, small, large, budget=0.003, repeats=3)
            for budget in (0.02, 0.05):  # longer looks before calling it super-linear (the machine may be busy)
                if ratio > MAX_RATIO:
                    ratio = min(ratio, _ratio(fn, small, large, budget=budget, repeats=5))
        except TooSlow as exc:
            slow[name] = str(exc)
            continue
        if ratio > MAX_RATIO:
            slow[name] = f"{ratio:.1f}x the time for 4x the input"
    assert not slow, f"super-linear on {builder!r}: {slow}"


def test_the_cubic_frac_pattern_is_gone():
    """``\\frac{`` + 8,000 spaces took minutes (cubic); now well under a second in every reward."""
    text = "\\frac{" + " " * 8000
    assert parse_number(text) is None
    from helpers.rewards.reward_set import reward_functions

    for f in reward_functions(combined=True).funcs:
        def call(t, f=f):
            return f(completions=[f"<answer>{t}</answer>"], answer=["1"])

        assert per_call(call, text, limit=2.0, budget=0.001, repeats=1) < 0.5


@pytest.mark.parametrize("text, value", [
    ("7e9", 7 * 10**9), ("7E9", 7 * 10**9), ("2.5e-3", Fraction(1, 400)), ("-3e2", -300), ("1,000e3", 10**6),
    (".5e1", 5), ("1e400", 10**400), ("x = 7e9", 7 * 10**9), ("\\boxed{7e9}", 7 * 10**9),
    (r"\frac{ 3 }{ 4 }", Fraction(3, 4)), ("\\dfrac {1}{2}", Fraction(1, 2)),
])
def test_exponents_are_read_to_their_value(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["0x7", "0X1F", "0b101", "0o17", "1e99999", "1e-5000", "5e123456789012",
                                  "0x7 apples", "the answer is 0xff"])
def test_hex_and_unreadable_exponents_are_not_numbers(text):
    """Never their leading digits: ``0x7`` is not 0, ``1e99999`` is not 1."""
    assert parse_number(text) is None and normalize_answer(text) is None and last_number(text) is None


def test_exponent_answers_score_their_value():
    from helpers.rewards.functions import closeness_reward, correctness_reward, lenient_accuracy

    done = "<reasoning>r</reasoning><answer>{}</answer>"
    assert correctness_reward([done.format("7e9"), done.format("7")], answer=["7000000000", "7000000000"]) == [1.0, 0.0]
    assert correctness_reward([done.format("0x7")], answer=["7"]) == [0.0]
    assert closeness_reward([done.format("7e9")], answer=["7"]) == [0.0]
    assert lenient_accuracy(["so 0x7"], answer=["0"]) == [0.0]


def test_gsm8k_gold_that_cannot_be_read_exactly_is_dropped_and_counted(tmp_path, caplog):
    from helpers.data.gsm8k import extract_gsm8k_answer, gsm8k_rows, load_gsm8k

    assert extract_gsm8k_answer("#### 1e400") == "1" + "0" * 400  # read exactly, not as "1"
    assert extract_gsm8k_answer("#### 0x7") is None and extract_gsm8k_answer("#### 1e99999") is None
    records = [{"question": "q1", "answer": "#### 0x7"}, {"question": "q2", "answer": "#### 1e99999"},
               {"question": "q3", "answer": "#### 12"}, {"question": "q4", "answer": "#### 1e3"}]
    rows, dropped = gsm8k_rows(records)
    assert [r["answer"] for r in rows] == ["12", "1000"] and dropped == 2
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    with caplog.at_level(logging.WARNING):
        ds = load_gsm8k("train", tmp_path)
    assert len(ds) == 2 and "2 dropped" in ds.info.description and "dropped 2 rows" in caplog.text




# ---------------------------------------------------------------------------------------------
# Data and evaluation: refuse what would give an empty or meaningless result
# ---------------------------------------------------------------------------------------------


def test_load_problems_refuses_a_gsm8k_file_with_no_usable_row(tmp_path):
    from helpers.data.problems import load_problems
    from helpers.data.rows import NoUsableRowsError

    bad = tmp_path / "train.jsonl"
    bad.write_text("\n".join([json.dumps({"question": "q", "answer": "#### 0x7"}), "{not json",
                              json.dumps({"question": "r", "answer": "no marker"})]) + "\n")
    for path in (tmp_path, bad):
        with pytest.raises(NoUsableRowsError) as err:
            load_problems("train", path=path)
        one_line_fix(err, "no usable row", "3 dropped", str(bad))


def test_evaluate_sets_refuses_zero_problems_before_loading_a_model(tmp_path):
    from helpers.data.synthetic import synthetic_dataset
    from helpers.evaluate.evaluation import evaluate_sets

    no_model = object()  # never touched: the refusal comes first
    with pytest.raises(ValueError) as err:
        evaluate_sets({"synthetic": []}, tmp_path, model=no_model, tokenizer=no_model, adapters={}, profile="ci")
    one_line_fix(err, "0 problems")
    with pytest.raises(ValueError) as err:
        evaluate_sets({"synthetic": synthetic_dataset(0)}, tmp_path, model=no_model, tokenizer=no_model, adapters={},
                      profile="ci")
    one_line_fix(err, "0 problems")
    with pytest.raises(ValueError) as err:
        evaluate_sets({"synthetic": synthetic_dataset(2)}, tmp_path, model=no_model, tokenizer=no_model, adapters={},
                      problems=0, profile="ci")
    one_line_fix(err, "problems=0")
    with pytest.raises(ValueError) as err:
        evaluate_sets({}, tmp_path, model=no_model, tokenizer=no_model, adapters={}, profile="ci")
    one_line_fix(err, "no held-out set")
    with pytest.raises(ValueError) as err:
        evaluate_sets({"s": [{"prompt": [{"role": "user", "content": "1+1?"}]}]}, tmp_path, model=no_model,
                      tokenizer=no_model, adapters={}, profile="ci")
    one_line_fix(err, "['answer']")
    assert not (tmp_path / "eval").exists()


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def test_unknown_profile_names_the_fix(monkeypatch):
    from helpers.runtime.profiles import ProfileError, pick_profile, use_profile

    monkeypatch.setenv("GRPO_PROFILE", "tpu")
    with pytest.raises(ProfileError) as err:
        pick_profile()
    one_line_fix(err, "GRPO_PROFILE='tpu'", "colab-t4, gpu, cpu, ci")
    with pytest.raises(ProfileError) as err:
        use_profile("huge")
    one_line_fix(err, "'huge'")
    monkeypatch.setenv("GRPO_PROFILE", " CI ")
    assert pick_profile() == "ci"


# ---------------------------------------------------------------------------------------------
# Loading: safetensors only, distinct errors for distinct mistakes
# ---------------------------------------------------------------------------------------------


def tiny_model(vocab: int = 49152, hidden: int = 16):
    """A random one-layer Llama with the embedded tokenizer's vocabulary (loads in milliseconds)."""
    return tiny_causal_lm(hidden, vocab=vocab, layers=1)


def _model_folder(folder, embedded_path, *, pickle: bool):
    """A tiny model folder with the embedded tokenizer; weights as safetensors or only as a pickle."""
    import shutil

    import torch

    model = tiny_model()
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (embedded_path / name).exists():
            shutil.copy(embedded_path / name, folder / name)
    if pickle:
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return model


class _Payload:
    """Unpickling this creates a marker file: proof that a pickle ran code."""

    marker = None

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_pickle_only_folder_is_refused_and_the_opt_in_named(tmp_path, embedded_path, monkeypatch):
    import pickle

    import torch

    from helpers.model.checks import ModelLoadError
    from helpers.model.load import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "pickled"
    saved = _model_folder(folder, embedded_path, pickle=True)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(folder), profile="cpu")
    one_line_fix(err, "pytorch_model.bin", "allow_pickle=True", "safetensors")
    model, _ = load_model(str(folder), profile="cpu", allow_pickle=True)  # the explicit opt-in loads it
    assert torch.equal(model.model.embed_tokens.weight, saved.model.embed_tokens.weight)

    evil = tmp_path / "evil"  # a malicious pickle is refused before anything unpickles it
    _model_folder(evil, embedded_path, pickle=True)
    _Payload.marker = str(tmp_path / "pwned")
    (evil / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ModelLoadError, match="allow_pickle=True"):
        load_model(str(evil), profile="cpu")
    assert not (tmp_path / "pwned").exists()


def test_the_transformers_path_asks_for_safetensors(tmp_path, embedded_path, monkeypatch):
    """Without the opt-in transformers itself is told use_safetensors=True (a hub repository cannot be
    looked into beforehand everywhere)."""
    from transformers import AutoModelForCausalLM

    from helpers.model.load import load_model

    folder = tmp_path / "safe"
    _model_folder(folder, embedded_path, pickle=False)
    seen = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("use_safetensors"))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    load_model(str(folder), profile="cpu")
    load_model(str(folder), profile="cpu", allow_pickle=True)
    assert seen == [True, None]


def test_a_missing_path_and_an_unknown_architecture_get_different_right_messages(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from helpers.model.checks import ModelLoadError
    from helpers.model.load import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)

    def error(name) -> str:
        with pytest.raises(ModelLoadError) as err:
            load_model(name, profile="cpu")
        return one_line_fix(err)

    for missing in ("./no/such/model", str(tmp_path / "nope"), "~/no-such-model-folder-xyz", "models/a/b"):
        message = error(missing)
        assert "does not exist" in message and "check the path" in message and "spelling" not in message
    unknown = tmp_path / "foo-model"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "foobar", "architectures": ["FooForCausalLM"]}))
    save_file({"w": __import__("torch").zeros(1)}, unknown / "model.safetensors")
    message = error(str(unknown))
    assert "unknown architecture 'foobar'" in message and "upgrade transformers" in message
    assert "spelling" not in message and "does not exist" not in message
    (tmp_path / "empty").mkdir()
    assert "not a model folder: it has no config.json" in error(str(tmp_path / "empty"))
    (tmp_path / "file.txt").write_text("x")
    assert "is a file, not a model folder" in error(str(tmp_path / "file.txt"))
    encoder = tmp_path / "t5"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    save_file({"w": __import__("torch").zeros(1)}, encoder / "model.safetensors")
    assert "no text-generation (causal LM) head" in error(str(encoder))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "no weights" in error(str(no_weights))
    hub = error("no-such-org/no-such-model")  # a hub name, offline
    assert "hub is not reachable" in hub and "does not exist" not in hub


# ---------------------------------------------------------------------------------------------
# The embedded model's cache: verified on use, rebuilt when damaged, one line when it cannot be
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def fake_cache(tmp_path, monkeypatch):
    """An empty model cache whose builds write a small stand-in model (4,096 weights)."""
    from helpers.model.embedded import EMBEDDED_MODEL

    return tmp_path / "cache" / EMBEDDED_MODEL, stand_in_embedded_cache(monkeypatch, tmp_path / "cache", 4096)


def test_a_truncated_cached_model_is_rebuilt_not_used(fake_cache, caplog):
    from helpers.files.integrity import MANIFEST, file_problem, manifest_problems
    from helpers.model.embedded import embedded_model_path

    final, builds = fake_cache
    assert embedded_model_path() == final and len(builds) == 1 and (final / MANIFEST).is_file()
    assert embedded_model_path() == final and len(builds) == 1  # verified, not rebuilt
    weights = final / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated copy
    with caplog.at_level(logging.WARNING):
        assert embedded_model_path() == final
    assert len(builds) == 2 and "damaged" in caplog.text and "model.safetensors" in caplog.text
    assert manifest_problems(final, full=True) == [] and file_problem(weights) is None
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # no temporary or old folder left


def test_same_size_damage_is_found_at_every_use_and_by_the_full_check(fake_cache):
    from helpers.model.embedded import embedded_model_path

    final, builds = fake_cache
    embedded_model_path()
    weights = final / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\xff" * 8  # same size, same header: only a hash can tell
    weights.write_bytes(bytes(data))
    embedded_model_path()
    assert len(builds) == 2 and weights.read_bytes() != bytes(data)  # the write moved its ctime: hashed in full
    embedded_model_path(full_check=True)
    assert len(builds) == 2  # the rebuilt cache hashes as recorded


def test_a_cache_from_before_manifests_is_adopted_or_rebuilt(fake_cache):
    from helpers.files.integrity import MANIFEST
    from helpers.model.embedded import build_embedded, embedded_model_path

    final, builds = fake_cache
    build_embedded(final)
    (final / MANIFEST).unlink()  # as an older version left it
    assert embedded_model_path() == final and len(builds) == 1 and (final / MANIFEST).is_file()
    (final / MANIFEST).unlink()
    (final / "config.json").write_text('{"model_type": "lla')  # half-written, no manifest to compare with
    embedded_model_path()
    assert len(builds) == 2 and json.loads((final / "config.json").read_text()) == {"model_type": "llama"}


def test_prepare_model_never_reports_a_damaged_cache_as_ready(fake_cache, capsys):
    from helpers.files.integrity import manifest_problems
    from helpers.run.cli import main

    final, builds = fake_cache
    assert main(["prepare-model"]) == 0
    (final / "model.safetensors").write_bytes(b"\x00" * 10)
    assert main(["prepare-model"]) == 0
    assert len(builds) == 2 and manifest_problems(final) == []
    assert capsys.readouterr().out.split() == [str(final), str(final)]


@pytest.mark.parametrize("error, needles", [
    (PermissionError(13, "Permission denied"), ("read-only or not yours", "GRPO_NOTEBOOKS_CACHE to a writable folder")),
    (OSError(30, "Read-only file system"), ("read-only", "GRPO_NOTEBOOKS_CACHE to a writable folder")),
    (OSError(28, "No space left on device"), ("the disk is full", "750.0 MiB needed", "GRPO_NOTEBOOKS_CACHE")),
])
def test_a_read_only_or_full_cache_is_one_line(fake_cache, monkeypatch, error, needles):
    from helpers.model import embedded as loading
    from helpers.model.checks import ModelLoadError

    final, _ = fake_cache

    def fail(tmp):
        raise error

    monkeypatch.setattr(loading, "_convert_embedded", fail)
    with pytest.raises(ModelLoadError) as err:
        loading.embedded_model_path()
    one_line_fix(err, str(final.parent), *needles)
    assert not final.exists()


# ---------------------------------------------------------------------------------------------
# Adapters: checked before use on every path, one line when damaged
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def sft_run(tmp_path, tokenizer):
    """A run folder whose SFT adapter (rank 8, random B) was saved from a tiny model."""
    return saved_sft_adapter(tmp_path / "run", tokenizer, tiny_model())


def _damage(adapter, how: str) -> None:
    weights = adapter / "adapter_model.safetensors"
    if how == "only adapter_model.bin":
        import torch
        from safetensors.torch import load_file

        torch.save(load_file(weights), adapter / "adapter_model.bin")
        weights.unlink()
    elif how == "no config":
        (adapter / "adapter_config.json").unlink()
    elif how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif how == "config without r":
        config = json.loads((adapter / "adapter_config.json").read_text())
        del config["r"]
        (adapter / "adapter_config.json").write_text(json.dumps(config))
    elif how == "half-written config":
        (adapter / "adapter_config.json").write_text('{"peft_type": "LO')
    elif how == "empty folder":
        for p in adapter.iterdir():
            p.unlink()


@pytest.mark.parametrize("how", ["only adapter_model.bin", "no config", "truncated weights", "config without r",
                                 "half-written config", "empty folder"])
def test_load_policy_refuses_a_damaged_sft_adapter(sft_run, tokenizer, how):
    from helpers.model.adapters import AdapterLoadError
    from helpers.train.policy import load_policy

    layout, _ = sft_run
    _damage(layout.sft_adapter, how)
    with pytest.raises(AdapterLoadError) as err:  # never a silent fresh start
        load_policy(layout.root, profile="ci", model=tiny_model(), tokenizer=tokenizer)
    one_line_fix(err, str(layout.sft_adapter), "from_sft=False")


def test_load_policy_uses_a_good_adapter_and_refuses_one_for_another_model(sft_run, tokenizer):
    import torch
    from peft import get_peft_model_state_dict

    from helpers.model.adapters import AdapterLoadError
    from helpers.train.policy import load_policy

    layout, trained = sft_run
    model, _, start = load_policy(layout.root, profile="ci", model=tiny_model(), tokenizer=tokenizer)
    assert start == f"SFT adapter {layout.sft_adapter}"
    ours, saved = get_peft_model_state_dict(model), get_peft_model_state_dict(trained)
    assert ours.keys() == saved.keys() and all(torch.equal(ours[k], saved[k]) for k in ours)
    with pytest.raises(AdapterLoadError) as err:
        load_policy(layout.root, profile="ci", model=tiny_model(hidden=32), tokenizer=tokenizer)
    one_line_fix(err, "does not fit this model")
    _, _, start = load_policy(layout.root, profile="ci", model=tiny_model(), tokenizer=tokenizer, from_sft=False)
    assert start == "base model + fresh LoRA"
    _, _, start = load_policy(layout.root / "elsewhere", profile="ci", model=tiny_model(), tokenizer=tokenizer)
    assert start == "base model + fresh LoRA"  # no SFT adapter at all: a fresh LoRA, as documented


@pytest.mark.parametrize("how", ["only adapter_model.bin", "truncated weights"])
def test_evaluation_and_load_adapter_refuse_a_damaged_adapter(sft_run, tokenizer, how):
    from helpers.evaluate.evaluation import evaluate_sets
    from helpers.model.adapters import AdapterLoadError, load_adapter

    layout, _ = sft_run
    _damage(layout.sft_adapter, how)
    with pytest.raises(AdapterLoadError) as err:
        load_adapter(tiny_model(), layout.sft_adapter)
    one_line_fix(err, str(layout.sft_adapter))
    with pytest.raises(AdapterLoadError):
        evaluate_sets(None, layout.root, model=object(), tokenizer=tokenizer, profile="ci")


# ---------------------------------------------------------------------------------------------
# Checkpoints: complete only if they read back; damaged ones skipped and kept
# ---------------------------------------------------------------------------------------------


def _checkpoint(folder, step: int):
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"lora_A": torch.zeros(4, 4)}, path / "adapter_model.safetensors")
    torch.save({"state": {0: torch.zeros(16)}}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def _cut(file, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


CHECKPOINT_DAMAGE = {
    "half-written trainer_state.json": lambda p: _cut(p / "trainer_state.json"),
    "trainer_state.json without global_step": lambda p: (p / "trainer_state.json").write_text("{}"),
    "empty trainer_state.json": lambda p: (p / "trainer_state.json").write_text(""),
    "truncated weights": lambda p: _cut(p / "adapter_model.safetensors", 0.9),
    "weights only as adapter_model.bin": lambda p: (p / "adapter_model.safetensors").rename(p / "adapter_model.bin"),
    "truncated optimizer.pt": lambda p: _cut(p / "optimizer.pt", 0.8),
    "no trainer_state.json (killed while saving)": lambda p: (p / "trainer_state.json").unlink(),
}


@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGE))
def test_a_checkpoint_counts_only_if_its_files_read_back(tmp_path, damage):
    from transformers.trainer_utils import sort_checkpoints

    from helpers.train.checkpoints import checkpoint_problem, complete_checkpoints, newest_checkpoint
    from helpers.train.checkpoints import set_aside_damaged as _drop_incomplete

    _checkpoint(tmp_path, 2)
    good = _checkpoint(tmp_path, 4)
    bad = _checkpoint(tmp_path, 6)
    assert newest_checkpoint(tmp_path) == bad and checkpoint_problem(bad) is None
    CHECKPOINT_DAMAGE[damage](bad)
    assert checkpoint_problem(bad) is not None
    assert newest_checkpoint(tmp_path) == good  # the next older one
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]
    assert bad.exists()  # newest_checkpoint changes nothing on disk
    before = {p.name: p.read_bytes() for p in bad.iterdir()}
    moved = _drop_incomplete(tmp_path)
    assert [p.name for p in moved] == ["damaged-checkpoint-6"]
    assert {p.name: p.read_bytes() for p in moved[0].iterdir()} == before  # kept whole for the user
    assert [Path(p).name for p in sort_checkpoints(str(tmp_path))] == ["checkpoint-2", "checkpoint-4"]


# ---------------------------------------------------------------------------------------------
# Training on a tiny model: resume past a damaged checkpoint, never pair old adapter and new metrics,
# a full disk in one line
# ---------------------------------------------------------------------------------------------


def _train(run, *, steps: int, resume: bool = False) -> dict:
    """Notebook 07 on a tiny random model (a checkpoint every step, the newest two kept); its namespace."""
    folder = run.parent / "tiny-model"
    if not folder.exists():
        from helpers.model.embedded import embedded_model_path

        _model_folder(folder, embedded_model_path(), pickle=False)
    return run_stage(7, run, model_name=str(folder), from_sft=False, grpo_steps=steps, save_steps=1,
                     num_generations=2, max_completion_length=4, grpo_train_problems=8, train_levels=1, resume=resume)


@pytest.fixture()
def trained_run(tmp_path):
    """A tiny GRPO run of 3 steps with a checkpoint at every step (the newest two kept)."""
    run = tmp_path / "run"
    ns = _train(run, steps=3)
    assert ns["trainer"].state.global_step == 3 and (run / "grpo" / "adapter" / "adapter_model.safetensors").is_file()
    return run


def _steps(metrics) -> list[int]:
    return [r["step"] for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r]


def test_resume_skips_a_damaged_newest_checkpoint_and_keeps_it(trained_run):
    from helpers.train.checkpoints import newest_checkpoint

    checkpoints = trained_run / "grpo" / "checkpoints"
    _cut(checkpoints / "checkpoint-3" / "trainer_state.json")  # a half-written trainer_state.json
    assert newest_checkpoint(checkpoints) == checkpoints / "checkpoint-2"
    damaged = (checkpoints / "checkpoint-3" / "trainer_state.json").read_bytes()
    ns = _train(trained_run, steps=4, resume=True)
    assert ns["resume_from"] == checkpoints / "checkpoint-2" and ns["trainer"].state.global_step == 4
    assert (checkpoints / "damaged-checkpoint-3" / "trainer_state.json").read_bytes() == damaged
    assert _steps(trained_run / "grpo" / "metrics.jsonl") == [1, 2, 3, 4]  # no step lost or twice
    assert json.loads((trained_run / "grpo" / "adapter" / "training.json").read_text())["steps"] == 4


class _Killed(BaseException):
    """Stands in for SIGKILL during the final adapter save."""


def test_a_kill_during_the_final_save_never_pairs_the_old_adapter_with_new_metrics(trained_run, monkeypatch):
    adapter = trained_run / "grpo" / "adapter"
    old = {p.name: p.read_bytes() for p in adapter.iterdir()}

    def killed(*args, **kwargs):
        raise _Killed()

    monkeypatch.setattr("helpers.save.adapter.save_adapter", killed)  # where save_trained looks it up
    with pytest.raises(_Killed):
        _train(trained_run, steps=2)  # a fresh run into the same folder
    assert _steps(trained_run / "grpo" / "metrics.jsonl") == [1, 2]  # the new run's metrics ...
    assert not adapter.exists()  # ... and no adapter beside them, rather than the old run's
    # the old adapter is kept, not deleted: with the run's other files (resume=False) or alone (a fresh start)
    (kept,) = [*(trained_run / "grpo").glob("previous-*/adapter"), *(trained_run / "grpo").glob("previous-adapters/*")]
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == old


def test_a_full_disk_while_checkpointing_is_one_line(tmp_path, monkeypatch):
    from transformers import Trainer

    from helpers.files.disk import DiskFullError

    def full(*args, **kwargs):  # what torch.save raised on a full tmpfs (measured)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", full)
    with pytest.raises(DiskFullError) as err:
        _train(tmp_path / "run", steps=1)
    one_line_fix(err, "the disk is full", str(tmp_path / "run" / "grpo" / "checkpoints"), "needed", "free")


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
    RuntimeError("[enforce fail at inline_container.cc:445] . PytorchStreamWriter failed writing file data/3: file "
                 "write failed"),
    OSError(28, "No space left on device"),
    Exception("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors
])
def test_a_full_disk_while_saving_is_one_line_and_keeps_the_old_folder(tmp_path, error):
    from helpers.files.atomic import atomic_folder
    from helpers.files.disk import DiskFullError

    final = tmp_path / "adapter"
    with atomic_folder(final) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(DiskFullError) as err, atomic_folder(final, needed=5 * 2**20) as tmp:
        (tmp / "a").write_text("half")
        raise error
    one_line_fix(err, "the disk is full", str(tmp_path), "5.0 MiB needed")
    assert (final / "a").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_save_lora_on_a_full_disk_names_the_adapter_size(sft_run, tokenizer, monkeypatch):
    from helpers.files.disk import DiskFullError
    from helpers.save.adapter import model_bytes, save_lora

    layout, peft_model = sft_run

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(peft_model), "save_pretrained", full)
    with pytest.raises(DiskFullError) as err:
        save_lora(peft_model, tokenizer, layout.root / "saved" / "lora")
    assert model_bytes(peft_model, trainable_only=True) > 0
    one_line_fix(err, str(layout.root / "saved"), "MiB needed")


def test_a_pickle_only_hub_repository_is_refused(monkeypatch):
    import huggingface_hub

    from helpers.model.checks import ModelLoadError, check_hub_weights

    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda name: ["config.json", "pytorch_model.bin"])
    with pytest.raises(ModelLoadError) as err:
        check_hub_weights("org/old-model")
    one_line_fix(err, "'org/old-model'", "allow_pickle=True")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda name: ["model.safetensors", "pytorch_model.bin"])
    check_hub_weights("org/both")  # safetensors there: transformers is told to use them

    def offline(name):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "list_repo_files", offline)
    check_hub_weights("org/unknown")  # cannot tell: left to transformers' use_safetensors=True
