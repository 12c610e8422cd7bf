"""Resume from the command line (issue 16): ``grpo-notebooks run --resume`` continues a killed notebook 07
from its newest complete checkpoint with each metric step logged once; without ``--resume`` or ``--fresh``
a folder holding checkpoints is refused, in the helpers (the notebook and the Python API) and the CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.train.checkpoints import (
    CheckpointsExistError,
    check_checkpoints,
    newest_checkpoint,
    set_aside_folder,
)

REPO = Path(__file__).resolve().parents[1]


def checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    import torch
    from safetensors.torch import save_file

    save_file({"lora_A.weight": torch.zeros(2, 2)}, str(path / "adapter_model.safetensors"))  # reads back
    return path


def test_check_checkpoints_refuses_only_when_not_told(tmp_path):
    folder = tmp_path / "grpo" / "checkpoints"
    check_checkpoints(folder, None)  # nothing there: fine
    checkpoint(folder, 2)
    with pytest.raises(CheckpointsExistError, match=r"newest complete: checkpoint-2\); fix: resume=True .*--fresh"):
        check_checkpoints(folder, None)
    check_checkpoints(folder, True)
    check_checkpoints(folder, False)


def test_starting_over_moves_the_earlier_run_aside(tmp_path):
    stage = tmp_path / "grpo"
    checkpoint(stage / "checkpoints", 4)
    (stage / "adapter").mkdir()
    (stage / "metrics.jsonl").write_text('{"step": 1}\n')
    aside = set_aside_folder(stage)
    assert aside.parent == stage and aside.name.startswith("previous-")
    assert sorted(p.name for p in aside.iterdir()) == ["adapter", "checkpoints", "metrics.jsonl"]
    assert sorted(p.name for p in stage.iterdir()) == [aside.name]  # nothing of the old run beside the new one
    assert set_aside_folder(stage) is None
    (stage / "metrics.jsonl").write_text('{"step": 2}\n')  # a second fresh start within the same second
    again = set_aside_folder(stage)
    assert again != aside and (again / "metrics.jsonl").read_text() == '{"step": 2}\n'
    assert (aside / "metrics.jsonl").read_text() == '{"step": 1}\n'  # the first run's metrics are not replaced


def test_unused_path_never_names_something_that_is_there(tmp_path):
    from helpers.files.atomic import unused_path

    assert unused_path(tmp_path / "x") == tmp_path / "x"
    (tmp_path / "x").mkdir()
    (tmp_path / "x-2").write_text("")
    assert unused_path(tmp_path / "x") == tmp_path / "x-3"


def _steps(metrics: Path) -> list[int]:
    steps = []
    for line in metrics.read_text().splitlines() if metrics.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "reward" in row:
            steps.append(row["step"])
    return steps


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_resume_continues_a_killed_notebook_07(tmp_path, embedded_path):
    """SIGKILL notebook 07 after its first checkpoint and a logged step past it, with a save the kill interrupted
    (a checkpoint folder without trainer_state.json); ``--resume`` continues from the last complete checkpoint: the
    step count goes on, the metrics history is 1..N exactly once, and the final adapter holds the last
    checkpoint's weights and loads. Also: --model reaches the real notebook (the adapter records its base model),
    and --resume reuses it."""
    out, model = tmp_path / "run", tmp_path / "my-model"
    model.symlink_to(embedded_path)  # a folder of its own name, so the adapter's record shows which was loaded
    metrics, checkpoints = out / "grpo" / "metrics.jsonl", out / "grpo" / "checkpoints"
    cli = [sys.executable, "-m", "helpers.run.cli", "run"]
    sizes = ["-p", "grpo_steps=4", "-p", "num_generations=2", "-p", "max_completion_length=8",
             "--model", str(model)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cli + ["--profile", "ci", "--out", str(out), "--from", "7", "--to", "7", *sizes],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (newest_checkpoint(checkpoints) and 3 in _steps(metrics)):
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it was killed:\n{(tmp_path / 'first.log').read_text()[-3000:]}")
            time.sleep(0.2)
        kernels = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)  # the command dies at once; its kernel notices its parent is gone
        proc.wait()
        for _ in range(100):
            if not any(Path(f"/proc/{pid}").exists() for pid in kernels):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the kernel {kernels} outlived the killed command")
    assert _steps(metrics)[:3] == [1, 2, 3] and not (out / "grpo" / "adapter").exists()
    assert json.loads((out / "state.json").read_text())["running"] == "07_grpo_training.ipynb"
    killed_at = max(_steps(metrics))
    partial = checkpoints / f"checkpoint-{killed_at + 1}"  # a save the kill interrupted: never resumed from
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"half")

    again = subprocess.run(cli + ["--profile", "ci", "--out", str(out), "--to", "7"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert "--resume" in again.stderr and "--fresh" in again.stderr and newest_checkpoint(checkpoints)

    resumed = subprocess.run(cli + ["--out", str(out), "--resume"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "continuing at 07_grpo_training.ipynb with -p grpo_steps=4" in resumed.stdout
    assert f"model: {model} (local folder)" in resumed.stdout
    shown = [line.split(" | ")[0].strip() for line in resumed.stdout.splitlines() if "grpo step" in line]
    assert shown[-1] == "grpo step 4/4" and "grpo step 1/4" not in shown, resumed.stdout  # continued, not restarted
    assert _steps(metrics) == [1, 2, 3, 4], "a metric step lost or logged twice"
    info = json.loads((out / "grpo" / "adapter" / "training.json").read_text())
    assert info["steps"] == 4 and info["resumed_from"].endswith("checkpoint-2")
    assert info["base_model"] == str(model)  # --model reached notebook 07's load_policy
    assert json.loads((out / "state.json").read_text())["completed"] == ["07_grpo_training.ipynb"]
    said = [line for line in resumed.stdout.splitlines() if "GRPO resume" in line]  # helpers.train.checkpoints
    assert said and "from checkpoint-2" in said[0], resumed.stdout[-2000:]
    assert not partial.exists() or (partial / "trainer_state.json").is_file()  # removed, or written again whole
    last = newest_checkpoint(checkpoints)
    assert json.loads((last / "trainer_state.json").read_text())["global_step"] == 4
    _final_adapter_is_the_last_checkpoint_and_loads(out / "grpo" / "adapter", last, model)


def _final_adapter_is_the_last_checkpoint_and_loads(adapter: Path, last: Path, base_folder: Path) -> None:
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    final, saved = load_file(adapter / "adapter_model.safetensors"), load_file(last / "adapter_model.safetensors")
    assert final.keys() == saved.keys() and all(torch.equal(final[k], saved[k]) for k in final)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), adapter)
    loaded = get_peft_model_state_dict(model)
    assert loaded.keys() == final.keys() and all(torch.equal(loaded[k], final[k]) for k in final)
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2, do_sample=False).shape == (1, 5)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    """helpers.files.atomic.atomic_write (metrics, reports, evaluation tables, plots, the CLI's state): the old file or
    the new one, never half of one, and no temporary file left behind."""
    from helpers.files.atomic import atomic_write

    path = tmp_path / "sub" / "results.json"
    atomic_write(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}' and oct(path.stat().st_mode & 0o777) == "0o644"

    def half_then_fail(tmp):
        tmp.write_text('{"a": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, write=half_then_fail)
    assert path.read_text() == '{"a": 1}' and sorted(p.name for p in path.parent.iterdir()) == ["results.json"]
    atomic_write(path, b"\x89PNG")
    assert path.read_bytes() == b"\x89PNG"
