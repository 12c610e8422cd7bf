import json
import os

import nbformat
import pytest
from model_folders import model_folder
from nbformat.v4 import new_code_cell, new_notebook

from helpers.run import cli, suite


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
    assert [p.name for p in suite.select_notebooks(tmp_path, 2, 3)] == ["02_b.ipynb", "03_c.ipynb"]
    with pytest.raises(SystemExit, match="no notebook numbered 5..6"):
        suite.select_notebooks(tmp_path, 5, 6)


def test_run_executes_in_order_and_stops_at_a_failure(tmp_path, monkeypatch, capsys):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs / "01_ok.ipynb", "import os\nassert os.environ['GRPO_PROFILE'] == profile == 'ci'\nprint('ran', run_dir)")
    notebook(nbs / "02_fails.ipynb", "x = 1", "raise ValueError('boom: bad input')")
    notebook(nbs / "03_never.ipynb", "print('should not run')")
    monkeypatch.setattr(suite, "notebooks_dir", lambda: nbs)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        suite.run_suite("ci", str(out))
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
    monkeypatch.setattr(suite, "notebooks_dir", lambda: nbs)
    cli.main(["run", "--profile", "ci", "--out", str(tmp_path / "run"), "--seed", "11"])
    assert sorted(p.name for p in (tmp_path / "run" / "notebooks").iterdir()) == ["01_plain.ipynb", "02_seeded.ipynb"]


# ---------------------------------------------------------------------------------------------------
# Options, checks before anything runs, resume (issues 16 and 17)


def params_notebook(path, params: str, *sources):
    cells = [new_code_cell(params, metadata={"tags": ["parameters"]})] + [new_code_cell(s) for s in sources]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                       "language": "python"}}), path)


@pytest.fixture()
def nbs(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(suite, "notebooks_dir", lambda: folder)
    return folder


def test_run_help_shows_model_and_parameters_with_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for text in ("--model NAME_OR_FOLDER", "-p NAME=VALUE", "--resume", "--fresh",
                 "grpo-notebooks run --profile cpu --out runs/long -p grpo_steps=60", "--model Qwen/"):
        assert text in out, text


def test_parameters_are_typed_like_the_parameters_cell(tmp_path, nbs, capfd, embedded_path):
    params_notebook(nbs / "01_typed.ipynb", 'profile = None\nsteps = 3\nlr = 0.5\nname = "q8_0"\nflag = False\n'
                    "maybe = None\nmodel_name = None",
                    "assert (steps, lr, name, flag, maybe) == (4, 1.0, '16', True, 1e-4), (steps, lr, name, flag, maybe)\n"
                    "assert type(lr) is float and type(name) is str\n"
                    "assert model_name.endswith('my-model'), model_name")
    params_notebook(nbs / "02_other.ipynb", "profile = None\nsteps = 1", "assert steps == 4 and 'model_name' not in dir()")
    model = tmp_path / "my-model"
    model_folder(model, embedded_path)  # a real (tiny) model folder: --model's pre-check reads its weights
    cli.main(["run", "--profile", "ci", "--out", str(tmp_path / "run"), "-p", "steps=4", "-p", "lr=1", "-p", "name=16",
              "-p", "flag=True", "-p", "maybe=1e-4", "--model", str(model)])
    captured = capfd.readouterr()
    assert "[2/2] 02_other.ipynb done" in captured.out
    assert f"model: {model} (local folder)" in captured.out
    assert "without encryption" not in captured.err  # the kernel runs with CurveZMQ, so ipykernel does not warn
    log = (tmp_path / "run" / "run.log").read_text()
    assert "grpo-notebooks run: profile ci" in log and "[2/2] 02_other.ipynb done" in log


@pytest.mark.parametrize("argv, message", [
    (["-p", "stepz=4"], "no notebook in this run declares a parameter 'stepz'; fix: use one of flag, steps"),
    (["-p", "flag=maybe"], "declares flag as a bool (default False); fix: -p flag=<True or False>"),
    (["-p", "steps=2.5"], "declares steps as a int (default 3)"),
    (["-p", "steps"], "expected name=value"),
    (["-p", "profile=cpu"], "fix: use --profile"),
    (["-p", "resume=True"], "fix: use --resume (continue) or --fresh"),
    (["--seed", "-1"], "--seed -1 is out of range"),
    (["--model", "./no/such/folder"], "no such folder"),
    (["--from", "3", "--to", "2"], "1 <= FROM <= TO"),
])
def test_bad_options_are_refused_before_anything_runs(tmp_path, nbs, argv, message):
    params_notebook(nbs / "01_a.ipynb", "profile = None\nsteps = 3\nflag = False\nresume = None", "raise SystemExit('ran')")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--profile", "ci", "--out", str(out), *argv])
    assert message in str(stop.value) and "\n" not in str(stop.value)
    assert not out.exists(), "a refused run must not create its folder"


def test_bad_run_folders_are_refused_before_anything_runs(tmp_path, nbs, monkeypatch):
    params_notebook(nbs / "01_a.ipynb", "profile = None", "raise SystemExit('ran')")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, message in ((afile, "is a file, not a folder"), (afile / "sub", "cannot be written")):
        with pytest.raises(SystemExit, match=message):
            cli.main(["run", "--profile", "ci", "--out", str(out)])
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as root, chmod cannot make a folder read-only
    with pytest.raises(SystemExit, match="cannot be written .*not writable"):
        cli.main(["run", "--profile", "ci", "--out", str(readonly / "run")])
    monkeypatch.undo()
    (readonly / "timings.json").write_text('{"01_a.ipynb": 1.5,')  # cut short
    with pytest.raises(SystemExit, match="timings.json is not readable JSON .*fix: move it away"):
        cli.main(["run", "--profile", "ci", "--out", str(readonly)])
    (readonly / "timings.json").write_text('{"01_a.ipynb": true}')  # not seconds: refused before, as report does
    with pytest.raises(SystemExit, match="timings.json holds something other than seconds per notebook"):
        cli.main(["run", "--profile", "ci", "--out", str(readonly)])
    monkeypatch.setenv("GRPO_PROFILE", "bogus")
    with pytest.raises(SystemExit, match="GRPO_PROFILE='bogus' is not a profile"):
        cli.main(["run", "--out", str(tmp_path / "x")])


def test_json_files_are_written_atomically(tmp_path):
    from helpers.run.state import write_json

    path = tmp_path / "timings.json"
    write_json(path, {"a": 1.0})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})  # fails half-way through serialising
    assert json.loads(path.read_text()) == {"a": 1.0}  # the old file is whole, and no temporary is left
    assert [p.name for p in tmp_path.iterdir()] == ["timings.json"]


def test_model_plan_says_loudly_when_the_embedded_model_replaces_a_hub_model(monkeypatch):
    from helpers.run import checks as run_checks

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # helpers.runtime.hardware.hub_reachable: False at once
    name, line = run_checks.model_plan(None, "gpu")
    assert name is None and line.startswith("!!!") and "INSTEAD" in line and "unsloth/Qwen2.5-3B-Instruct" in line
    assert run_checks.model_plan(None, "ci") == (None, "embedded SmolLM2-135M-Instruct (offline), the ci profile's model")
    with pytest.raises(SystemExit, match="hub is not reachable to download it; fix:"):
        run_checks.model_plan("Qwen/Qwen2.5-0.5B-Instruct", "gpu")


def test_checkpoints_are_refused_without_resume_or_fresh(tmp_path, nbs):
    params_notebook(nbs / "01_a.ipynb", "profile = None", "open('ran-01', 'a').write('x')")
    params_notebook(nbs / "02_train.ipynb", "profile = None\nrun_dir = None\nresume = None",
                    "import json, os\nopen(os.path.join(run_dir, 'resume-given'), 'w').write(json.dumps(resume))")
    out = tmp_path / "run"
    ckpt = out / "grpo" / "checkpoints" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--profile", "ci", "--out", str(out)])
    assert "holds checkpoints of an earlier run" in str(stop.value) and "--resume" in str(stop.value)
    assert "--fresh" in str(stop.value) and not (out / "notebooks").exists() and ckpt.is_dir()
    cli.main(["run", "--profile", "ci", "--out", str(out), "--fresh"])
    assert json.loads((out / "resume-given").read_text()) is False  # the notebook's train_grpo moves them aside


def test_resume_skips_the_completed_notebooks_and_reuses_the_options(tmp_path, nbs):
    flag = tmp_path / "broken"
    flag.write_text("x")
    counter = "import os\nopen(os.path.join(run_dir, 'ran'), 'a').write(NAME + f' {steps}\\n')"
    for name, extra in (("01_a", ""), ("02_b", f"assert not os.path.exists({str(flag)!r}), 'broken'"), ("03_c", "")):
        params_notebook(nbs / f"{name}.ipynb", "profile = None\nrun_dir = None\nsteps = 1",
                        counter.replace("NAME", repr(name)) + "\n" + extra)
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="02_b.ipynb failed .*--resume"):
        cli.main(["run", "--profile", "ci", "--out", str(out), "-p", "steps=7", "--to", "3"])
    state = json.loads((out / "state.json").read_text())
    assert state["completed"] == ["01_a.ipynb"] and state["failed"] == "02_b.ipynb"
    flag.unlink()
    cli.main(["run", "--out", str(out), "--resume"])
    assert (out / "ran").read_text().splitlines() == ["01_a 7", "02_b 7", "02_b 7", "03_c 7"]
    state = json.loads((out / "state.json").read_text())
    assert state["completed"] == ["01_a.ipynb", "02_b.ipynb", "03_c.ipynb"] and state["profile"] == "ci"
    assert "resuming: 01_a.ipynb already completed; continuing at 02_b.ipynb" in (out / "run.log").read_text()


def test_report_command_rebuilds_and_prints(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "grpo").mkdir(parents=True)
    rows = [{"step": i, "time": float(i), "reward": i / 10, "rewards/format_compliance/mean": i / 10,
             "rewards/accuracy/mean": 0.0} for i in range(1, 11)]
    (run / "grpo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "timings.json").write_text(json.dumps({"07_grpo_training.ipynb": 120.0}))
    assert cli.main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "# GRPO run report" in out
    assert "GRPO learning over 10 steps (first fifth → last fifth): reward 0.15 → 0.95, format 15% → 95%" in out
    assert "time: 2.0 min in notebooks" in out and f"report: {run.resolve() / 'report.md'}" in out
    with pytest.raises(SystemExit, match="holds no run"):
        cli.main(["report", str(tmp_path)])


def test_info_lists_the_optional_parts(capsys):
    cli.main(["info"])
    out = capsys.readouterr().out
    for part in ("GPU (CUDA)", "bf16", "Unsloth", "vLLM", "Chromium"):
        assert f"  {part}  " in out or f"  {part} " in out, part
    assert out.count("->") == 5


def test_papermill_sees_every_parameter_of_every_notebook():
    """papermill skips a parameters-cell line holding two '=' (e.g. '>=' in its comment): -p could then not set it."""
    import papermill as pm

    for nb in suite.select_notebooks(suite.notebooks_dir(), 1, 99):
        cell = next(c for c in nbformat.read(nb, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        names = [line.split("=")[0].strip() for line in cell.source.splitlines()
                 if "=" in line and not line.lstrip().startswith("#")]
        assert list(pm.inspect_notebook(str(nb))) == names, f"{nb.name}: a parameter papermill cannot read"


def test_every_p_name_reaches_one_notebook_only():
    """`-p NAME=VALUE` goes to every notebook declaring NAME, so a name two notebooks declare changes both: `-p
    learning_rate=5e-5` once set the SFT warm-up's rate as well as GRPO's, and `-p temperature=1.0` (then in 07
    and 08) made notebook 08 evaluate by sampling. Only the run-wide names the command sets itself may repeat."""
    import papermill as pm

    from helpers.run.checks import RESERVED

    holders = {}
    for nb in suite.select_notebooks(suite.notebooks_dir(), 1, 99):
        for name in set(pm.inspect_notebook(str(nb))) - set(RESERVED):
            holders.setdefault(name, []).append(nb.name)
    shared = {name: nbs for name, nbs in holders.items() if len(nbs) > 1}
    assert not shared, f"-p names declared by several notebooks: {shared}; give each a stage prefix (sft_, grpo_, eval_)"
    assert {"sft_learning_rate", "grpo_learning_rate", "grpo_temperature", "eval_temperature"} <= set(holders)


def test_the_console_script_turns_the_suites_errors_into_one_line(monkeypatch):
    from helpers.files.disk import DiskFullError
    from helpers.model.checks import ModelLoadError
    from helpers.run import cli

    for error in (ModelLoadError("cannot download 'x': the hub is not reachable; fix: pass a folder."),
                  DiskFullError("no space left in /runs/x (2 MiB free, 40 MiB needed); fix: free space.")):
        monkeypatch.setattr(cli, "main", lambda error=error: (_ for _ in ()).throw(error))
        with pytest.raises(SystemExit) as exit_info:
            cli.entry()
        assert str(exit_info.value).startswith("grpo-notebooks: ") and "\n" not in str(exit_info.value)
    monkeypatch.setattr(cli, "main", lambda: (_ for _ in ()).throw(KeyError("a bug")))
    with pytest.raises(KeyError):  # anything else is a bug: its traceback stays
        cli.entry()
