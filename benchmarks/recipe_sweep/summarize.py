"""Table of a recipe sweep: one row per config, its seeds' gains of GRPO over the SFT warm-up.

    python benchmarks/sweeps/summarize.py benchmarks/results/sweep    # folders <config>-s<seed>/result.json
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def rows(folder: Path) -> dict[str, list[dict]]:
    runs = defaultdict(list)
    for result in sorted(folder.glob("*/result.json")):
        config = result.parent.name.rsplit("-s", 1)[0]
        runs[config].append(json.loads(result.read_text()))
    return runs


def _pct(x):
    return f"{100 * x:.1f}"


def table(folder: Path) -> str:
    out = ["| config | seeds | synthetic SFT -> GRPO (mean) | gain per seed | mean gain | paraphrased gain per seed "
           "| mean | sampled acc first -> last fifth | GRPO s/step |", "|---" * 9 + "|"]
    for config, results in sorted(rows(folder).items()):
        syn = [r["scores"]["synthetic"] for r in results]
        gains = [r["gain_points"]["synthetic"] for r in results]
        para = [r["gain_points"].get("paraphrased") for r in results if r["gain_points"].get("paraphrased") is not None]
        fifths = [r["sampled_accuracy_fifths"] for r in results if r.get("sampled_accuracy_fifths")]
        first = statistics.mean(f[0] for f in fifths) if fifths else float("nan")
        last = statistics.mean(f[1] for f in fifths) if fifths else float("nan")
        out.append(
            f"| {config} | {','.join(str(r['seed']) for r in results)} "
            f"| {_pct(statistics.mean(s['sft']['strict_accuracy'] for s in syn))} -> "
            f"{_pct(statistics.mean(s['grpo']['strict_accuracy'] for s in syn))} "
            f"| {', '.join(f'{g:+.1f}' for g in gains)} | **{statistics.mean(gains):+.1f}** "
            f"| {', '.join(f'{g:+.1f}' for g in para)} | {statistics.mean(para) if para else float('nan'):+.1f} "
            f"| {_pct(first)} -> {_pct(last)} "
            f"| {statistics.median(r['times']['grpo_step_s'] for r in results):.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/sweep")))
