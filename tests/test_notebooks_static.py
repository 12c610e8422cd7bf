"""House rules for the notebooks, checked without running them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def test_the_suite_is_there():
    names = [p.name for p in NOTEBOOKS]
    assert names[:2] == ["01_model_loading.ipynb", "02_lora.ipynb"]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", n) for n in names), names


def test_identical_first_install_cell():
    first = {p.name: "".join(cells(p)[0]["source"]) for p in NOTEBOOKS}
    reference = first[NOTEBOOKS[0].name]
    assert "COLAB_" in reference and "grpo-notebooks[gpu]" in reference and "grpo-notebooks[t4]" in reference
    assert {name: src == reference for name, src in first.items()} == {name: True for name in first}


@pytest.mark.parametrize("smi, torch, extra", [
    ("7.5, 570.124.06\n", "2.11.0+cu128", "t4"),  # Colab's T4 (Colab: CUDA 12.8 image, 2026-08)
    ("7.5, 580.82.07\n", "2.11.0", "t4"),  # a T4 with CUDA 13: still no vLLM (benchmarks/t4.md)
    ("8.9, 570.124.06\n", "2.11.0+cu128", "t4"),  # an L4 whose driver predates CUDA 13
    ("8.0, 580.82.07\n", "2.11.0+cu128", "t4"),  # driver fine, but torch is a CUDA 12 build
    ("9.0, 580.159.04\n9.0, 580.159.04\n", "2.11.0", "gpu"),  # two H200s as on the GPU machine
    (FileNotFoundError, "2.11.0+cpu", "t4"),  # no nvidia-smi: a CPU runtime
])
def test_install_cell_picks_the_extra_for_the_gpu(monkeypatch, smi, torch, extra):
    """The first cell, run as on Colab with a faked nvidia-smi, torch and pip, installs the right extra."""
    import importlib.metadata

    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        if args[0] == "nvidia-smi":
            if isinstance(smi, type):
                raise smi(args[0])
            return subprocess.CompletedProcess(args, 0, stdout=smi)
        return subprocess.CompletedProcess(args, 1 if "import helpers" in args else 0)  # not installed yet

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"torch": torch}[name])
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "1")  # restored afterwards, whatever the cell sets
    exec(compile("".join(cells(NOTEBOOKS[0])[0]["source"]), "install-cell", "exec"), {})
    pip = [args for args in calls if args[:4] == [sys.executable, "-m", "pip", "install"]]
    assert len(pip) == 1 and pip[0][-1].startswith(f"grpo-notebooks[{extra}] @ git+https://"), calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_and_a_parameters_cell(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill)"
    assert "profile = None" in "".join(tagged[0]["source"])
    assert "describe(profile)" in "".join(code[-1]["source"]), "every notebook ends with the hardware line"
