"""Hostile use of the command and its run folder (issue 27: work lost, late failures).

Each test failed on commit 5377e78: ``--out`` onto the source notebooks ran into them; two runs shared a folder; a
full disk left a truncated executed notebook and a chained traceback; a damaged only checkpoint restarted GRPO at
step 1 silently; ``-p`` values of parameters whose default is None were not checked; damaged report inputs and
``state.json`` fields gave raw tracebacks. Disk-full and read-only cases use a real small tmpfs, mounted in a user
and mount namespace (``unshare``); they skip where that is not allowed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from io import StringIO
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers.files.lock import OWNER_NAME, FolderInUseError, folder_lock
from helpers.run import checks as rc
from helpers.run import cli, suite
from helpers.run.params import MERGED_DTYPES, PARAMS, check_value
from helpers.run.progress import Follower, RunLog
from helpers.runtime.notices import NOTICES_NAME
from helpers.runtime.settings import LEVELS, LORA_RANKS
from helpers.train.checkpoints import CheckpointsExistError, choose_resume

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def notebook(path: Path, params: str, *sources: str) -> None:
    cells = [new_code_cell(params, metadata={"tags": ["parameters"]})] + [new_code_cell(s) for s in sources]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                       "language": "python"}}), path)


@pytest.fixture()
def nbs(tmp_path, monkeypatch):
    folder = tmp_path / "suite" / "notebooks"
    folder.mkdir(parents=True)
    monkeypatch.setattr(suite, "notebooks_dir", lambda: folder)
    return folder


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text.startswith("grpo-notebooks: "), text
    return text


DRIVER = """
import sys
from pathlib import Path
from helpers.run import cli, suite
folder = Path(sys.argv[1])
suite.notebooks_dir = lambda: folder
sys.argv = ["grpo-notebooks", *sys.argv[2:]]
sys.exit(cli.entry())
"""


def cli_process(tmp_path: Path, nbs: Path, *args: str, **kwargs) -> subprocess.Popen:
    """``grpo-notebooks ARGS`` in a process of its own, with the fake notebooks of ``nbs``."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "GRPO_PROFILE": "ci", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([PYTHON, str(driver), str(nbs), *args], env=env, text=True, **kwargs)


# ---------------------------------------------------------------------------------------------------
# 1. --out onto the source notebooks


def test_out_where_the_executed_notebooks_would_overwrite_the_source_is_refused(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    source = repo / "notebooks"
    source.mkdir(parents=True)
    notebook(source / "01_a.ipynb", "profile = None", "print('ran')")
    before = (source / "01_a.ipynb").read_bytes()
    monkeypatch.setattr(suite, "notebooks_dir", lambda: source)
    monkeypatch.chdir(repo)
    (tmp_path / "link").symlink_to(repo)
    for out, how in ((".", "which is the suite's own notebooks folder"), (str(repo), "which is the suite's own"),
                     (str(tmp_path / "link"), "which is the suite's own"), ("notebooks", "which is inside the suite's"),
                     ("notebooks/run", "which is inside the suite's")):
        with pytest.raises(SystemExit) as stop:
            cli.main(["run", "--profile", "ci", "--out", out])
        assert how in one_line(stop) and "fix: pass a run folder outside it" in str(stop.value), out
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--profile", "ci", "--out", ""])
    assert "--out is empty; fix:" in one_line(stop)
    # a run folder whose notebooks/ holds the source (a clone inside <run>/notebooks/)
    inner = tmp_path / "run" / "notebooks" / "clone" / "notebooks"
    shutil.copytree(source, inner)
    monkeypatch.setattr(suite, "notebooks_dir", lambda: inner)
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--profile", "ci", "--out", str(tmp_path / "run")])
    assert "which holds the suite's own notebooks folder" in one_line(stop)
    assert (source / "01_a.ipynb").read_bytes() == before and sorted(p.name for p in source.iterdir()) == ["01_a.ipynb"]
    assert not (repo / "state.json").exists() and not (repo / "run.log").exists()


# ---------------------------------------------------------------------------------------------------
# 2. One run per folder: a lock naming the holder

HOLDER = """
import sys, time
from helpers.files.lock import folder_lock
with folder_lock(sys.argv[1], command="grpo-notebooks run --out the-first"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([PYTHON, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def test_a_second_process_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(FolderInUseError) as busy:
            with folder_lock(tmp_path):
                pytest.fail("two processes held the lock")
        text = str(busy.value)
        assert f"pid {proc.pid} on host {socket.gethostname()}, started 20" in text, text
        assert "grpo-notebooks run --out the-first" in text and "fix: " in text and "\n" not in text
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean-up: the owner record stays behind
        proc.wait()
    assert json.loads((tmp_path / OWNER_NAME).read_text())["pid"] == proc.pid
    with folder_lock(tmp_path, command="second") as lock:
        assert lock.taken_over["pid"] == proc.pid
        assert f"it was left by pid {proc.pid}" in lock.takeover_line and "ended without releasing it" in lock.takeover_line
        assert json.loads((tmp_path / OWNER_NAME).read_text())["command"] == "second"
    assert not (tmp_path / OWNER_NAME).exists()


def test_the_lock_is_released_on_ctrl_c_and_on_errors(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    assert not (tmp_path / OWNER_NAME).exists()  # released cleanly: nothing to take over
    with pytest.raises(ValueError):
        with folder_lock(tmp_path) as lock:
            assert lock.taken_over is None
            raise ValueError("boom")
    with folder_lock(tmp_path) as lock:
        assert lock.taken_over is None


def test_two_runs_into_one_folder_the_second_is_refused_before_it_writes(tmp_path, nbs):
    release = tmp_path / "release"
    notebook(nbs / "01_wait.ipynb", "profile = None",  # waits for the test (at most 60 s: never hangs the suite)
             f"import os, time\nend = time.time() + 60\nwhile not os.path.exists({str(release)!r}) and time.time() < end:"
             "\n    time.sleep(0.1)")
    out = tmp_path / "run"
    first = cli_process(tmp_path, nbs, "run", "--profile", "ci", "--out", str(out), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while "01_wait.ipynb ..." not in ((out / "run.log").read_text() if (out / "run.log").exists() else ""):
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.2)
        log_before = (out / "run.log").read_text()
        state_before = (out / "state.json").read_text()
        with pytest.raises(SystemExit) as stop:
            cli.main(["run", "--profile", "ci", "--out", str(out), "--fresh"])
        text = one_line(stop)
        assert f"is in use by another run (pid {first.pid} on host {socket.gethostname()}" in text, text
        assert f"run --profile ci --out {out}" in text and "use another --out" in text
        assert (out / "run.log").read_text() == log_before and (out / "state.json").read_text() == state_before
    finally:
        release.write_text("go")
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert json.loads((out / "state.json").read_text())["completed"] == ["01_wait.ipynb"]


# ---------------------------------------------------------------------------------------------------
# 3. A full disk (a real 256 KiB tmpfs) and a read-only run folder


def _namespace_ok() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"],
                           capture_output=True)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _namespace_ok(), reason="needs unshare and user namespaces to mount a "
                                     "small tmpfs (a real full / read-only disk)")


def in_small_disk(tmp_path: Path, script: str, size: str = "256k", timeout: int = 300) -> dict:
    """Run ``script`` (Python; ``MNT`` is a fresh tmpfs of ``size``, ``RESULT`` a dict it fills) in a mount namespace;
    returns ``RESULT``."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = tmp_path / "result.json"
    body = (f"import json, os, sys\nfrom pathlib import Path\nMNT = Path({str(mnt)!r})\nRESULT = {{}}\ntry:\n"
            + textwrap.indent(textwrap.dedent(script), "    ")
            + f"\nfinally:\n    Path({str(result)!r}).write_text(json.dumps(RESULT))\n")
    (tmp_path / "inside.py").write_text(body)
    env = {**os.environ, "GRPO_PROFILE": "ci", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           f"mount -t tmpfs -o size={size} tmpfs {mnt} && exec {PYTHON} {tmp_path / 'inside.py'}"],
                          capture_output=True, text=True, env=env, timeout=timeout)
    assert result.exists(), proc.stderr[-3000:]
    return json.loads(result.read_text())


FULL_DISK = """
import traceback
from helpers.run import cli, suite
suite.notebooks_dir = lambda: Path(NBS)
run = MNT / "run"

def attempt(*args):
    try:
        cli.main(["run", "--profile", "ci", "--out", str(run), *args])
        return "ok"
    except SystemExit as exc:
        return str(exc.code)
    except BaseException:
        return "RAW " + traceback.format_exc()

def valid(path):
    try:
        json.loads(path.read_text())
        return True
    except ValueError:
        return False

RESULT["first"] = attempt()
RESULT["notebooks"] = {p.name: valid(p) for p in (run / "notebooks").glob("*.ipynb")}
RESULT["state_valid"] = valid(run / "state.json")
os.remove(FLAG)
os.remove(run / "filler")
RESULT["second"] = attempt("--resume")
RESULT["completed"] = json.loads((run / "state.json").read_text())["completed"]
RESULT["outputs"] = "y" * 100 in (run / "notebooks" / "01_fill.ipynb").read_text()
"""


@needs_namespace
def test_a_full_disk_stops_in_one_line_keeps_the_notebook_whole_and_resume_continues(tmp_path, nbs):
    flag = tmp_path / "fill"
    flag.write_text("x")
    fill = (f"import os\nif os.path.exists({str(flag)!r}):\n"
            "    fd = os.open(os.path.join(run_dir, 'filler'), os.O_WRONLY | os.O_CREAT)\n"
            "    try:\n        while True:\n            os.write(fd, b'x' * 4096)\n"
            "    except OSError:\n        pass\n    os.close(fd)")
    notebook(nbs / "01_fill.ipynb", "profile = None\nrun_dir = None", fill, "print('y' * 20000)")
    notebook(nbs / "02_after.ipynb", "profile = None", "print('two')")
    got = in_small_disk(tmp_path, f"NBS = {str(nbs)!r}\nFLAG = {str(flag)!r}\n" + FULL_DISK)
    first = got["first"]
    assert not first.startswith("RAW") and "\n" not in first, first
    assert first.startswith("grpo-notebooks: 01_fill.ipynb stopped: the disk is full: writing the executed notebook "
                            "01_fill.ipynb to "), first
    assert " free, more space needed); fix: free space on that disk" in first
    assert first.endswith("continue with: grpo-notebooks run --out " + str(tmp_path / "mnt" / "run") + " --resume")
    assert all(got["notebooks"].values()), got["notebooks"]  # the last whole save, never a truncated file
    assert got["state_valid"]
    assert got["second"] == "ok" and got["completed"] == ["01_fill.ipynb", "02_after.ipynb"] and got["outputs"]


READ_ONLY = """
import subprocess
run = MNT / "run"
(run / "grpo").mkdir(parents=True)
(run / "grpo" / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "reward": i / 10}) + "\\n" for i in range(1, 6)))
(run / "timings.json").write_text(json.dumps({"07_grpo_training.ipynb": 60.0}))
subprocess.run(["mount", "-o", "remount,ro", str(MNT)], check=True)
from helpers.run import cli
try:
    cli.main(["report", str(run)])
    RESULT["report"] = "ok"
except SystemExit as exc:
    RESULT["report"] = str(exc.code)
except BaseException as exc:
    RESULT["report"] = f"RAW {type(exc).__name__}: {exc}"
"""


@needs_namespace
def test_report_on_a_read_only_run_folder_is_one_line(tmp_path):
    got = in_small_disk(tmp_path, READ_ONLY, size="1m")
    text = got["report"]
    assert text.startswith("grpo-notebooks: ") and "\n" not in text, text
    assert f"{tmp_path / 'mnt' / 'run'} cannot be written (Read-only file system)" in text
    assert "fix: make it writable, or copy the run folder somewhere writable" in text


def test_papermill_saves_inside_the_run_folder_go_through_the_atomic_handler(tmp_path):
    """papermill picks an I/O handler by str.startswith on the path: if that changes upstream, saves are no longer
    atomic and this fails."""
    from papermill.iorw import LocalHandler, papermill_io, write_ipynb

    from helpers.run.executed import AtomicLocalHandler, atomic_notebook_saves

    folder = atomic_notebook_saves(tmp_path / "run" / "notebooks")
    assert isinstance(papermill_io.get_handler(str(folder / "01_a.ipynb")), AtomicLocalHandler)
    assert isinstance(papermill_io.get_handler(str(tmp_path / "elsewhere.ipynb")), LocalHandler)
    nb = new_notebook(cells=[new_code_cell("1")])
    write_ipynb(nb, str(folder / "01_a.ipynb"))
    assert nbformat.read(folder / "01_a.ipynb", as_version=4).cells[0].source == "1"
    assert [p.name for p in folder.iterdir()] == ["01_a.ipynb"]  # no temporary file left


# ---------------------------------------------------------------------------------------------------
# 4. Resuming GRPO past a damaged checkpoint says so, with the steps lost


def _checkpoint(folder: Path, step: int, *, whole: bool = True) -> Path:
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(path / "adapter_model.safetensors"))
    if whole:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def _metrics(run: Path, steps: int) -> None:
    (run / "grpo").mkdir(parents=True, exist_ok=True)
    (run / "grpo" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i, "time": float(i), "reward": 0.1}) + "\n" for i in range(1, steps + 1)))


def test_a_damaged_only_checkpoint_is_said_on_the_terminal_and_in_the_log(tmp_path, capsys):
    run = tmp_path / "run"
    _metrics(run, 5)
    _checkpoint(run / "grpo" / "checkpoints", 4, whole=False)  # a kill while saving: no trainer_state.json
    stream = StringIO()
    with Follower(run, RunLog(run / "run.log", stream), interval=0.05):
        plan = choose_resume(run, True)
    assert plan.checkpoint is None and plan.steps_lost == 5 and plan.reached == 5
    assert plan.set_aside == [run / "grpo" / "checkpoints" / "damaged-checkpoint-4"] and plan.set_aside[0].is_dir()
    for needle in ("checkpoint-4 (trainer_state.json missing)", "moved aside to damaged-checkpoint-4",
                   "no complete checkpoint is left: GRPO starts again at step 1: 5 steps lost"):
        assert needle in plan.message, plan.message
    assert plan.message in stream.getvalue() and plan.message in (run / "run.log").read_text()
    assert plan.message in capsys.readouterr().out  # the notebook's own output too
    assert "\n" not in plan.message


def test_resume_falls_back_to_an_older_checkpoint_and_counts_the_steps(tmp_path):
    run = tmp_path / "run"
    _metrics(run, 7)
    folder = run / "grpo" / "checkpoints"
    _checkpoint(folder, 2)
    _checkpoint(folder, 6)
    (folder / "checkpoint-6" / "adapter_model.safetensors").write_bytes(b"\x00" * 10)  # truncated weights
    other = choose_resume(run, True, main=False)  # a second process (DDP): moves nothing, says nothing
    assert other.checkpoint == folder / "checkpoint-2" and other.set_aside == [] and other.message is None
    assert not (run / NOTICES_NAME).exists() and (folder / "checkpoint-6").is_dir()
    plan = choose_resume(run, True)
    assert plan.checkpoint == folder / "checkpoint-2" and plan.steps_lost == 5
    assert "resuming from checkpoint-2 instead: 5 steps lost (step 7 had been reached)" in plan.message
    notice = json.loads((run / NOTICES_NAME).read_text().splitlines()[-1])
    assert notice["text"] == plan.message
    plan = choose_resume(run, True)  # nothing damaged any more: an ordinary resume
    assert plan.message == "GRPO resumes from checkpoint-2 (step 7 had been reached: 5 steps after it are done again)"
    with pytest.raises(CheckpointsExistError):
        choose_resume(run, None)
    plan = choose_resume(run, False)
    assert plan.checkpoint is None and plan.earlier_run is not None and (plan.earlier_run / "checkpoints").is_dir()
    assert not folder.exists() and "GRPO starts over (resume=False)" in plan.message


def test_the_command_shows_a_notebooks_resume_notice(tmp_path, nbs, capsys):
    notebook(nbs / "01_grpo.ipynb", "profile = None\nrun_dir = None\nresume = None",
             "from helpers.train.checkpoints import choose_resume\nplan = choose_resume(run_dir, resume)")
    out = tmp_path / "run"
    _metrics(out, 3)
    _checkpoint(out / "grpo" / "checkpoints", 2, whole=False)
    (out / "state.json").write_text(json.dumps({"profile": "ci", "params": [], "completed": [], "first": 1, "last": 1}))
    cli.main(["run", "--out", str(out), "--resume"])
    printed = capsys.readouterr().out
    line = "!!! GRPO resume: checkpoint-2 (trainer_state.json missing) in "
    assert line in printed and "GRPO starts again at step 1: 3 steps lost" in printed
    assert line in (out / "run.log").read_text()


# ---------------------------------------------------------------------------------------------------
# 5. -p values checked before any notebook starts, in the user's own names


@pytest.fixture(scope="module")
def declared():
    import papermill as pm

    return {nb.name: pm.inspect_notebook(str(nb)) for nb in suite.select_notebooks(REPO / "notebooks", 1, 99)}


@pytest.mark.parametrize("pair, needle", [
    ("grpo_steps=abc", "grpo_steps in 07_grpo_training.ipynb (GRPO optimizer steps) takes an integer >= 1"),
    ("grpo_steps=-5", "takes an integer >= 1"), ("grpo_steps=0", "takes an integer >= 1"),
    ("grpo_steps=1.5", "takes an integer >= 1"), ("grpo_learning_rate=nan", "takes a number in (0, 0.001]"),
    ("grpo_learning_rate=-1", "takes a number in (0, 0.001]"), ("grpo_learning_rate=inf", "(0, 0.001]"),
    ("num_generations=1", "takes an integer >= 2"), ("group_filter=bogus", "takes one of off, drop, resample"),
    ("eval_problems=0", "takes an integer >= 1"), ("lora_rank=0", "takes one of 8, 16, 32, 64, 128"),
    ("train_levels=4", "takes one of 1, 2, 3 (several: 1,2)"), ("max_completion_length=256", "leaves no room for the prompt in max_seq_length=256"),
    ("sft_learning_rate=0", "(0, 0.01]"), ("beta=-1", "takes a number >= 0"), ("grpo_temperature=0", "(0, 10]"),
    ("merged_dtype=int8", "takes one of bfloat16"), ("gsm8k_path=/nonexistent/gsm8k", "no such file or folder"),
    ("gsm8k_path=/", "has no train.jsonl"),
    ("samples_per_problem=4", "greedy decoding gives the same completion every time"),
])
def test_bad_p_values_are_refused_in_the_users_names(declared, pair, needle):
    name = pair.partition("=")[0]
    with pytest.raises(SystemExit) as stop:
        rc.parse_parameters([pair], declared, "ci")
    text = one_line(stop)
    assert needle in text and f"-p {name}=" in text and "fix: " in text, text
    assert "max_steps" not in text


def test_good_p_values_reach_the_notebooks_typed(declared, tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text('{"question": "1+1?", "answer": "2\\n#### 2"}\n')
    monkeypatch.chdir(tmp_path)
    values = rc.parse_parameters(["grpo_steps=40", "grpo_learning_rate=5e-5", "train_levels=1,2", "group_filter=None",
                                  "gsm8k_path=gsm8k", "lora_rank=16", "eval_temperature=0.8", "samples_per_problem=4"],
                                 declared, "ci")
    assert values["07_grpo_training.ipynb"] == {"grpo_steps": 40, "grpo_learning_rate": 5e-5, "train_levels": [1, 2],
                                                "group_filter": None}
    assert values["04_dataset.ipynb"]["gsm8k_path"] == str(tmp_path / "gsm8k")  # absolute: notebooks run elsewhere
    assert type(values["07_grpo_training.ipynb"]["grpo_steps"]) is int and values["02_lora.ipynb"]["lora_rank"] == 16


def test_a_gsm8k_path_that_loading_would_refuse_is_refused_before_any_notebook(declared, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"question": "caf\xe9?", "answer": "#### 1"}\n'.encode("latin-1"))
    for path, needle in [(empty, "no usable row"), (latin, "UTF-8")]:
        with pytest.raises(SystemExit) as stop:
            rc.parse_parameters([f"gsm8k_path={path}"], declared, "ci")
        text = one_line(stop)
        assert needle in text and "-p gsm8k_path=" in text and "fix: " in text, text


def test_a_bad_p_value_stops_the_command_before_any_notebook(tmp_path, monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a notebook started"))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--profile", "ci", "--out", str(out), "-p", "grpo_steps=abc"])
    assert "-p grpo_steps=abc: grpo_steps in 07_grpo_training.ipynb" in one_line(stop) and not out.exists()
    out.mkdir()  # --resume replays a bad value stored by an older version: refused, naming where it comes from
    (out / "state.json").write_text(json.dumps({"profile": "ci", "params": ["num_generations=1"], "completed": []}))
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--out", str(out), "--resume"])
    text = one_line(stop)
    assert "-p num_generations=1" in text and f"replayed from {out / 'state.json'} by --resume" in text
    assert "give -p num_generations=<a good value> with --resume" in text


def test_stage_checks_p_values_against_the_profile_before_running(tmp_path, monkeypatch):
    """``grpo-notebooks stage 7`` (accelerate's entry) refuses a bad -p value as ``run`` does, before any cell."""
    from helpers.run import stage

    monkeypatch.setattr(stage, "run_notebook", lambda *a, **k: pytest.fail("a cell ran"))
    for profile in (["--profile", "ci"], []):
        with pytest.raises(SystemExit) as stop:
            cli.main(["stage", "7", "--out", str(tmp_path / "run"), *profile, "-p", "grpo_steps=abc"])
        assert "-p grpo_steps=abc: grpo_steps in 07_grpo_training.ipynb" in one_line(stop)
    monkeypatch.setenv("GRPO_PROFILE", "bogus")
    with pytest.raises(SystemExit) as stop:
        cli.main(["stage", "7", "--out", str(tmp_path / "run")])
    assert "bogus" in one_line(stop)


def test_a_gsm8k_dir_variable_without_the_split_a_notebook_reads_stops_the_command_first(tmp_path, monkeypatch):
    """$GRPO_GSM8K_DIR naming a folder with test.jsonl only: refused before notebook 01, not in notebook 04."""
    import papermill

    class Started(Exception):
        pass

    def started(*args, **kwargs):
        raise Started

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a notebook started"))
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    (folder / "test.jsonl").write_text('{"question": "1+1?", "answer": "2\\n#### 2"}\n')
    monkeypatch.setenv("GRPO_GSM8K_DIR", str(folder))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--profile", "ci", "--out", str(out)])
    text = one_line(stop)
    assert "$GRPO_GSM8K_DIR" in text and "has no train.jsonl" in text and "fix: " in text and not out.exists()
    (folder / "train.jsonl").write_text((folder / "test.jsonl").read_text())
    monkeypatch.setattr(papermill, "execute_notebook", started)  # now every check passes and 01 starts
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--profile", "ci", "--out", str(out)])
    assert "01_model_loading.ipynb failed" in one_line(stop) and "Started" in one_line(stop)


def test_every_parameter_without_a_type_has_an_entry(declared):
    """A parameter whose default is None cannot be type-checked from its default: a new one must get an entry."""
    names = {name for specs in declared.values() for name in specs}
    untyped = {name for specs in declared.values() for name, spec in specs.items()
               if spec["default"] == "None" and name not in rc.RESERVED}
    assert untyped - set(PARAMS) == set(), "add these to helpers.run.params.PARAMS"
    assert set(PARAMS) - names == set(), "entries of helpers.run.params.PARAMS that no notebook declares"


def _accepted_by_code(name: str, value) -> bool:
    """Whether the code a parameter reaches accepts ``value`` (``PARAMS[name].becomes``)."""
    from helpers.evaluate.evaluation import check_sets
    from helpers.generate.sampling import check_sampling
    from helpers.run.params import SETTINGS_FIELDS
    from helpers.runtime.profiles import profile_settings
    from helpers.train.group_filter import GroupFilter

    try:
        if name in SETTINGS_FIELDS and name not in ("eval_problems", "eval_max_new_tokens", "train_levels",
                                                    "group_filter", "lora_rank"):
            profile_settings("ci", **{name: value})  # the profile table: what notebooks 06 and 07 hand to TRL
        elif name == "eval_problems":
            from helpers.data.synthetic import synthetic_dataset

            check_sets({"synthetic": synthetic_dataset(2, split="test")}, value)
        elif name == "eval_max_new_tokens":
            check_sampling(0.0, 1, value)
        elif name == "samples_per_problem":
            check_sampling(0.8, value, 1)
        elif name == "eval_temperature":
            check_sampling(value, 1, 1)
        elif name == "group_filter":
            GroupFilter(mode=value)
        elif name == "train_levels":
            from helpers.data.synthetic import synthetic_dataset

            synthetic_dataset(3, difficulty=tuple(value))
        elif name == "merged_dtype":
            from helpers.save.merged import parse_torch_dtype

            parse_torch_dtype(value)
        elif name == "lora_rank":

            return value in LORA_RANKS  # add_lora's own check (it needs a model to run)
        else:
            raise KeyError(name)
    except ValueError:
        return False
    return True


def _accepted_by_table(name: str, value) -> bool:
    raw = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    try:
        check_value(name, raw, "ci")
    except ValueError:
        return False
    return True


# grpo_train_problems, n_synthetic: synthetic_dataset(n) takes 0 (an empty dataset, or for grpo_problems "the
# default"): the table asks for >= 1 on purpose. gsm8k_path: checked as load_problems would read it (below). beta: TRL's GRPOConfig takes
# any number; a negative KL penalty would reward drifting away, refused on purpose.
STRICTER = {"grpo_train_problems", "n_synthetic", "gsm8k_path", "beta"}


@pytest.mark.parametrize("name", sorted(set(PARAMS) - STRICTER))
def test_each_range_is_the_one_the_code_accepts(name):
    spec = PARAMS[name]
    if spec.choices:
        candidates = [*spec.choices, "bogus" if spec.kind == "text" else 0, 4 if spec.kind == "levels" else 3]
        candidates = [(c,) if spec.kind == "levels" and not isinstance(c, str) else c for c in candidates]
    else:
        low, high = spec.bounds("ci")
        step = 1 if spec.kind == "int" else (abs(low or high or 1) * 1e-3 or 1e-9)
        candidates = [low, low - step, low + step] + ([high, high + step, high - step] if high is not None else [])
        candidates += [] if spec.kind == "int" else [math.nan, math.inf]
    for value in candidates:
        if spec.kind == "int" and isinstance(value, float):
            continue
        assert _accepted_by_table(name, value) == _accepted_by_code(name, value), (name, value)


def test_the_shared_constants_have_one_home():
    from helpers.data import synthetic
    from helpers.model import lora
    from helpers.run import params

    assert synthetic.LEVELS is params.LEVELS is LEVELS and lora.LORA_RANKS is params.LORA_RANKS is LORA_RANKS
    assert "float16" in MERGED_DTYPES


# ---------------------------------------------------------------------------------------------------
# 6. Damaged report inputs and state.json: one line each, naming the file and the fix


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    _metrics(run, 5)
    (run / "timings.json").write_text(json.dumps({"07_grpo_training.ipynb": 60.0}))
    return run


@pytest.mark.parametrize("damage, needle", [
    (lambda run: (run / "grpo" / "metrics.jsonl").write_bytes(bytes(range(256)) * 8),
     "grpo/metrics.jsonl is not a metrics file (not UTF-8 text); fix: move it away"),
    (lambda run: ((run / "eval").mkdir(), (run / "eval" / "results.json").write_text("{")),
     "eval/results.json is not readable JSON (Expecting property name enclosed in double quotes); fix: move it away"),
    (lambda run: ((run / "eval").mkdir(), (run / "eval" / "results.json").write_text("[1, 2]")),
     "eval/results.json does not hold evaluation results (a JSON list without datasets"),
    (lambda run: (run / "report.md").mkdir(), "report.md is a folder, so the report cannot be written there; fix: move"),
    (lambda run: open(run / "grpo" / "metrics.jsonl", "a").write(json.dumps({"step": "x", "reward": 1}) + "\n"),
     'grpo/metrics.jsonl, line 6: step is "x", not a whole number; fix: correct or delete that line'),
])
def test_report_refuses_damaged_files_in_one_line(tmp_path, damage, needle):
    run = _run_folder(tmp_path)
    damage(run)
    with pytest.raises(SystemExit) as stop:
        cli.main(["report", str(run)])
    assert needle in one_line(stop), str(stop.value)


@pytest.mark.parametrize("state, needle", [
    ({"completed": None}, "completed is null, not a list of notebook names"),
    ({"first": "a"}, 'first is "a", not a notebook number or null'),
    ({"params": [5]}, 'params is [5], not a list of "name=value" texts'),
    ({"model": 3}, "model is 3, not a model name or folder, or null"),
    ({"completed": [1]}, "completed is [1], not a list of notebook names"),
])
def test_resume_with_a_damaged_state_json_is_one_line(tmp_path, nbs, state, needle):
    notebook(nbs / "01_a.ipynb", "profile = None", "raise SystemExit('ran')")
    out = tmp_path / "run"
    out.mkdir()
    (out / "state.json").write_text(json.dumps({"profile": "ci", **state}))
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--out", str(out), "--resume"])
    text = one_line(stop)
    assert f"{out / 'state.json'} is damaged: {needle}; fix: correct or move away that file" in text, text
    assert not (out / "notebooks").exists()
