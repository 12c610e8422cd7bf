"""helpers.save.merged: atomic folders, adapter validation with one-line errors, LoRA and merged saving,
the reload check (merged model == adapter-on model, != base model), and the GGUF message off-GPU."""

from __future__ import annotations

import json

import pytest
import torch
from errors import one_line_fix

from helpers.files.atomic import atomic_folder
from helpers.model.adapters import AdapterLoadError, check_adapter_dir, load_adapter
from helpers.save import gguf as gguf_export
from helpers.save import reload_check
from helpers.save.adapter import save_lora
from helpers.save.merged import (
    ExportUnavailable,
    merge_lora,
    merged_dtype,
    save_merged,
    unsloth_export,
    unsloth_merged_kwargs,
)

# ---------------------------------------------------------------------------------------------
# Atomic folders
# ---------------------------------------------------------------------------------------------


def test_atomic_folder_replaces_only_on_success(tmp_path):
    final = tmp_path / "out"
    with atomic_folder(final) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError, match="disk full"), atomic_folder(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("disk full")
    assert (final / "a.txt").read_text() == "one"  # the old complete folder is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial folder left behind
    with atomic_folder(final) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_folder_cleans_partials_of_dead_processes(tmp_path):
    stale = tmp_path / ".out.partial-999999999-abc"  # no such process
    stale.mkdir()
    with atomic_folder(tmp_path / "out"):
        pass
    assert not stale.exists()


# ---------------------------------------------------------------------------------------------
# Adapter folders: clear errors
# ---------------------------------------------------------------------------------------------


def _fake_adapter(folder, tensors=None):
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file(tensors or {"base_model.model.x.lora_A.weight": torch.zeros(8, 4),  # a whole pair: A [r, in], B [out, r]
                          "base_model.model.x.lora_B.weight": torch.zeros(4, 8)}, str(folder / "adapter_model.safetensors"))
    return folder




def test_missing_adapter_folder(tmp_path):
    with pytest.raises(AdapterLoadError) as err:
        check_adapter_dir(tmp_path / "nope")
    assert "does not exist" in one_line_fix(err)
    with pytest.raises(AdapterLoadError, match="does not exist"):
        load_adapter(torch.nn.Linear(2, 2), tmp_path / "nope")  # refused before any model work


def test_folder_without_adapter_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(AdapterLoadError) as err:
        check_adapter_dir(tmp_path)
    assert "no adapter_config.json" in one_line_fix(err)


def test_unreadable_adapter_config(tmp_path):
    folder = _fake_adapter(tmp_path / "a")
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterLoadError) as err:
        check_adapter_dir(folder)
    assert "not a valid PEFT adapter config" in one_line_fix(err)


def test_missing_weights_and_pickle_only_weights(tmp_path):
    folder = _fake_adapter(tmp_path / "a")
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterLoadError) as err:
        check_adapter_dir(folder)
    assert "no adapter_model.safetensors" in one_line_fix(err)
    (folder / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(AdapterLoadError) as err:
        check_adapter_dir(folder)
    assert "pickle" in one_line_fix(err)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_adapter_weights(tmp_path, damage):
    folder = _fake_adapter(tmp_path / "a", {"w": torch.ones(64, 64)})
    weights = folder / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00garbage" * 10, "empty": b""}[damage])
    with pytest.raises(AdapterLoadError) as err:
        check_adapter_dir(folder)
    assert "corrupt or truncated" in one_line_fix(err)


def test_valid_fake_adapter_passes(tmp_path):
    assert check_adapter_dir(_fake_adapter(tmp_path / "a"))["peft_type"] == "LORA"


# ---------------------------------------------------------------------------------------------
# Small decisions, no model
# ---------------------------------------------------------------------------------------------


def test_merged_dtype_decision():
    fp32 = torch.nn.Linear(2, 2)
    assert merged_dtype(fp32) is torch.bfloat16  # CPU model: saved in bf16
    assert merged_dtype(fp32.to(torch.float16)) is torch.float16  # a 16-bit model keeps its dtype
    assert merged_dtype(torch.nn.Linear(2, 2), "float16") is torch.float16
    with pytest.raises(ValueError, match="fix:"):
        merged_dtype(fp32, "int8")


def test_unsloth_arguments():
    assert unsloth_merged_kwargs("tok") == {"tokenizer": "tok", "save_method": "merged_16bit",
                                                   "safe_serialization": True}
    assert gguf_export.unsloth_gguf_kwargs("tok", ["q8_0", "Q4_K_M"]) == {"tokenizer": "tok",
                                                                   "quantization_method": ["q8_0", "q4_k_m"]}
    with pytest.raises(ValueError, match="unknown GGUF quantization"):
        gguf_export.unsloth_gguf_kwargs("tok", "q9_9")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message")
def test_gguf_has_a_clear_message_without_gpu(tmp_path):
    reason = gguf_export.gguf_unavailable_reason()
    assert "CUDA GPU" in reason and "llama.cpp" in reason and "fix:" in reason
    with pytest.raises(ExportUnavailable, match="CUDA GPU"):
        gguf_export.export_gguf(torch.nn.Linear(2, 2), None, tmp_path / "gguf")
    assert not (tmp_path / "gguf").exists()


def test_save_lora_refuses_a_plain_model(tmp_path):
    with pytest.raises(TypeError, match="PeftModel"):
        save_lora(torch.nn.Linear(2, 2), None, tmp_path / "x")


# ---------------------------------------------------------------------------------------------
# The real model (slow): save, merge, reload
# ---------------------------------------------------------------------------------------------

PROMPTS = ["What is 12 + 7?", "Name a colour."]


def perturb_lora(model, scale: float = 0.05, seed: int = 1) -> None:
    """Give the LoRA B matrices (zero at init) random values: a non-trivial adapter without training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def adapter_model():
    from helpers.model.load import load_model
    from helpers.model.lora import add_lora

    model, tokenizer = load_model(profile="ci")
    peft_model, _ = add_lora(model, rank=16, gradient_checkpointing=False)
    perturb_lora(peft_model)
    return peft_model, tokenizer


@pytest.fixture(scope="module")
def saved(adapter_model, tmp_path_factory):
    model, tokenizer = adapter_model
    root = tmp_path_factory.mktemp("saved")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = save_lora(model, tokenizer, root / "lora")
    merged = save_merged(model, tokenizer, root / "merged_16bit")
    after = model.state_dict()
    untouched = before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    return {"lora": lora, "merged": merged, "untouched": untouched}


@pytest.mark.slow
def test_saving_leaves_the_adapter_model_as_it_was(adapter_model, saved):
    from peft import PeftModel

    assert saved["untouched"]
    assert isinstance(adapter_model[0], PeftModel)


@pytest.mark.slow
def test_saved_folders_hold_what_they_should(saved, adapter_model):
    lora = sorted(p.name for p in saved["lora"].iterdir())
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(lora)
    merged = {p.name for p in saved["merged"].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= merged
    assert not any(name.startswith("adapter") for name in merged)  # a plain model, no PEFT needed
    assert json.loads((saved["merged"] / "config.json").read_text())["dtype"] == "bfloat16"
    from safetensors import safe_open

    with safe_open(str(saved["merged"] / "model.safetensors"), "pt") as fh:
        assert all(fh.get_slice(k).get_dtype() == "BF16" for k in fh.keys())
    template = adapter_model[1].chat_template
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(saved["merged"]).chat_template == template


@pytest.mark.slow
def test_lora_folder_reloads_onto_a_fresh_base(saved, adapter_model):
    from helpers.model.load import load_model

    base, _ = load_model(profile="ci")
    reloaded = load_adapter(base, saved["lora"])
    ours = {k: v for k, v in adapter_model[0].state_dict().items() if "lora_" in k}
    theirs = reloaded.state_dict()
    assert ours and all(torch.equal(v, theirs[k]) for k, v in ours.items())


@pytest.mark.slow
def test_merged_model_reproduces_the_adapter_and_differs_from_base(saved, adapter_model):
    model, tokenizer = adapter_model
    check = reload_check.reload_check(model, tokenizer, saved["merged"], PROMPTS, max_new_tokens=16)
    assert check.ok, str(check)
    assert check.saved_dtype == "bfloat16" and check.compared_in == "float32"
    assert check.chat_template_kept
    assert any(check.changed_by_training), "the perturbed adapter should change some greedy output"
    for i, exact in enumerate(check.exact):  # identical, or parted at a near tie only
        assert exact or check.divergence_margins[i] <= check.tie_tolerance
    assert "reload check: OK" in str(check)


@pytest.mark.slow
def test_fp32_merge_is_exact_and_a_wrong_merge_is_caught(adapter_model, tmp_path):
    model, tokenizer = adapter_model
    folder = save_merged(model, tokenizer, tmp_path / "merged32", dtype="float32")
    check = reload_check.reload_check(model, tokenizer, folder, PROMPTS[:1], max_new_tokens=12, compare_base=False)
    assert check.tie_tolerance == 0.0 and check.exact == [True], str(check)
    # a "merged" folder that is really the base model: the check must fail, naming the cause
    import shutil

    from helpers.model.embedded import embedded_model_path

    shutil.copytree(embedded_model_path(), tmp_path / "not_merged")
    tokenizer.save_pretrained(tmp_path / "not_merged")
    bad = reload_check.reload_check(model, tokenizer, tmp_path / "not_merged", PROMPTS, max_new_tokens=16)
    assert not bad.ok and any("merge lost the adapter" in p or "not near a tie" in p for p in bad.problems)


@pytest.mark.slow
def test_adapter_for_another_base_model_gets_a_clear_error(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    from helpers.model.load import load_model

    folder = tmp_path / "wrong"
    folder.mkdir()
    (folder / "adapter_config.json").write_text((saved["lora"] / "adapter_config.json").read_text())
    tensors = load_file(str(saved["lora"] / "adapter_model.safetensors"))
    # an adapter of the same rank for a wider model: A is [r, in + 3], B is [out + 3, r]
    save_file({k: torch.zeros(v.shape[0] + 3, v.shape[1]) if "lora_B" in k else torch.zeros(v.shape[0], v.shape[1] + 3)
               for k, v in tensors.items()}, str(folder / "adapter_model.safetensors"))
    base, _ = load_model(profile="ci")
    with pytest.raises(AdapterLoadError) as err:
        load_adapter(base, folder)
    assert "does not fit this model" in one_line_fix(err)


# ---------------------------------------------------------------------------------------------
# Unsloth + vLLM models (seen on the GPU machine, 2026-11-30)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_merge_shares_a_vllm_engine_instead_of_copying_it(adapter_model):
    """Unsloth's fast_inference model carries its vLLM engine (queues, CUDA state) as ``vllm_engine``;
    a deep copy of it failed notebook 08 with "cannot pickle '_queue.SimpleQueue'"."""
    import queue

    model, _ = adapter_model
    inner = model.get_base_model()
    inner.vllm_engine = queue.SimpleQueue()  # as uncopyable as the real engine
    try:
        merged = merge_lora(model)
        assert merged.vllm_engine is inner.vllm_engine
        assert not any("lora_" in n for n, _ in merged.named_parameters())
    finally:
        del inner.vllm_engine


def test_unsloth_export_needs_the_method_on_the_peft_model_itself():
    """A ``PeftModel.from_pretrained`` adapter only forwards Unsloth's export method to the base model,
    which refuses it (unsloth#11698); only a method bound on the PEFT model itself counts."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    base = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    base.save_pretrained_merged = lambda *a, **k: None  # Unsloth binds it on the model it loads
    peft = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    assert peft.save_pretrained_merged  # forwarded by PeftModel.__getattr__ ...
    assert not unsloth_export(peft, "save_pretrained_merged")  # ... but not its own
    peft.save_pretrained_merged = lambda *a, **k: None  # what Unsloth's get_peft_model does
    assert unsloth_export(peft, "save_pretrained_merged")
    assert unsloth_export(base, "save_pretrained_merged")


def test_folder_listing_names_each_file_and_the_total(tmp_path):
    """Notebook 08 shows what each save wrote with helpers.save.adapter.folder_listing."""
    from helpers.save.adapter import folder_listing

    (tmp_path / "b.safetensors").write_bytes(b"\0" * 3 * 2**20)
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    lines = folder_listing(tmp_path).splitlines()
    assert lines[0] == f"{tmp_path}  (3.0 MB)"
    assert [line.split()[0] for line in lines[1:]] == ["a.json", "b.safetensors"]
    assert lines[2].endswith("3.00 MB")
