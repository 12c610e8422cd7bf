"""benchmarks/learning_gpu/learning.png: the three gpu-profile seeds (learn-SEED): GRPO's sampled accuracy over its 300
steps (20-step moving mean) and the held-out strict accuracy of base, SFT and SFT+GRPO on each evaluation set.

    python benchmarks/learning_gpu/plot_learning.py [RAW] [--out PNG]   # RAW: raw.tar.xz (default) or run folders
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from shelf import raw_folder  # noqa: E402
from summarize import _file, _jsonl  # noqa: E402

SEEDS = ("3407", "1", "2")
SETS = ("synthetic", "paraphrased", "gsm8k")


def moving(values: list[float], k: int = 20) -> list[float]:
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


def plot(root: Path, out: Path) -> Path:
    fig, (curve, bars) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / (3 * len(SEEDS))
    for n, seed in enumerate(SEEDS):
        folder = Path(root) / f"learn-{seed}"
        rows = _jsonl(_file(folder, "metrics"))
        rows = [r for r in rows if r.get("rewards/accuracy/mean") is not None]
        curve.plot([r["step"] for r in rows], moving([r["rewards/accuracy/mean"] for r in rows]), label=f"seed {seed}")
        data = json.loads(_file(folder, "results").read_text())["datasets"]
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
    fig.savefig(out, dpi=110)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="benchmarks/learning_gpu/learning.png from the learn-SEED runs")
    parser.add_argument("raw", nargs="?", default=str(HERE / "raw.tar.xz"), help="raw.tar.xz or a folder of run folders")
    parser.add_argument("--out", default=str(HERE / "learning.png"))
    args = parser.parse_args(argv)
    with raw_folder(args.raw) as root:
        return plot(root, Path(args.out))


if __name__ == "__main__":
    print(main())
