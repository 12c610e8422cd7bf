"""benchmarks/gpu_e2e/learning.png: the three gpu-profile seeds (learn-SEED): GRPO's sampled accuracy over its 300
steps (20-step moving mean) and the held-out strict accuracy of base, SFT and SFT+GRPO on each evaluation set.

    python benchmarks/gpu_e2e/plot_learning.py [benchmarks/results/gpu_e2e]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEEDS = ("3407", "1", "2")
SETS = ("synthetic", "paraphrased", "gsm8k")


def moving(values: list[float], k: int = 20) -> list[float]:
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


def main(root: str = "benchmarks/results/gpu_e2e") -> Path:
    fig, (curve, bars) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / (3 * len(SEEDS))
    for n, seed in enumerate(SEEDS):
        folder = Path(root) / f"learn-{seed}"
        rows = [json.loads(x) for x in (folder / "grpo_metrics.jsonl").read_text().splitlines() if x.strip()]
        rows = [r for r in rows if r.get("rewards/accuracy/mean") is not None]
        curve.plot([r["step"] for r in rows], moving([r["rewards/accuracy/mean"] for r in rows]), label=f"seed {seed}")
        data = json.loads((folder / "results.json").read_text())["datasets"]
        for m, model in enumerate(("base", "sft", "grpo")):
            xs, ys = [], []
            for i, name in enumerate(SETS):
                scores = {s["name"]: s for s in data[name]["scores"]}
                xs.append(i + (m * len(SEEDS) + n - (3 * len(SEEDS) - 1) / 2) * width)
                ys.append(100 * scores[model]["strict_accuracy"])
            bars.bar(xs, ys, width, color=f"C{m}", alpha=0.5 + 0.2 * n, label=f"{model}" if n == 0 else None)
    curve.set(title="GRPO's sampled accuracy (20-step mean), gpu profile, H200", xlabel="GRPO step",
              ylabel="accuracy of sampled answers")
    curve.legend()
    bars.set_xticks(range(len(SETS)), ["synthetic (500)", "paraphrased (250)", "GSM8K test (500)"])
    bars.set(title="held-out strict accuracy, greedy (seeds 3407, 1, 2 left to right)", ylabel="%")
    bars.legend()
    fig.tight_layout()
    out = Path(__file__).with_name("learning.png")
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
