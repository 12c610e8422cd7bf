"""The whole chain's run folder, as ``grpo-notebooks run --profile ci`` writes it.

The README's test command runs the chain first and points ``GRPO_CI_RUN`` at its folder; without
that variable this module runs the chain itself into a temporary folder (a few minutes).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.run.suite import notebooks_dir

pytestmark = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run() -> Path:
    given = os.environ.get("GRPO_CI_RUN")
    if given:
        return Path(given)
    out = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"grpo-ci-run-{os.getpid()}"
    subprocess.run([sys.executable, "-m", "helpers.run.cli", "run", "--profile", "ci", "--out", str(out)], check=True,
                   env={**os.environ, "GRPO_PROFILE": "ci"})
    return out


def test_every_notebook_ran_without_an_error(run):
    expected = [p.name for p in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))]
    assert sorted(p.name for p in (run / "notebooks").glob("*.ipynb")) == expected
    for name in expected:
        nb = nbformat.read(run / "notebooks" / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), f"{name}: a cell did not run"
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
        injected = [c for c in code if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and "profile = \"ci\"" in injected[0].source, f"{name} did not run under the ci profile"
    timings = json.loads((run / "timings.json").read_text())
    assert list(timings) == expected and all(t > 0 for t in timings.values())


def test_training_metrics_were_logged(run):
    for stage, key in (("sft", "loss"), ("grpo", "reward")):
        rows = [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines() if line.strip()]
        values = [r[key] for r in rows if r.get(key) is not None]
        assert values and all(math.isfinite(v) for v in values), f"{stage}: no finite {key} logged"
    grpo = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in grpo if "reward" in r]
    assert steps == list(range(1, len(steps) + 1)), "GRPO steps missing or repeated"
    for adapter in (run / "sft" / "adapter", run / "grpo" / "adapter", run / "saved" / "lora"):
        assert (adapter / "adapter_model.safetensors").stat().st_size > 0, adapter
    assert any((run / "saved" / "merged_16bit").glob("*.safetensors"))


def test_grpo_changed_what_it_must(run):
    """Notebook 07 from the SFT warm-up, under the ci profile: every reward finite, some group with reward spread,
    every LoRA weight moved from the SFT adapter it started from, a complete checkpoint, the adapter's record.
    (Never the loss: with beta=0 it is the token-averaged advantage, ~0.)"""
    import torch
    from safetensors.torch import load_file

    from helpers.runtime.profiles import profile_settings
    from helpers.train.checkpoints import newest_checkpoint

    nb = nbformat.read(run / "notebooks" / "07_grpo_training.ipynb", as_version=4)
    said = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"policy: SFT adapter {run.resolve() / 'sft' / 'adapter'}" in said
    rows = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "reward" in r]
    for row in rows:
        assert math.isfinite(row["reward"]) and math.isfinite(row["reward_std"]), row
        for name in ("strict_format_reward", "correctness_reward", "format_compliance", "accuracy"):
            assert math.isfinite(row[f"rewards/{name}/mean"]), (name, row)
    assert any(r["reward_std"] > 0 and r["frac_reward_zero_std"] < 1 for r in rows), rows
    sft = load_file(run / "sft" / "adapter" / "adapter_model.safetensors")
    grpo = load_file(run / "grpo" / "adapter" / "adapter_model.safetensors")
    assert sft.keys() == grpo.keys() and all(not torch.equal(sft[k], grpo[k]) for k in sft)
    last = newest_checkpoint(run / "grpo" / "checkpoints")
    assert all((last / name).is_file() for name in ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt"))
    saved = load_file(last / "adapter_model.safetensors")
    assert all(torch.equal(saved[k], grpo[k]) for k in grpo)  # the final adapter is the last step's weights
    info = json.loads((run / "grpo" / "adapter" / "training.json").read_text())
    steps = profile_settings("ci").grpo_steps
    assert info["steps"] == steps == len(rows) and info["settings"]["grpo_steps"] == steps and not info["resumed_from"]
    assert (run / "plots" / "grpo_dashboard.png").read_bytes().startswith(PNG)


def test_report_has_the_evaluation_and_learning_tables(run):
    report = (run / "report.md").read_text()
    for model in ("base", "sft", "grpo"):
        assert f"\n| {model} | " in report, f"no {model} row in the evaluation table"
    assert "| strict accuracy | lenient accuracy | format compliance |" in report
    assert "| reward | " in report and "first fifth" in report
    assert "| **total** | " in report and "profile=ci" in report
    for png in ("eval/accuracy.png", "plots/grpo_dashboard.png"):
        assert f"({png})" in report and (run / png).read_bytes()[:8] == PNG
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results  # the numbers behind the table, for scripts


def _log(run: Path) -> list[tuple[float, str]]:
    """``run.log`` as (seconds since the epoch, line)."""
    import time

    out = []
    for line in (run / "run.log").read_text().splitlines():
        stamp, text = line[:23], line[24:]
        out.append((time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:23]) / 1000, text))
    return out


def test_the_command_said_what_it_used_and_showed_training_live(run):
    log = _log(run)
    texts = [t for _, t in log]
    for head in ("grpo-notebooks run: profile ci", "model: embedded SmolLM2-135M-Instruct", "device: ", "run folder: "):
        assert any(t.startswith(head) for t in texts), f"no {head!r} line in run.log"
    grpo = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    grpo = [r for r in grpo if "reward" in r]
    shown = {}
    for at, text in log:
        if text.strip().startswith("grpo step "):
            shown[int(text.split()[2].split("/")[0])] = (at, text)
    assert sorted(shown) == [r["step"] for r in grpo], "one progress line per logged GRPO step"
    for r in grpo:
        at, text = shown[r["step"]]
        assert f"/{len(grpo)} | reward " in text and " | format " in text and " | accuracy " in text and " left" in text
        assert at - r["time"] < 5, f"step {r['step']} was shown {at - r['time']:.1f} s after the trainer logged it"
    assert shown[grpo[0]["step"]][0] < grpo[-1]["time"], "the first step was shown only after training ended"
    done_07 = next(at for at, t in log if "07_grpo_training.ipynb done in " in t)
    assert max(at for at, _ in shown.values()) < done_07
    assert any("eval model 3/3 (grpo): " in t for t in texts), "no evaluation progress"
    for end in ("evaluation on synthetic", "  base ", "  sft ", "  grpo ", "GRPO learning over", "time: ", "report: "):
        assert any(t.startswith(end) for t in texts), f"the run did not end with {end!r}"


def test_report_command_rebuilds_the_runs_report(run, capsys):
    from helpers.run.cli import main

    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "## Held-out evaluation (base vs SFT vs GRPO)" in out and f"report: {run.resolve() / 'report.md'}" in out
