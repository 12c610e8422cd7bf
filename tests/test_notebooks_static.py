"""House rules for the notebooks, checked without running them."""

import json
import os
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


def first_cell() -> str:
    return "".join(cells(NOTEBOOKS[0])[0]["source"])


def test_one_short_first_cell_in_every_notebook():
    """Issue 26 item 3 / issue 29 item 4: at most 5 lines, the same in all eight notebooks; the choice of the GPU
    stack lives in the package (helpers.runtime.install, tested in tests/test_install.py)."""
    first = {p.name: "".join(cells(p)[0]["source"]) for p in NOTEBOOKS}
    assert len(first) == 8 and set(first.values()) == {first_cell()}
    assert len(first_cell().splitlines()) <= 5
    assert "helpers.runtime.install" in first_cell() and "COLAB_" in first_cell()


@pytest.mark.parametrize("colab, installed, expected", [
    (True, False, ["check", "pip --no-deps", "helpers.runtime.install"]),  # Colab, a fresh runtime
    (True, True, ["check"]),  # Colab, the suite already installed (a second notebook in the same runtime)
    (False, False, []),  # anywhere else: nothing runs
])
def test_first_cell_installs_on_colab_only(monkeypatch, colab, installed, expected):
    """The cell run as on Colab (and elsewhere) with subprocess faked: what it runs, and that it changes no
    environment variable (UNSLOTH_VLLM_STANDBY is the package's business now: helpers.model.vllm_engine)."""
    calls = []

    def fake_run(args, **kwargs):
        if args[1:] == ["-c", "import helpers.runtime.install"]:
            calls.append("check")
            return subprocess.CompletedProcess(args, 0 if installed else 1)
        if args[1:6] == ["-m", "pip", "install", "-q", "--no-deps"]:
            assert args[6] == "grpo-notebooks @ git+https://github.com/grpo-notebooks/grpo-notebooks" and kwargs["check"]
            calls.append("pip --no-deps")
        elif args[1:] == ["-m", "helpers.runtime.install"]:
            assert kwargs["check"]
            calls.append("helpers.runtime.install")
        else:
            raise AssertionError(args)
        assert args[0] == sys.executable
        return subprocess.CompletedProcess(args, 0)

    for key in [k for k in os.environ if "COLAB_" in k] + ["UNSLOTH_VLLM_STANDBY"]:
        monkeypatch.delenv(key, raising=False)
    if colab:
        monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setattr(subprocess, "run", fake_run)
    before = dict(os.environ)
    exec(compile(first_cell(), "first-cell", "exec"), {})
    assert calls == expected
    assert dict(os.environ) == before


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_and_a_parameters_cell(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill)"
    assert "profile = None" in "".join(tagged[0]["source"])
    assert "describe(profile)" in "".join(code[-1]["source"]), "every notebook ends with the hardware line"
    assert any(re.search(r"from helpers\.runtime\.hardware import .*\bdescribe\b", "".join(c["source"])) for c in code)
