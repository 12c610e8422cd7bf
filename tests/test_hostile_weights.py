"""Hostile weights (issue 27): a model folder, the embedded model's cache or a LoRA adapter whose weights are
not the checkpoint's is refused in one line naming the fix, before work starts where a cheap check can
see it, never loaded as random or NaN weights.

The damaged folders are built in a tmp dir from a tiny random Llama with the embedded model's tokenizer
(``model_folders``); the embedded cache's own tests copy the cached folder (slow ones) or use a stand-in.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from errors import one_line_fix
from model_folders import model_folder, saved_sft_adapter, stand_in_embedded_cache, tiny_causal_lm
from safetensors.torch import load_file, save_file


def _rewrite(path, change) -> None:
    """Change bytes of ``path`` in place (same size)."""
    data = bytearray(path.read_bytes())
    change(data)
    path.write_bytes(bytes(data))


def _resave(path, change) -> None:
    """Load a safetensors file, change its dict of tensors, save it back."""
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


# ---------------------------------------------------------------------------------------------
# Model folders: refused before anything loads
# ---------------------------------------------------------------------------------------------


def _drop_first_shard(folder):
    sorted(folder.glob("model-*.safetensors"))[0].unlink()


def _misplace_in_index(folder):
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    key = next(k for k, v in index["weight_map"].items() if v.startswith("model-00001"))
    index["weight_map"][key] = sorted(folder.glob("model-*.safetensors"))[-1].name
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _wrong_shapes(folder):
    tiny_causal_lm(hidden=32).save_pretrained(folder / "other")
    shutil.move(folder / "other" / "model.safetensors", folder / "model.safetensors")


REFUSED_BEFORE_LOADING = {  # damage, whether sharded, what the message says
    "an empty safetensors file": (lambda f: save_file({}, f / "model.safetensors"), False, "holds no tensors"),
    "an unrelated safetensors file": (lambda f: save_file({"foo.weight": torch.ones(3, 3)}, f / "model.safetensors"),
                                      False, "none of their 1 tensors"),
    "truncated weights": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
                          False, "truncated or corrupt"),
    "a corrupt header": (lambda f: _rewrite(f / "model.safetensors", lambda d: d.__setitem__(slice(8, 40), b"x" * 32)),
                         False, "truncated or corrupt"),
    "a missing shard": (_drop_first_shard, True, "lacks 1 of the 3 weight shards"),
    "an unreadable shard index": (lambda f: (f / "model.safetensors.index.json").write_text("{"), True,
                                  "not a readable shard index"),
    "an index that misplaces a tensor": (_misplace_in_index, True, "does not hold 1 tensors"),
    "no tokenizer": (lambda f: [(f / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")], False,
                     "has no tokenizer"),
    "a half-copied tokenizer.json": (lambda f: (f / "tokenizer.json").write_bytes((f / "tokenizer.json").read_bytes()[
        :1_000_000]), False, "tokenizer.json is unreadable"),
    "a half-written tokenizer_config.json": (lambda f: (f / "tokenizer_config.json").write_text('{"eos_token": "<'),
                                             False, "tokenizer_config.json is unreadable"),
    "weights of the wrong shape": (_wrong_shapes, False, "tensors of the wrong shape"),
    "a config that is a JSON list": (lambda f: (f / "config.json").write_text("[1, 2]"), False, "holds a JSON list"),
    "a weight missing": (lambda f: _resave(f / "model.safetensors", lambda t: t.pop("model.layers.0.mlp.up_proj.weight")),
                         False, "lack 1 of the model's"),
}


@pytest.fixture()
def no_weight_loading(monkeypatch):
    """Fail the test if transformers starts loading weights: the refusal must come before."""
    from transformers import AutoModelForCausalLM

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the folder was refused")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("case", list(REFUSED_BEFORE_LOADING))
def test_a_damaged_model_folder_is_refused_before_loading(case, tmp_path, embedded_path, no_weight_loading):
    """By ``load_model``, and by the command's pre-check: ``--model FOLDER`` is refused before any notebook
    starts (it looked only for config.json)."""
    from helpers.model.checks import ModelLoadError
    from helpers.model.load import load_model
    from helpers.run.checks import UsageError, model_plan

    damage, shards, needle = REFUSED_BEFORE_LOADING[case]
    folder = tmp_path / "model"
    model_folder(folder, embedded_path, shards=shards)
    damage(folder)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(folder), profile="cpu")
    one_line_fix(err, needle, str(folder))
    with pytest.raises(UsageError) as err:
        model_plan(str(folder), "cpu")
    one_line_fix(err, f"--model {folder}", needle)


@pytest.mark.parametrize("case, damage, needle", [
    ("NaN bytes at the same size", lambda f: _rewrite(f / "model.safetensors",
                                                       lambda d: d.__setitem__(slice(len(d) // 2, len(d) // 2 + 4096),
                                                                               b"\xff" * 4096)), "NaN or infinite"),
    ("a weight of another model", lambda f: _resave(f / "model.safetensors", lambda t: t.update(
        {"model.layers.9.mlp.up_proj.weight": torch.ones(2, 2)})), "does not use"),
])
def test_weights_that_are_not_the_checkpoints_are_refused_after_loading(case, damage, needle, tmp_path, embedded_path,
                                                                        monkeypatch):
    from helpers.model.checks import ModelLoadError
    from helpers.model.load import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "model"
    model_folder(folder, embedded_path)
    damage(folder)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(folder), profile="cpu")
    one_line_fix(err, needle, str(folder))


def test_missing_weights_in_the_loading_info_are_refused(tmp_path, embedded_path):
    """What only loading can tell (e.g. a converter's fused tensors): transformers' own loading info."""
    from transformers import AutoModelForCausalLM

    from helpers.model.checks import ModelLoadError
    from helpers.model.loaded import check_loading_info

    folder = tmp_path / "model"
    model_folder(folder, embedded_path)
    _resave(folder / "model.safetensors", lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"))
    _, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    with pytest.raises(ModelLoadError) as err:
        check_loading_info(info, str(folder))
    one_line_fix(err, "model.layers.1.self_attn.k_proj.weight", "at random")
    _, info = AutoModelForCausalLM.from_pretrained(embedded_path, output_loading_info=True)
    check_loading_info(info, str(embedded_path))  # the tied lm_head of the real model is not "missing"


@pytest.mark.parametrize("how", ["one file", "three shards", "tied, saved from the base model (no 'model.' prefix)"])
def test_good_folders_load_their_own_weights(how, tmp_path, embedded_path, monkeypatch):
    """No false refusal: shards, tied embeddings and a prefix-less checkpoint load, weight for weight."""
    from helpers.model.folder import check_model_folder
    from helpers.model.load import load_model
    from helpers.run.checks import model_plan

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "model"
    saved = model_folder(folder, embedded_path, shards=how == "three shards", tie=how.startswith("tied"))
    if how.startswith("tied"):
        (folder / "model.safetensors").unlink()
        saved.model.save_pretrained(folder)  # keys 'layers.0...', as a LlamaModel saves them
        assert "embed_tokens.weight" in load_file(folder / "model.safetensors")
    assert model_plan(str(folder), "cpu")[0] == str(folder)
    assert check_model_folder(str(folder)).parameters == sum(p.numel() for p in saved.parameters())
    model, _ = load_model(str(folder), profile="cpu")
    ours, theirs = model.state_dict(), saved.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("model_type, sizes", [
    ("mixtral", dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
                     num_local_experts=4, num_experts_per_tok=2)),  # per-expert tensors that loading fuses
    ("gpt2", dict(n_embd=32, n_head=2)),  # Conv1D projections, tied head, 'transformer.' prefix
])
def test_other_architectures_pass_and_load_their_own_weights(model_type, sizes, tmp_path, embedded_path, monkeypatch):
    from transformers import AutoConfig, AutoModelForCausalLM

    from helpers.model.folder import check_model_folder
    from helpers.model.load import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    saved = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, vocab_size=49152, num_hidden_layers=2,
                                                                  n_layer=2, **sizes))
    folder = tmp_path / model_type
    saved.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded_path / name, folder / name)
    check_model_folder(str(folder))
    model, _ = load_model(str(folder), profile="cpu")
    ours, theirs = model.state_dict(), saved.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_embedded_model_folder_passes_the_folder_check(embedded_path):
    from helpers.model.folder import check_model_folder

    checked = check_model_folder(str(embedded_path))
    assert checked.config.model_type == "llama" and 134_000_000 < checked.parameters < 135_000_000


# ---------------------------------------------------------------------------------------------
# The embedded model's cache: same-size damage found at every use, rebuilt
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def stand_in_cache(tmp_path, monkeypatch):
    """An empty cache whose builds write a stand-in model with 4 MiB of weights (larger than the 1 MiB
    that is sampled); everything around the conversion is the real code."""
    from helpers.model import embedded

    builds = stand_in_embedded_cache(monkeypatch, tmp_path / "cache", 2**20)
    final = embedded.embedded_model_path()
    assert len(builds) == 1
    return final, builds


def _between_samples(size: int) -> int:
    """An offset that none of the sampled blocks covers (helpers.files.integrity's scheme)."""
    from helpers.files.integrity import SAMPLE_BLOCK, SAMPLE_BLOCKS

    step = (size - SAMPLE_BLOCK) // (SAMPLE_BLOCKS - 1)
    assert step > 2 * SAMPLE_BLOCK + 8192
    return 7 * step + SAMPLE_BLOCK + (step - SAMPLE_BLOCK) // 2


def _hide_the_write(folder, name: str) -> None:
    """Record the file's new identity in the manifest, as if the damage came without a write (bit rot)."""
    from helpers.files.integrity import MANIFEST, file_identity

    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][name]["stat"] = file_identity(folder / name)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_same_size_damage_between_the_sampled_blocks_is_found_at_every_use(stand_in_cache, caplog):
    from helpers.model.embedded import embedded_model_path

    final, builds = stand_in_cache
    weights = final / "model.safetensors"
    good = weights.read_bytes()
    at = _between_samples(len(good))
    _rewrite(weights, lambda d: d.__setitem__(slice(at, at + 4096), b"\x00" * 4096))  # same size, same header
    with caplog.at_level(logging.WARNING):
        assert embedded_model_path() == final
    assert len(builds) == 2 and "SHA-256 differs" in caplog.text and weights.read_bytes() == good
    assert embedded_model_path() == final and len(builds) == 2  # the rebuilt cache is used as it is


def test_damage_without_a_write_is_found_by_the_sampled_hash(stand_in_cache):
    from helpers.files.integrity import SAMPLE_BLOCK, SAMPLE_BLOCKS
    from helpers.model.embedded import embedded_model_path

    final, builds = stand_in_cache
    weights = final / "model.safetensors"
    step = (weights.stat().st_size - SAMPLE_BLOCK) // (SAMPLE_BLOCKS - 1)
    _rewrite(weights, lambda d: d.__setitem__(slice(5 * step + 100, 5 * step + 108), b"\x01" * 8))
    _hide_the_write(final, "model.safetensors")
    embedded_model_path()
    assert len(builds) == 2


def test_a_manifest_from_before_sampling_is_hashed_once_and_upgraded(stand_in_cache, monkeypatch):
    from helpers.files import integrity
    from helpers.model.embedded import embedded_model_path

    final, builds = stand_in_cache
    hashed = []
    real = integrity._sha256
    monkeypatch.setattr(integrity, "_sha256", lambda p: hashed.append(p.name) or real(p))
    embedded_model_path()
    assert hashed == []  # a fresh build is used without hashing it again
    manifest = json.loads((final / integrity.MANIFEST).read_text())
    old = {name: {"size": e["size"], "sha256": e["sha256"]} for name, e in manifest["files"].items()}
    (final / integrity.MANIFEST).write_text(json.dumps({**manifest, "files": old}))  # as the previous version wrote it
    embedded_model_path()
    assert len(builds) == 1 and "model.safetensors" in hashed  # verified in full, not rebuilt
    assert "stat" in json.loads((final / integrity.MANIFEST).read_text())["files"]["model.safetensors"]
    hashed.clear()
    embedded_model_path()
    assert hashed == []  # the next use is cheap again


@pytest.mark.slow
def test_a_damaged_embedded_cache_never_loads(tmp_path, embedded_path, monkeypatch, caplog):
    """The real model: bytes overwritten in place at the same size are found before loading; NaN weights
    that no write revealed are found after loading; both times the cache is rebuilt and the model that
    loads is the pristine one."""
    from helpers.files.integrity import MANIFEST
    from helpers.model import embedded
    from helpers.model.load import load_model

    cache = tmp_path / "cache"
    shutil.copytree(embedded_path, cache / embedded.EMBEDDED_MODEL)
    monkeypatch.setenv("GRPO_NOTEBOOKS_CACHE", str(cache))
    builds = []

    def convert(tmp):  # the real conversion needs PyPI and 30 s: copy the pristine files instead
        builds.append(shutil.copytree(embedded_path, tmp / "model", ignore=shutil.ignore_patterns(MANIFEST)))
        return tmp / "model"

    monkeypatch.setattr(embedded, "_convert_embedded", convert)
    final = cache / embedded.EMBEDDED_MODEL
    weights = final / "model.safetensors"
    pristine = load_file(embedded_path / "model.safetensors")
    at = _between_samples(weights.stat().st_size)

    _rewrite(weights, lambda d: d.__setitem__(slice(at, at + 2**20), b"\x00" * 2**20))
    model, _ = load_model(profile="ci")
    assert len(builds) == 1
    assert torch.equal(model.model.embed_tokens.weight, pristine["model.embed_tokens.weight"])

    _rewrite(weights, lambda d: d.__setitem__(slice(at, at + 4096), b"\xff" * 4096))  # NaN bytes ...
    _hide_the_write(final, "model.safetensors")  # ... that the file's identity does not show
    with caplog.at_level(logging.WARNING):
        model, _ = load_model(profile="ci")
    assert len(builds) == 2 and "NaN/inf" in caplog.text
    state = model.state_dict()
    assert all(torch.equal(state[k], pristine[k]) for k in pristine)


# ---------------------------------------------------------------------------------------------
# Adapters: a whole, finite, trained adapter or a one-line refusal
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def trained_adapter(tmp_path, tokenizer):
    """A run folder whose SFT adapter (rank 8, random B: as if trained) was saved from a tiny model."""
    return saved_sft_adapter(tmp_path / "run", tokenizer, tiny_causal_lm())[0]


def _only(half: str):
    return lambda t: [t.pop(k) for k in list(t) if f"lora_{half}" not in k]


def _drop_layer(t):
    for key in [k for k in t if ".layers.1.mlp.up_proj." in k]:
        t.pop(key)


def _cut_rank(t):
    key = next(k for k in t if "lora_A" in k)
    t[key] = t[key][:4].contiguous()


ADAPTER_DAMAGE = {  # change of the tensors, what the message says, whether the folder alone shows it
    "only lora_A (a fresh LoRA's B)": (_only("A"), "lora_A but no lora_B", True),
    "only lora_B": (_only("B"), "lora_B but no lora_A", True),
    "all NaN": (lambda t: [v.fill_(float("nan")) for v in t.values()], "NaN or infinite", True),
    "ranks that disagree": (_cut_rank, "do not make a rank-8 adapter", True),
    "a targeted layer missing": (_drop_layer, "lacks the LoRA weights of 1 layers", False),
    "untrained (every lora_B zero)": (lambda t: [v.zero_() for k, v in t.items() if "lora_B" in k], "untrained", False),
}


@pytest.mark.parametrize("case", list(ADAPTER_DAMAGE))
def test_load_policy_refuses_an_adapter_that_is_not_a_trained_one(case, trained_adapter, tokenizer):
    from helpers.model.adapters import AdapterLoadError
    from helpers.train.policy import load_policy

    change, needle, _ = ADAPTER_DAMAGE[case]
    _resave(trained_adapter.sft_adapter / "adapter_model.safetensors", change)
    with pytest.raises(AdapterLoadError) as err:  # never a silent fresh or NaN start
        load_policy(trained_adapter.root, profile="ci", model=tiny_causal_lm(), tokenizer=tokenizer)
    one_line_fix(err, needle, str(trained_adapter.sft_adapter), "from_sft=False")


@pytest.mark.parametrize("case", list(ADAPTER_DAMAGE))
def test_check_adapter_dir_and_load_adapter_refuse_it_too(case, trained_adapter):
    from helpers.model.adapters import AdapterLoadError, check_adapter_dir, load_adapter

    change, needle, folder_alone = ADAPTER_DAMAGE[case]
    adapter = trained_adapter.sft_adapter
    _resave(adapter / "adapter_model.safetensors", change)
    if folder_alone:
        with pytest.raises(AdapterLoadError) as err:
            check_adapter_dir(adapter)
        one_line_fix(err, needle, str(adapter))
    else:
        check_adapter_dir(adapter)  # needs the model (a layer missing), or the caller's word (trained=True)
    with pytest.raises(AdapterLoadError) as err:
        load_adapter(tiny_causal_lm(), adapter, trained=True)
    one_line_fix(err, needle)


def test_a_trained_adapter_that_did_not_move_is_evaluated_with_a_warning(trained_adapter, caplog):
    """GRPO steps without reward spread leave every lora_B at zero: save_trained's record (training.json, steps > 0)
    tells that apart from a fresh LoRA passed off as trained; the adapter is used, with a warning."""
    import json
    import logging

    from helpers.model.adapters import AdapterLoadError, check_adapter_dir

    adapter = trained_adapter.sft_adapter
    _resave(adapter / "adapter_model.safetensors", ADAPTER_DAMAGE["untrained (every lora_B zero)"][0])
    for record in ({"stage": "grpo", "steps": 0}, {"stage": "grpo"}, "not json"):
        (adapter / "training.json").write_text(record if isinstance(record, str) else json.dumps(record))
        with pytest.raises(AdapterLoadError):
            check_adapter_dir(adapter, trained=True)
    (adapter / "training.json").write_text(json.dumps({"stage": "grpo", "steps": 3}))
    with caplog.at_level(logging.WARNING):
        check_adapter_dir(adapter, trained=True)
    assert "3 training steps left every lora_B at zero" in caplog.text


def test_an_adapter_on_fewer_layers_loads_into_the_all_linear_policy(tmp_path, tokenizer):
    """No false refusal: layers the adapter config does not target stay fresh (B = 0, as when saved)."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    from helpers.files.runs import RunLayout
    from helpers.model.adapters import load_adapter
    from helpers.save.adapter import save_lora
    from helpers.train.policy import load_policy

    peft_model = get_peft_model(tiny_causal_lm(), LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    layout = RunLayout(tmp_path / "run")
    save_lora(peft_model, tokenizer, layout.sft_adapter)
    model, _, start = load_policy(layout.root, profile="ci", model=tiny_causal_lm(), tokenizer=tokenizer)
    assert start.startswith("SFT adapter")
    ours, saved = get_peft_model_state_dict(model), get_peft_model_state_dict(peft_model)
    assert set(saved) < set(ours) and all(torch.equal(ours[k], saved[k]) for k in saved)
    load_adapter(tiny_causal_lm(), layout.sft_adapter, trained=True)
