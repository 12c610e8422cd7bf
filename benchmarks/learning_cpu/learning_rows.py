"""README "Results" rows from run folders of `grpo-notebooks run --profile cpu` (issue 15).

    python benchmarks/learning_rows.py runs/seed-3407 runs/seed-1 runs/seed-2

One Markdown row per run: strict accuracy (base, SFT, SFT+GRPO, GRPO's gain over SFT) on the 64
held-out problems and on the paraphrased set, format compliance, GRPO's reward / sampled format /
sampled accuracy in the first and last fifth of its steps, zero-spread groups resampled, and the
minutes spent in the notebooks (timings.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}% ({part}/{whole})"


def row(run: Path) -> str:
    from helpers.dashboard.metrics import read_metrics
    from helpers.run.report import fifths

    results = json.loads((run / "eval" / "results.json").read_text())["datasets"]
    settings = json.loads((run / "grpo" / "adapter" / "training.json").read_text()).get("settings", {}) \
        if (run / "grpo" / "adapter" / "training.json").exists() else {}
    seed = settings.get("seed", "?")
    cells = [str(seed)]
    for name in ("synthetic", "paraphrased"):
        scores = {s["name"]: s for s in results.get(name, {}).get("scores", [])}
        if not scores:
            cells += ["-"] * 4
            continue
        n = scores["sft"]["problems"]
        cells += [_pct(scores[m]["strict_correct"], n) for m in ("base", "sft", "grpo")] if name == "synthetic" else [
            f"{_pct(scores['sft']['strict_correct'], n)} → {_pct(scores['grpo']['strict_correct'], n)}"]
        gain = 100 * (scores["grpo"]["strict_correct"] - scores["sft"]["strict_correct"]) / n
        cells.append(f"{gain:+.0f}")
    synthetic = {s["name"]: s for s in results["synthetic"]["scores"]}
    n = synthetic["sft"]["problems"]
    cells += [_pct(synthetic[m]["formatted"], n) for m in ("base", "sft", "grpo")]
    history = [r for r in read_metrics(run / "grpo" / "metrics.jsonl") if r.get("reward") is not None]
    for key, fmt in (("reward", "{:.2f} → {:.2f}"), ("rewards/format_compliance/mean", None),
                     ("rewards/accuracy/mean", None)):
        pair = fifths([r.get(key) for r in history])
        cells.append("-" if pair is None else fmt.format(*pair) if fmt else
                     f"{100 * pair[0]:.0f}% → {100 * pair[1]:.0f}%")
    zero = sum(r.get("group_filter/zero_spread", 0) or 0 for r in history)
    replaced = sum(r.get("group_filter/replaced", 0) or 0 for r in history)
    dropped = sum(r.get("group_filter/dropped", 0) or 0 for r in history)
    cells.append("off" if not any("group_filter/zero_spread" in r for r in history) else
                 f"{dropped:.0f} of {zero:.0f} dropped" if dropped else f"{replaced:.0f} of {zero:.0f} replaced")
    timings = json.loads((run / "timings.json").read_text())
    cells.append(f"{sum(timings.values()) / 60:.1f}")
    return "| " + " | ".join(cells) + " |"


HEADER = ("| seed | strict accuracy: base | SFT | SFT+GRPO | gain | paraphrased: SFT → SFT+GRPO | gain | "
          "format: base | SFT | SFT+GRPO | GRPO reward, first → last fifth | sampled format | sampled accuracy | "
          "zero-spread groups: filter | minutes in notebooks |\n" + "|---" * 15 + "|")

if __name__ == "__main__":
    print(HEADER)
    for arg in sys.argv[1:]:
        print(row(Path(arg)))
