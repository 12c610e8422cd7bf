"""helpers.runtime.install: which extra the notebooks' first cell installs on Colab, decided per case a Colab user
can meet (issue 29, item 4), and what it installs; the resolution against Colab's torch is in tests/test_extras.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runtime import install

REPO = Path(__file__).resolve().parents[1]
DECLARED = install.pyproject_requirements(REPO / "pyproject.toml")


@pytest.mark.parametrize("cap, driver, torch, extra", [
    # Colab's T4 on its CUDA 12 image (torch 2.11.0+cu128, 2026-08; the host driver is a CUDA 12 one)
    ("7.5", "550.54.15", "2.11.0+cu128", "t4"),
    ("7.5", "570.124.06", "2.11.0+cu128", "t4"),
    # an L4 or an A100 on the same CUDA 12 image: vLLM 0.26 is a CUDA 13 build, it cannot load there
    ("8.9", "550.54.15", "2.11.0+cu128", "t4"),
    ("8.0", "550.54.15", "2.11.0+cu128", "t4"),
    # an A100 with a CUDA 13 driver (>= 580) but still a CUDA 12 torch (pip keeps 2.11.0+cu128)
    ("8.0", "580.82.07", "2.11.0+cu128", "t4"),
    # an A100 on a CUDA 13 image: vLLM 0.26 runs
    ("8.0", "580.82.07", "2.11.0+cu130", "gpu"),
    ("8.0", "580.82.07", "2.11.0", "gpu"),  # PyPI's torch 2.11.0 is the CUDA 13 build
    ("9.0", "580.159.04", None, "gpu"),  # no torch yet: pip installs PyPI's 2.11.0 (CUDA 13)
    ("9.0", "580.159.04", "2.12.0+cu128", "gpu"),  # pip replaces it by PyPI's 2.11.0 (CUDA 13)
    # a T4 even with CUDA 13: vLLM 0.26's FlashAttention floor is compute capability 8.0 (benchmarks/t4/vllm_on_t4.md)
    ("7.5", "580.82.07", "2.11.0+cu130", "t4"),
    ((7, 5), "580.82.07", "2.11.0", "t4"),
    # no GPU (a Colab CPU runtime): the base requirements, the CPU profile
    (None, None, "2.11.0+cpu", None),
    (None, None, None, None),
])
def test_choose_extra(cap, driver, torch, extra):
    assert install.choose_extra(cap, driver, torch) == extra


@pytest.mark.parametrize("cap, driver, torch, fix", [
    ("7.5", "550.54.15", None, "--index-url https://download.pytorch.org/whl/cu128"),  # would get CUDA 13 torch
    ("7.5", "550.54.15", "2.12.0+cu128", "driver 550.54.15 (< 580) cannot run"),  # pip would replace it
    ("8.0", "580.82.07", "2.11.0+cpu", "has no CUDA"),
    ("7.5", "550.54.15", "2.11.0+cu128", None),
    ("8.0", "580.82.07", "2.12.0+cu128", None),  # replaced by PyPI's CUDA 13 build, which driver 580 runs
    (None, None, "2.11.0+cpu", None),
])
def test_a_torch_that_could_not_run_is_refused_before_installing(cap, driver, torch, fix):
    problem = install.torch_problem(cap, driver, torch)
    if fix is None:
        assert problem is None
    else:
        assert fix in problem and "; fix: " in problem and "\n" not in problem


def _smi(stdout, returncode=0):
    def run(args, **kwargs):
        assert args == install.SMI
        if isinstance(stdout, type):
            raise stdout(args[0])
        return subprocess.CompletedProcess(args, returncode, stdout=stdout, stderr="")

    return run


@pytest.mark.parametrize("stdout, code, expected", [
    ("Tesla T4, 7.5, 550.54.15\n", 0, ("Tesla T4", "7.5", "550.54.15")),
    ("NVIDIA H200, 9.0, 580.159.04\nNVIDIA A100-SXM4-40GB, 8.0, 580.159.04\n", 0,
     ("NVIDIA A100-SXM4-40GB", "8.0", "580.159.04")),  # several GPUs: the weakest decides
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", 9, None),
    (FileNotFoundError, 0, None),  # no nvidia-smi: no GPU
])
def test_read_gpu(stdout, code, expected):
    assert install.read_gpu(_smi(stdout, code)) == expected


def test_requirements_are_the_extras_pins_plus_the_base():
    base = install.requirements(None, DECLARED)
    t4 = install.requirements("t4", DECLARED)
    gpu = install.requirements("gpu", DECLARED)
    assert "torch>=2.6" in base and not any("==" in r and r.startswith(("unsloth", "vllm")) for r in base)
    assert t4[:len(base)] == base and gpu[:len(base)] == base
    assert {"torch==2.11.0", "unsloth==2026.10.9", "trl==1.15.0"} <= set(t4) and "vllm==0.26.0" not in t4
    assert set(gpu) - set(t4) == {"vllm==0.26.0"}
    assert not any(r.startswith(("pytest", "triton", "ruff")) for r in t4 + gpu)  # the dev extra stays out
    assert install.pinned_torch(t4) == "2.11.0"


def _main(monkeypatch, capsys, smi, torch, argv=()):
    calls = []

    def run(args, **kwargs):
        if args[0] == "nvidia-smi":
            return _smi(smi)(args, **kwargs)
        calls.append(args)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(install, "installed", lambda name: {"torch": torch}[name])
    monkeypatch.setattr(install, "declared_requirements", lambda: DECLARED)
    code = install.main(list(argv), run=run)
    out, err = capsys.readouterr()
    return code, calls, out.strip().splitlines(), err.strip().splitlines()


@pytest.mark.parametrize("smi, torch, extra", [
    ("Tesla T4, 7.5, 550.54.15\n", "2.11.0+cu128", "t4"),  # Colab's T4
    ("NVIDIA L4, 8.9, 550.54.15\n", "2.11.0+cu128", "t4"),  # Colab's L4 on the CUDA 12 image
    ("NVIDIA A100-SXM4-40GB, 8.0, 580.82.07\n", "2.11.0+cu130", "gpu"),  # an A100 on a CUDA 13 image
    (FileNotFoundError, "2.11.0+cpu", None),  # a CPU runtime
])
def test_main_installs_the_chosen_extra(monkeypatch, capsys, smi, torch, extra):
    code, calls, out, err = _main(monkeypatch, capsys, smi, torch)
    assert code == 0 and err == [] and len(calls) == 1 and len(out) == 1
    command = calls[0]
    assert command[:5] == [sys.executable, "-m", "pip", "install", "-q"]
    assert command[5:] == install.requirements(extra, DECLARED)
    assert (f"the `{extra}` extra" if extra else "the base requirements") in out[0]
    assert ("vllm==0.26.0" in command) == (extra == "gpu")


def test_main_refuses_a_torch_that_could_not_run(monkeypatch, capsys):
    code, calls, out, err = _main(monkeypatch, capsys, "Tesla T4, 7.5, 550.54.15\n", None)
    assert code == 1 and calls == [] and out == [] and len(err) == 1 and "; fix: pip install torch==2.11.0" in err[0]


def test_main_dry_run_and_forced_extra(monkeypatch, capsys):
    code, calls, out, _ = _main(monkeypatch, capsys, "Tesla T4, 7.5, 550.54.15\n", "2.11.0+cu128",
                                ["--extra", "gpu", "--dry-run"])
    assert code == 0 and calls == [] and "asked for with --extra" in out[0] and "vllm==0.26.0" in out[1]


def test_the_module_runs_as_the_first_cell_runs_it(tmp_path):
    """``python -m helpers.runtime.install`` (the cell's second command), here without nvidia-smi: a CPU machine."""
    env = dict(os.environ, PATH=str(tmp_path))  # no nvidia-smi on PATH
    proc = subprocess.run([sys.executable, "-m", "helpers.runtime.install", "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, command = proc.stdout.strip().splitlines()
    assert first.startswith("no NVIDIA GPU, torch ") and "the base requirements" in first
    assert command.startswith(f"{sys.executable} -m pip install -q ") and "'torch>=2.6'" in command


@pytest.mark.parametrize("vllm, standby", [(True, "1"), (False, None)])
def test_unsloth_sees_standby_at_import_where_vllm_runs(monkeypatch, tmp_path, vllm, standby):
    """The old first cell set UNSLOTH_VLLM_STANDBY=1 before anything; now ``load_model`` sets it (with vLLM's other
    variables, ``helpers.model.vllm_engine.VLLM_ENV``) before ``import unsloth``, which reads it at import; not where
    no vLLM engine starts (a T4 keeps Unsloth's default: expandable segments). A stand-in unsloth package records
    what it saw when imported."""
    from helpers.model import load as loading
    from helpers.model.vllm_engine import VLLM_ENV
    from helpers.runtime.hardware import Hardware

    gpu = Hardware(cuda=True, gpu_name="GPU", cuda_capability=(9, 0) if vllm else (7, 5), vram_gib=80.0, bf16=vllm,
                   cpu_threads=2, colab=False, notebook=False, unsloth=True, vllm=vllm)
    (tmp_path / "unsloth").mkdir()
    (tmp_path / "unsloth" / "__init__.py").write_text(
        "import os\nSEEN = os.environ.get('UNSLOTH_VLLM_STANDBY')\n\n\n"
        "class FastLanguageModel:\n    @staticmethod\n    def from_pretrained(**kwargs):\n"
        "        raise RuntimeError(f'standby at import: {SEEN}')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for key in VLLM_ENV:  # absent now, and absent again afterwards
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setattr(loading, "detect", lambda: gpu)
    monkeypatch.setattr(loading, "_check_memory", lambda *a, **k: None)
    assert "unsloth" not in sys.modules
    try:
        with pytest.raises(Exception, match=f"standby at import: {standby}"):
            loading.load_model(profile="gpu" if vllm else "colab-t4")
    finally:
        sys.modules.pop("unsloth", None)


@pytest.mark.parametrize("raised, fix", [
    ("Unsloth: vLLM standby mode cannot start because `expandable_segments:True` is set in PYTORCH_ALLOC_CONF.",
     "fix: unset PYTORCH_CUDA_ALLOC_CONF / PYTORCH_ALLOC_CONF"),
    ("CUDA error: no kernel image is available", "fix: pass fast_inference=False"),
])
def test_an_engine_that_cannot_start_is_one_line_naming_its_fix(monkeypatch, tmp_path, raised, fix):
    """Unsloth 2026.10.9 refuses vLLM's standby mode where the allocator has expandable segments (a user's
    PYTORCH_CUDA_ALLOC_CONF, or Unsloth imported before the standby flag was set): the fix is the variable, not
    giving up vLLM; any other failed start still points at transformers' generation."""
    from helpers.model import load as loading
    from helpers.model.checks import ModelLoadError
    from helpers.model.vllm_engine import VLLM_ENV
    from helpers.runtime.hardware import Hardware

    gpu = Hardware(cuda=True, gpu_name="GPU", cuda_capability=(9, 0), vram_gib=80.0, bf16=True, cpu_threads=2,
                   colab=False, notebook=False, unsloth=True, vllm=True)
    (tmp_path / "unsloth").mkdir()
    (tmp_path / "unsloth" / "__init__.py").write_text(
        "class FastLanguageModel:\n    @staticmethod\n    def from_pretrained(**kwargs):\n"
        f"        raise RuntimeError({raised!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for key in VLLM_ENV:  # load_model sets them: absent again afterwards
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setattr(loading, "detect", lambda: gpu)
    monkeypatch.setattr(loading, "_check_memory", lambda *a, **k: None)
    try:
        with pytest.raises(ModelLoadError) as err:
            loading.load_model(profile="gpu")
    finally:
        sys.modules.pop("unsloth", None)
    message = str(err.value)
    assert "\n" not in message and "the vLLM engine could not start" in message and fix in message
