"""Warnings of the GPU run (issue 31): fixed where the suite causes them, silenced narrowly where they are upstream's.

- Unsloth's "should be imported before [transformers]": helpers.runtime.unsloth_first imports it first (checked
  in a fresh interpreter with a stand-in ``unsloth`` that makes Unsloth's own check, unsloth/_gpu_init.py l. 20-21).
- "Both `max_new_tokens` and `max_length`": helpers.generate.completions no longer leaves a model's max_length set.
- c10d's "hostname of the client socket": the engine's store on the loopback address (VLLM_HOST_IP).
- vLLM's unknown VLLM_ATTENTION_BACKEND, transformers' `torch_dtype` deprecation from Unsloth's code, torchao's
  invalid escape: dropped by helpers.runtime.upstream_noise, one message each; the upstream code that causes each
  is checked where it is installed, so these tests fail when upstream changes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from helpers.model.vllm_engine import VLLM_ENV, apply_vllm_env
from helpers.runtime import upstream_noise
from helpers.runtime.upstream_noise import (
    TORCH_DTYPE_WARNING,
    VLLM_ATTENTION_BACKEND_WARNING,
    quiet_upstream,
)

REPO = Path(__file__).resolve().parents[1]

# -- import order ------------------------------------------------------------------------------------

FAKE_UNSLOTH = '''
import os, sys, warnings
critical_modules = ["trl", "transformers", "peft"]  # unsloth 2026.10.9 unsloth/_gpu_init.py l. 20-21
already_imported = [mod for mod in critical_modules if mod in sys.modules]
if already_imported:
    warnings.warn(f"WARNING: Unsloth should be imported before [{', '.join(already_imported)}] to ensure all "
                  "optimizations are applied.", stacklevel=2)
COMPILE_DISABLE_AT_IMPORT = os.environ.get("UNSLOTH_COMPILE_DISABLE")
STANDBY_AT_IMPORT = os.environ.get("UNSLOTH_VLLM_STANDBY")  # unsloth_zoo reads it at import (expandable segments)
'''

H100 = ("Hardware(cuda=True, gpu_name='H100', cuda_capability=(9, 0), vram_gib=79.2, bf16=True, cpu_threads=16, "
        "colab=False, notebook=False, unsloth=True, vllm={vllm})")


def run_python(tmp_path, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "unsloth").mkdir(exist_ok=True)
    (tmp_path / "unsloth" / "__init__.py").write_text(FAKE_UNSLOTH)
    env = {k: v for k, v in os.environ.items() if k not in ("GRPO_GPU_SPEED", "GRPO_PLAIN_TRL", "WORLD_SIZE",
                                                             "UNSLOTH_COMPILE_DISABLE", *VLLM_ENV)}
    env.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-W", "always", "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)


def test_unsloth_is_imported_before_transformers_on_its_path(tmp_path):
    done = run_python(tmp_path, f"""
        from helpers.runtime.hardware import Hardware
        from helpers.runtime.unsloth_first import import_unsloth_first
        print(import_unsloth_first({H100.format(vllm=False)}, anywhere=True))
        import unsloth, transformers
        from transformers import AutoConfig  # what load_model's _load_config does next
        print("compile disabled at import:", unsloth.COMPILE_DISABLE_AT_IMPORT)
    """)
    assert done.returncode == 0, done.stderr
    assert "imported unsloth\n" in done.stdout and "should be imported before" not in done.stderr
    assert "compile disabled at import: 1" in done.stdout  # speed options (no vLLM: no_compile) came first


@pytest.mark.parametrize("vllm, standby", [(True, "1"), (False, None)])
def test_unsloth_imported_first_sees_vllms_standby_flag(tmp_path, vllm, standby):
    """On an H100 (2026-12-07) notebook 01 failed with the suite's defaults: ``use_profile`` imported Unsloth before
    ``load_model`` set UNSLOTH_VLLM_STANDBY=1, so unsloth_zoo had turned on ``expandable_segments`` and the engine's
    start refused it. Where vLLM runs, the flag is set before that import; where it does not (a T4), it is not."""
    done = run_python(tmp_path, f"""
        from helpers.runtime.hardware import Hardware
        from helpers.runtime.unsloth_first import import_unsloth_first
        print(import_unsloth_first({H100.format(vllm=vllm)}, anywhere=True))
        import unsloth
        print("standby at import:", unsloth.STANDBY_AT_IMPORT)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["imported unsloth", f"standby at import: {standby}"]


def test_the_stand_in_warns_like_unsloth_when_transformers_comes_first(tmp_path):
    done = run_python(tmp_path, """
        from transformers import AutoConfig  # load_model's order before the fix: config first, then unsloth
        import unsloth
    """)
    assert "Unsloth should be imported before [transformers]" in done.stderr


def test_off_unsloths_path_or_outside_a_kernel_nothing_is_imported(tmp_path):
    done = run_python(tmp_path, f"""
        import sys
        from dataclasses import replace
        from helpers.runtime.hardware import Hardware
        from helpers.runtime.unsloth_first import import_unsloth_first
        gpu = {H100.format(vllm=True)}
        print(import_unsloth_first(gpu))  # grpo-notebooks run's own process: not a kernel
        print(import_unsloth_first(replace(gpu, cuda=False, unsloth=False), anywhere=True))
        import os; os.environ["WORLD_SIZE"] = "2"
        print(import_unsloth_first(gpu, anywhere=True))
        print("unsloth" in sys.modules)
    """)
    assert done.stdout.splitlines() == ["skipped: not a notebook kernel",
                                        "skipped: this process does not train through Unsloth",
                                        "skipped: this process does not train through Unsloth", "False"], done.stderr


# -- max_new_tokens and max_length --------------------------------------------------------------------------

@pytest.mark.slow
def test_generation_passes_max_new_tokens_without_the_max_length_warning(fresh_model, caplog):
    from helpers.generate.completions import generate_completions

    model, tokenizer = fresh_model
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True) for q in ("What is 2 + 3?", "Say hi.")]
    plain = generate_completions(model, tokenizer, prompts, max_new_tokens=5, progress=False)
    model.generation_config.max_length = 8192  # as Unsloth's models carry it (notebook 06 on the GPU)
    with caplog.at_level(logging.WARNING, logger="transformers"):
        again = generate_completions(model, tokenizer, prompts, max_new_tokens=5, progress=False)
    assert not [r for r in caplog.records if "Both `max_new_tokens`" in r.getMessage()]
    assert again.texts == plain.texts and model.generation_config.max_length == 8192  # same tokens; restored


# -- c10d: the engine's store on the loopback address ---------------------------------------------------------

def test_the_engine_store_uses_the_loopback_address(monkeypatch):
    assert VLLM_ENV["VLLM_HOST_IP"] == "127.0.0.1"
    monkeypatch.delenv("VLLM_HOST_IP", raising=False)
    apply_vllm_env()
    assert os.environ["VLLM_HOST_IP"] == "127.0.0.1"
    monkeypatch.setenv("VLLM_HOST_IP", "10.0.0.7")  # a user's own setting wins
    apply_vllm_env()
    assert os.environ["VLLM_HOST_IP"] == "10.0.0.7"


# -- the narrow filters ---------------------------------------------------------------------------------------

def test_only_vllms_warning_about_unsloths_attention_variable_is_dropped():
    quiet_upstream()
    quiet_upstream()  # idempotent
    assert len([f for f in logging.getLogger("vllm.envs").filters
                if isinstance(f, upstream_noise._DropVllmAttentionBackend)]) == 1
    vllm = logging.getLogger("vllm")
    saved = vllm.handlers[:], vllm.propagate, vllm.level
    stream = io.StringIO()
    try:  # vLLM's own logging set-up (vllm/logger.py) after the filter was installed: the filter stays
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "handlers": {"vllm": {"class": "logging.StreamHandler", "stream": stream, "level": "INFO"}},
            "loggers": {"vllm": {"handlers": ["vllm"], "level": "INFO", "propagate": False}}})
        envs = logging.getLogger("vllm.envs")
        envs.warning("Unknown vLLM environment variable detected: %s", "VLLM_ATTENTION_BACKEND")
        envs.warning("Unknown vLLM environment variable detected: %s", "VLLM_TYPO")
    finally:
        vllm.handlers[:], vllm.propagate, vllm.level = saved
    assert stream.getvalue().splitlines() == ["Unknown vLLM environment variable detected: VLLM_TYPO"]


def test_torch_dtype_deprecation_is_dropped_only_when_unsloth_triggers_it(tmp_path, caplog):
    from transformers import PretrainedConfig

    zoo = tmp_path / "unsloth_zoo"
    zoo.mkdir()
    (zoo / "empty_model.py").write_text(textwrap.dedent("""
        def _set_runtime_dtype(config_obj, dtype):  # unsloth_zoo 2026.10.9 empty_model.py l. 267-270
            for dtype_attr in ("dtype", "torch_dtype"):
                if hasattr(config_obj, dtype_attr):
                    setattr(config_obj, dtype_attr, dtype)
    """))
    spec = importlib.util.spec_from_file_location("fake_unsloth_zoo_empty_model", zoo / "empty_model.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    quiet_upstream()
    with caplog.at_level(logging.WARNING, logger="transformers"):
        logging.Logger.warning_once.cache_clear()  # transformers says it once per process
        fake._set_runtime_dtype(PretrainedConfig(), "bfloat16")
        assert not [r for r in caplog.records if r.getMessage() == TORCH_DTYPE_WARNING]
        logging.Logger.warning_once.cache_clear()
        PretrainedConfig().torch_dtype = "bfloat16"  # anyone else's use: still said (transformers 5.17 says it)
        assert [r.name for r in caplog.records if r.getMessage() == TORCH_DTYPE_WARNING] == [
            "transformers.configuration_utils"]


def test_only_torchaos_invalid_escapes_are_dropped(tmp_path):
    source = 'def f():\n    """Match names like a\\.b"""\n'  # torchao 0.17 quant_api.py l. 1731's kind of docstring
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_upstream()  # inside catch_warnings: the test's filters are put back afterwards
        compile(source, str(tmp_path / "site" / "torchao" / "quantization" / "quant_api.py"), "exec")
        compile(source, str(tmp_path / "site" / "mypackage" / "module.py"), "exec")
    assert [Path(w.filename).parent.name for w in seen if "invalid escape sequence" in str(w.message)] == ["mypackage"]


# -- the upstream causes, where installed ---------------------------------------------------------------------

def _installed_source(distribution: str, package: str, relative: str) -> str:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{distribution} is not installed here (the GPU stack: pip install '.[gpu]')")
    spec = importlib.util.find_spec(package)
    return (Path(next(iter(spec.submodule_search_locations))) / relative).read_text(encoding="utf-8")


def test_unsloth_still_sets_the_attention_variable_vllm_no_longer_knows():
    zoo = _installed_source("unsloth_zoo", "unsloth_zoo", "vllm_utils.py")
    assert 'os.environ["VLLM_ATTENTION_BACKEND"] = "FLASHINFER"' in zoo, "Unsloth stopped setting it: drop the filter"
    envs = _installed_source("vllm", "vllm", "envs.py")
    assert '"VLLM_ATTENTION_BACKEND":' not in envs, "vLLM knows the variable again: drop the filter"
    assert VLLM_ATTENTION_BACKEND_WARNING.split(":")[0] in envs


def test_unsloth_still_sets_torch_dtype_on_configs():
    zoo = _installed_source("unsloth_zoo", "unsloth_zoo", "empty_model.py")
    assert 'for dtype_attr in ("dtype", "torch_dtype"):' in zoo, "Unsloth stopped it: drop the torch_dtype filter"


def test_torchao_still_has_the_invalid_escape():
    source = _installed_source("torchao", "torchao", "quantization/quant_api.py")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        compile(source, "quant_api.py", "exec")
    assert any("invalid escape sequence" in str(w.message) for w in seen), "torchao fixed it: drop the filter"
