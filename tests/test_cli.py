import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers import cli


def notebook(path, *sources):
    cells = [new_code_cell("profile = None\nrun_dir = None", metadata={"tags": ["parameters"]})]
    cells += [new_code_cell(s) for s in sources]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                       "language": "python"}}), path)


def test_help_explains_the_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for word in ("run", "info", "prepare-model", "notebooks"):
        assert word in out


def test_select_notebooks(tmp_path):
    for name in ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in cli.select_notebooks(tmp_path, 2, 3)] == ["02_b.ipynb", "03_c.ipynb"]
    with pytest.raises(SystemExit, match="no notebook numbered 5..6"):
        cli.select_notebooks(tmp_path, 5, 6)


def test_run_executes_in_order_and_stops_at_a_failure(tmp_path, monkeypatch, capsys):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs / "01_ok.ipynb", "import os\nassert os.environ['GRPO_PROFILE'] == profile == 'ci'\nprint('ran', run_dir)")
    notebook(nbs / "02_fails.ipynb", "x = 1", "raise ValueError('boom: bad input')")
    notebook(nbs / "03_never.ipynb", "print('should not run')")
    monkeypatch.setattr(cli, "notebooks_dir", lambda: nbs)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        cli.run_suite("ci", str(out))
    # [4]: numbered as in the executed notebook, after papermill's injected-parameters cell
    assert "02_fails.ipynb failed in cell [4]: ValueError: boom: bad input" in str(stop.value)
    executed = sorted(p.name for p in (out / "notebooks").iterdir())
    assert executed == ["01_ok.ipynb", "02_fails.ipynb"]  # the executed notebooks so far are kept
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"01_ok.ipynb", "02_fails.ipynb"}
    assert "[1/3] 01_ok.ipynb done" in capsys.readouterr().out


def test_seed_reaches_only_the_notebooks_that_declare_it(tmp_path, monkeypatch):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs / "01_plain.ipynb", "assert 'seed' not in globals()")
    cells = [new_code_cell("profile = None\nrun_dir = None\nseed = 3407", metadata={"tags": ["parameters"]}),
             new_code_cell("assert seed == 11, seed")]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                      "language": "python"}}), nbs / "02_seeded.ipynb")
    monkeypatch.setattr(cli, "notebooks_dir", lambda: nbs)
    cli.main(["run", "--profile", "ci", "--out", str(tmp_path / "run"), "--seed", "11"])
    assert sorted(p.name for p in (tmp_path / "run" / "notebooks").iterdir()) == ["01_plain.ipynb", "02_seeded.ipynb"]
