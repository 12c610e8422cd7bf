"""``report.md`` for a run folder: evaluation table, learning figures, curves, timings, hardware.

Everything is read back from the files the notebooks wrote (``RunLayout``), so the report can be
rebuilt at any time with ``write_report(run_dir)``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from helpers.dashboard.metrics import read_metrics
from helpers.dashboard.plots import plot_metrics
from helpers.evaluate.held_out import SET_LABELS
from helpers.evaluate.scoring import change_lines
from helpers.files.atomic import atomic_write
from helpers.files.runs import RunLayout
from helpers.runtime.hardware import describe
from helpers.runtime.profiles import pick_profile


def fifths(values: list[float]) -> tuple[float, float] | None:
    """Mean of the first and of the last fifth of ``values`` (at least one value each).

    >>> fifths([0, 0, 1, 1, 1, 2, 2, 2, 3, 4])
    (0.0, 3.5)
    """
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    k = max(1, len(values) // 5)
    return statistics.fmean(values[:k]), statistics.fmean(values[-k:])


def learning_summary(history: list[dict]) -> dict:
    """Reward, format compliance and accuracy at the start and the end of training (first/last fifth)."""
    summary: dict = {"steps": len(history)}
    for label, key in (
        ("reward", "reward"),
        ("format_compliance", "rewards/format_compliance/mean"),
        ("accuracy", "rewards/accuracy/mean"),
        ("completion_length", "completions/mean_length"),
        ("frac_reward_zero_std", "frac_reward_zero_std"),
    ):
        pair = fifths([row.get(key) for row in history])
        if pair is not None:
            summary[label] = {"first_fifth": round(pair[0], 4), "last_fifth": round(pair[1], 4)}
    return summary


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
    parts = [f"# GRPO run report: `{root.name}`\n", f"Written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.\n",
             f"Hardware and versions: `{describe(pick_profile())}`\n"]

    results_md = layout.eval / "results.md"
    parts.append("## Held-out evaluation (base vs SFT vs GRPO)\n")
    parts.append(results_md.read_text() + "\n" if results_md.exists() else "_no evaluation in this run folder_\n")
    for png in sorted(layout.eval.glob("*.png")):
        parts.append(f"![{png.stem}]({png.relative_to(root)})\n")

    history = read_metrics(layout.metrics("grpo")) if layout.metrics("grpo").exists() else []
    summary = learning_summary(history)
    atomic_write(root / "learning.json", json.dumps(summary, indent=2))
    parts.append(f"## Learning during GRPO ({summary['steps']} logged steps)\n")
    parts.append(_learning_table(summary))
    if history:
        pngs = plot_metrics(history, layout.plots, prefix="grpo")
        main = pngs.get("dashboard") or next(iter(pngs.values()), None)
        if main is not None:
            parts.append(f"\n![GRPO curves]({Path(main).relative_to(root)})\n")

    sft = read_metrics(layout.metrics("sft")) if layout.metrics("sft").exists() else []
    losses = [row["loss"] for row in sft if row.get("loss") is not None]
    if losses:
        parts.append(f"\n## SFT warm-up\n\nTraining loss {losses[0]:.3f} → {losses[-1]:.3f} over {len(sft)} logged steps.\n")

    timings_path = root / "timings.json"
    if timings_path.exists():
        timings = json.loads(timings_path.read_text())
        rows = [f"| {name} | {secs:.1f} |" for name, secs in timings.items()]
        rows.append(f"| **total** | **{sum(timings.values()):.1f}** |")
        parts.append("\n## Time per notebook\n\n| notebook | seconds |\n|---|---|\n" + "\n".join(rows) + "\n")

    report = layout.report
    atomic_write(report, "\n".join(parts))
    return report


def summary(run_dir: str | os.PathLike, seconds: float | None = None) -> str:
    """The end of a run in a few lines: the evaluation table (strict, lenient, format per model and held-out
    set, in ``eval/results.json``'s order, each with what it is (``SET_LABELS``) and its paired changes), GRPO's learning (first fifth → last fifth of its steps), the time and the report's path.
    ``seconds``: this command's wall time, shown beside the notebooks' total."""
    layout = RunLayout(run_dir)
    lines = []
    results_json = layout.eval / "results.json"
    datasets = json.loads(results_json.read_text()).get("datasets", {}) if results_json.exists() else {}
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
    history = read_metrics(layout.metrics("grpo")) if layout.metrics("grpo").exists() else []
    learned = learning_summary(history)
    parts = [f"reward {learned['reward']['first_fifth']:.2f} → {learned['reward']['last_fifth']:.2f}"] if (
        "reward" in learned) else []
    parts += [f"{label} {100 * learned[key]['first_fifth']:.0f}% → {100 * learned[key]['last_fifth']:.0f}%"
              for label, key in (("format", "format_compliance"), ("accuracy", "accuracy")) if key in learned]
    lines.append(f"GRPO learning over {learned['steps']} steps (first fifth → last fifth): " + ", ".join(parts)
                 if parts else "GRPO learning: no GRPO steps logged in this run folder")
    timings_path = layout.root / "timings.json"
    try:
        total = sum(json.loads(timings_path.read_text()).values()) if timings_path.exists() else None
    except (ValueError, TypeError, AttributeError):
        total = None
    spent = [f"{total / 60:.1f} min in notebooks"] if total is not None else []
    spent += [f"{seconds / 60:.1f} min this command"] if seconds is not None else []
    if spent:
        lines.append("time: " + ", ".join(spent))
    lines.append(f"report: {layout.report}")
    return "\n".join(lines)
