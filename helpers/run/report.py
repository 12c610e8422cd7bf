"""``report.md`` for a run folder: evaluation table, learning figures, curves, timings, hardware.

Everything is read back from the files the notebooks wrote (``RunLayout``), so the report can be
rebuilt at any time with ``write_report(run_dir)``. A file that cannot be read (not text, damaged JSON, a metrics
step that is not a number) or written (a read-only folder, a full disk, a folder where ``report.md`` goes) is
refused with :class:`RunFolderError`, one line naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from helpers.dashboard.metrics import read_metrics
from helpers.dashboard.plots import plot_metrics
from helpers.evaluate.held_out import SET_LABELS
from helpers.evaluate.scoring import change_lines
from helpers.files.atomic import atomic_write
from helpers.files.disk import disk_error
from helpers.files.runs import RunLayout
from helpers.run.state import seconds_per_notebook
from helpers.runtime.hardware import describe
from helpers.runtime.profiles import pick_profile
from helpers.train.curves import learning_summary

_SCORE_KEYS = ("name", "problems", "samples_per_problem", "strict_accuracy", "strict_correct", "lenient_accuracy",
               "lenient_correct", "format_compliance", "formatted")


class RunFolderError(ValueError):
    """A file of a run folder that cannot be read or written; the message is one line naming it and the fix."""


def _text(path: Path, what: str) -> str | None:
    """``path``'s text, ``None`` if there is no such file; refused in one line if it cannot be read as text."""
    if not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunFolderError(f"{path} is not {what} (not UTF-8 text); fix: move it away (the report is then built "
                             "without it).") from None
    except OSError as exc:
        raise RunFolderError(f"{path} cannot be read ({exc.strerror or exc}); fix: make it readable or move it away."
                             ) from None


def history(path: Path) -> list[dict]:
    """The steps of a ``metrics.jsonl`` (``helpers.dashboard.metrics.read_metrics``), ``[]`` without one; a file that is
    not text, or a record whose ``step`` is not a whole number, is refused naming the file (and the line)."""
    text = _text(path, "a metrics file")
    if text is None:
        return []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by a kill: read_metrics skips it
            continue
        step = record.get("step", 0) if isinstance(record, dict) else 0
        if isinstance(step, bool) or not (isinstance(step, int) or (isinstance(step, float) and step.is_integer())):
            raise RunFolderError(f"{path}, line {number}: step is {json.dumps(step)}, not a whole number; fix: correct "
                                 "or delete that line.")
    return read_metrics(path)


def results(path: Path) -> dict:
    """The ``datasets`` of ``eval/results.json`` (``{}`` without one); a damaged file is refused naming it."""
    text = _text(path, "an evaluation results file")
    if text is None:
        return {}
    fix = ("fix: move it away, or evaluate again: grpo-notebooks run --out <this run folder> --from 8 (after a "
           "completed run: --fresh --from 8).")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunFolderError(f"{path} is not readable JSON ({getattr(exc, 'msg', exc)}); {fix}") from None
    datasets = data.get("datasets") if isinstance(data, dict) else None
    ok = isinstance(datasets, dict) and all(
        isinstance(t, dict) and isinstance(t.get("settings"), dict) and isinstance(t.get("scores"), list)
        and all(isinstance(s, dict) and all(k in s for k in _SCORE_KEYS) for s in t["scores"])
        for t in datasets.values())
    if not ok:
        raise RunFolderError(f"{path} does not hold evaluation results (a JSON {type(data).__name__} without "
                             f"datasets, settings and scores); {fix}")
    return datasets


def _timings(path: Path) -> dict[str, float] | None:
    text = _text(path, "a timings file")
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        data = []
    if data is not None and not seconds_per_notebook(data):
        raise RunFolderError(f"{path} holds something other than seconds per notebook; fix: move it away.")
    return data


def check_writable(root: Path) -> None:
    """Refuse a run folder where the report cannot be written (read-only, or not ours), before anything is read."""
    try:
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise RunFolderError(f"{root} cannot be written ({exc.strerror or exc}), so its report cannot be rebuilt "
                             "there; fix: make it writable, or copy the run folder somewhere writable and run "
                             "grpo-notebooks report on the copy.") from None


def _write(path: Path, text: str) -> None:
    """``atomic_write``, with a folder in the way, a read-only folder or a full disk refused in one line."""
    if path.is_dir():
        raise RunFolderError(f"{path} is a folder, so the report cannot be written there; fix: move that folder away.")
    try:
        atomic_write(path, text)
    except OSError as exc:
        converted = disk_error(exc, path.parent, what=path.name)
        raise RunFolderError(f"{converted or exc}") from None


def _learning_table(summary: dict) -> str:
    rows = [(k, v) for k, v in summary.items() if isinstance(v, dict)]
    if not rows:
        return "_no GRPO metrics were logged_\n"
    lines = ["| metric | first fifth of steps | last fifth of steps | change |", "|---|---|---|---|"]
    for name, v in rows:
        lines.append(f"| {name} | {v['first_fifth']:.3f} | {v['last_fifth']:.3f} | {v['last_fifth'] - v['first_fifth']:+.3f} |")
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<run>/report.md`` from what the run folder holds, and ``<run>/learning.json``; return the report path."""
    layout = RunLayout(run_dir)
    root = layout.root
    check_writable(root)
    parts = [f"# GRPO run report: `{root.name}`\n", f"Written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.\n",
             f"Hardware and versions: `{describe(pick_profile())}`\n"]

    results_md = _text(layout.eval / "results.md", "an evaluation table")
    parts.append("## Held-out evaluation (base vs SFT vs GRPO)\n")
    parts.append(results_md + "\n" if results_md is not None else "_no evaluation in this run folder_\n")
    for png in sorted(layout.eval.glob("*.png")):
        parts.append(f"![{png.stem}]({png.relative_to(root)})\n")

    grpo = history(layout.metrics("grpo"))
    sft = history(layout.metrics("sft"))
    timings = _timings(root / "timings.json")
    summary = learning_summary(grpo)
    _write(root / "learning.json", json.dumps(summary, indent=2))
    parts.append(f"## Learning during GRPO ({summary['steps']} logged steps)\n")
    parts.append(_learning_table(summary))
    if grpo:
        try:
            pngs = plot_metrics(grpo, layout.plots, prefix="grpo")
        except OSError as exc:
            raise RunFolderError(str(disk_error(exc, layout.plots, what="the GRPO curves") or exc)) from None
        main = pngs.get("dashboard") or next(iter(pngs.values()), None)
        if main is not None:
            parts.append(f"\n![GRPO curves]({Path(main).relative_to(root)})\n")

    losses = [row["loss"] for row in sft if row.get("loss") is not None]
    if losses:
        parts.append(f"\n## SFT warm-up\n\nTraining loss {losses[0]:.3f} → {losses[-1]:.3f} over {len(sft)} logged steps.\n")

    if timings is not None:
        rows = [f"| {name} | {secs:.1f} |" for name, secs in timings.items()]
        rows.append(f"| **total** | **{sum(timings.values()):.1f}** |")
        parts.append("\n## Time per notebook\n\n| notebook | seconds |\n|---|---|\n" + "\n".join(rows) + "\n")

    report = layout.report
    _write(report, "\n".join(parts))
    return report


TOUR_STEPS = 100  # fewer GRPO steps than this: the cpu and ci profiles' runs, a tour of the loop


def tour_line(steps: int) -> str:
    """What a short run's GRPO stage is, in plain words, and where the measured gains are (issue 30: 14 steps on 2
    cores moved held-out accuracy by less than the noise of 64 problems in every lever measured)."""
    return (f"note: {steps} GRPO steps are a tour of the loop, not a measurement of what GRPO can do: a change of a "
            "few points here is within about two standard errors of chance (the lines above give them). The measured "
            "gains need hundreds of steps: on a GPU, 300 steps added +9.8 to +15.0 points over the warm-up in three "
            "seeds (README \"Results on a GPU\").")


def summary(run_dir: str | os.PathLike, seconds: float | None = None) -> str:
    """The end of a run in a few lines: the evaluation table (strict, lenient, format per model and held-out
    set, in ``eval/results.json``'s order, each with what it is (``SET_LABELS``) and its paired changes), GRPO's learning (first fifth → last fifth of its steps), the time and the report's path.
    ``seconds``: this command's wall time, shown beside the notebooks' total."""
    layout = RunLayout(run_dir)
    lines = []
    datasets = results(layout.eval / "results.json")
    for name, table in datasets.items():
        label = f"{SET_LABELS[name]}; " if name in SET_LABELS else ""
        lines.append(f"evaluation on {name} ({label}{table['settings'].get('problems')} held-out problems):")
        lines.append(f"  {'model':<6} {'strict':>18} {'lenient':>18} {'format':>18}")
        for s in table["scores"]:
            total = s["problems"] * s["samples_per_problem"]
            cells = [f"{100 * s[k]:.1f}% ({s[c]}/{total})" for k, c in (
                ("strict_accuracy", "strict_correct"), ("lenient_accuracy", "lenient_correct"),
                ("format_compliance", "formatted"))]
            lines.append(f"  {s['name']:<6} " + " ".join(f"{c:>18}" for c in cells))
        lines += [f"  {line}" for line in change_lines(table["scores"])]
    if not datasets:
        lines.append("evaluation: none in this run folder (notebook 08 writes it)")
    learned = learning_summary(history(layout.metrics("grpo")))
    parts = [f"reward {learned['reward']['first_fifth']:.2f} → {learned['reward']['last_fifth']:.2f}"] if (
        "reward" in learned) else []
    parts += [f"{label} {100 * learned[key]['first_fifth']:.0f}% → {100 * learned[key]['last_fifth']:.0f}%"
              for label, key in (("format", "format_compliance"), ("accuracy", "accuracy")) if key in learned]
    lines.append(f"GRPO learning over {learned['steps']} steps (first fifth → last fifth): " + ", ".join(parts)
                 if parts else "GRPO learning: no GRPO steps logged in this run folder")
    if parts and learned["steps"] < TOUR_STEPS:
        lines.append(tour_line(learned["steps"]))
    timings = _timings(layout.root / "timings.json")
    total = sum(timings.values()) if timings is not None else None
    spent = [f"{total / 60:.1f} min in notebooks"] if total is not None else []
    spent += [f"{seconds / 60:.1f} min this command"] if seconds is not None else []
    if spent:
        lines.append("time: " + ", ".join(spent))
    lines.append(f"report: {layout.report}")
    return "\n".join(lines)
