"""Tables of the GPU runs brought back from the device (benchmarks/results/gpu_e2e/<run>/): GRPO's sampled curves
(first fifth of the logged steps -> last fifth) and, where notebook 08 ran, the held-out evaluation.

    python benchmarks/gpu_e2e/summarize.py [benchmarks/results/gpu_e2e]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fifths(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "–"
    k = max(1, len(values) // 5)
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    return f"{first:.2f} → {last:.2f}"


def curves(folder: Path) -> str | None:
    path = folder / "grpo_metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("reward") is not None]
    if not rows:
        return None
    sft = json.loads((folder / "sft_summary.json").read_text()) if (folder / "sft_summary.json").exists() else {}
    per_step = rows[-1]["elapsed_s"] / len(rows)
    return (f"| {folder.name} | {sft.get('steps', '–')} | {sft.get('compliance_after', float('nan')):.0%} | "
            f"{len(rows)} | {per_step:.2f} | {fifths(rows, 'reward')} | {fifths(rows, 'rewards/format_compliance/mean')} | "
            f"{fifths(rows, 'rewards/accuracy/mean')} | {fifths(rows, 'frac_reward_zero_std')} |")


def evaluation(folder: Path) -> list[str]:
    path = folder / "results.json"
    if not path.exists():
        return []
    out = []
    for name, table in json.loads(path.read_text())["datasets"].items():
        scores = {s["name"]: s for s in table["scores"]}
        cells = [f"{scores[m]['strict_accuracy']:.1%} ({scores[m]['strict_correct']}/{scores[m]['problems']})"
                 if m in scores else "–" for m in ("base", "sft", "grpo")]
        gain = (scores["grpo"]["strict_accuracy"] - scores["sft"]["strict_accuracy"]) * 100 if {"sft", "grpo"} <= set(scores) else None
        fmt = " / ".join(f"{scores[m]['format_compliance']:.0%}" for m in ("base", "sft", "grpo") if m in scores)
        out.append(f"| {folder.name} | {name} ({table['settings']['problems']}, {table['settings']['backend']}) | "
                   + " | ".join(cells) + f" | {gain:+.1f} | {fmt} |" if gain is not None else " | – |")
    return out


def main(root: str = "benchmarks/results/gpu_e2e") -> None:
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir())
    print("| run | SFT steps | SFT format (64 held out) | GRPO steps logged | s/step | reward | sampled format | sampled accuracy | groups without spread |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in folders:
        row = curves(f)
        if row:
            print(row)
    print()
    print("| run | held-out set | base strict | SFT strict | SFT+GRPO strict | GRPO − SFT (points) | format base / SFT / GRPO |")
    print("|---|---|---|---|---|---|---|")
    for f in folders:
        for row in evaluation(f):
            print(row)


if __name__ == "__main__":
    main(*sys.argv[1:])
