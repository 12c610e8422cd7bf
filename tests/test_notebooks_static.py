"""House rules for the notebooks, checked without running them."""

import json
import re
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
    assert "COLAB_" in reference and "grpo-notebooks[gpu]" in reference
    assert {name: src == reference for name, src in first.items()} == {name: True for name in first}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_and_a_parameters_cell(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill)"
    assert "profile = None" in "".join(tagged[0]["source"])
    assert "runtime.describe(" in "".join(code[-1]["source"]), "every notebook ends with the hardware line"
