"""README "Results" rows from run folders of `grpo-notebooks run --profile cpu` (issue 15).

    python benchmarks/learning_cpu/learning_rows.py runs/seed-3407 runs/seed-1 runs/seed-2

One Markdown row per run: strict accuracy (base, SFT, SFT+GRPO, GRPO's gain over SFT) on the 64
held-out problems and on the paraphrased set, format compliance, GRPO's reward / sampled format /
sampled accuracy in the first and last fifth of its steps, zero-spread groups dropped or resampled, and
the minutes spent in the notebooks (timings.json). :func:`values` gives the same numbers as a dict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}% ({part}/{whole})"


def values(run: Path) -> dict:
    """The numbers of one run's row: counts per held-out set and model, GRPO's first and last fifths, the
    group filter's totals and the minutes in the notebooks."""
    from helpers.dashboard.metrics import read_metrics
    from helpers.train.curves import fifths

    run = Path(run)
    results = json.loads((run / "eval" / "results.json").read_text())["datasets"]
    training = run / "grpo" / "adapter" / "training.json"
    settings = json.loads(training.read_text()).get("settings", {}) if training.exists() else {}
    sets = {}
    for name in ("synthetic", "paraphrased"):
        scores = {s["name"]: s for s in results.get(name, {}).get("scores", [])}
        if scores:
            sets[name] = {model: {"strict_correct": s["strict_correct"], "formatted": s["formatted"],
                                  "problems": s["problems"]} for model, s in scores.items()}
    history = [r for r in read_metrics(run / "grpo" / "metrics.jsonl") if r.get("reward") is not None]
    grpo = {}
    for label, key in (("reward", "reward"), ("sampled_format", "rewards/format_compliance/mean"),
                       ("sampled_accuracy", "rewards/accuracy/mean")):
        pair = fifths([r.get(key) for r in history])
        grpo[label] = None if pair is None else [float(x) for x in pair]
    total = {k: sum(r.get(f"group_filter/{k}", 0) or 0 for r in history) for k in ("zero_spread", "dropped", "replaced")}
    grpo["group_filter"] = {"on": any("group_filter/zero_spread" in r for r in history), **total}
    timings = json.loads((run / "timings.json").read_text())
    return {"seed": settings.get("seed", "?"), "sets": sets, "grpo": grpo,
            "minutes_in_notebooks": round(sum(timings.values()) / 60, 4)}


def format_row(v: dict) -> str:
    """One Markdown row (the columns of :data:`HEADER`) from :func:`values`."""
    cells = [str(v["seed"])]
    for name in ("synthetic", "paraphrased"):
        scores = v["sets"].get(name)
        if not scores:
            cells += ["-"] * 4
            continue
        n = scores["sft"]["problems"]
        cells += [_pct(scores[m]["strict_correct"], n) for m in ("base", "sft", "grpo")] if name == "synthetic" else [
            f"{_pct(scores['sft']['strict_correct'], n)} → {_pct(scores['grpo']['strict_correct'], n)}"]
        cells.append(f"{100 * (scores['grpo']['strict_correct'] - scores['sft']['strict_correct']) / n:+.0f}")
    synthetic = v["sets"]["synthetic"]
    n = synthetic["sft"]["problems"]
    cells += [_pct(synthetic[m]["formatted"], n) for m in ("base", "sft", "grpo")]
    g = v["grpo"]
    cells.append("-" if g["reward"] is None else "{:.2f} → {:.2f}".format(*g["reward"]))
    for key in ("sampled_format", "sampled_accuracy"):
        cells.append("-" if g[key] is None else f"{100 * g[key][0]:.0f}% → {100 * g[key][1]:.0f}%")
    f = g["group_filter"]
    cells.append("off" if not f["on"] else f"{f['dropped']:.0f} of {f['zero_spread']:.0f} dropped" if f["dropped"] else
                 f"{f['replaced']:.0f} of {f['zero_spread']:.0f} replaced")
    cells.append(f"{v['minutes_in_notebooks']:.1f}")
    return "| " + " | ".join(cells) + " |"


def row(run: Path) -> str:
    return format_row(values(run))


HEADER = ("| seed | strict accuracy: base | SFT | SFT+GRPO | gain | paraphrased: SFT → SFT+GRPO | gain | "
          "format: base | SFT | SFT+GRPO | GRPO reward, first → last fifth | sampled format | sampled accuracy | "
          "zero-spread groups: filter | minutes in notebooks |\n" + "|---" * 15 + "|")

if __name__ == "__main__":
    print(HEADER)
    for arg in sys.argv[1:]:
        print(row(Path(arg)))
