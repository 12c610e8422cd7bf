"""Tables of the recipe sweeps (benchmarks/recipe_sweep/run_sweep.sh):

- ``held_out``: one row per config of a sweep whose jobs finished, from ``<config>-s<seed>/result.json``: the
  seeds' gains of GRPO over the SFT warm-up on the held-out sets, GRPO's sampled accuracy, its seconds per step;
  the "change" column is the config's difference from the default's (``d_filter_drop``) as the results record it.
- ``sampled``: one row per config of a sweep that logged GRPO's steps only (``grpo_steps.txt``: the lines
  ``<config>-s<seed>: step N/M | ... | acc A | ...``): GRPO's sampled accuracy, mean of the first half of the logged
  steps (``steps[:n // 2]``) -> the rest, per seed.

    python benchmarks/recipe_sweep/summarize.py                   # from benchmarks/recipe_sweep/raw.tar.xz
    python benchmarks/recipe_sweep/summarize.py runs/sweep        # your own run_sweep.sh output
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shelf import main, markdown, rounded  # noqa: E402

DEFAULT = "d_filter_drop"
STEP = re.compile(r"^(?P<config>\S+)-s(?P<seed>\d+): step (?P<step>\d+)/\d+ \|.*\| acc (?P<acc>[-\d.e]+) \|")


def _change(config: dict, default: dict | None) -> str:
    if default is None:
        return "-"
    diff = {k: v for k, v in config.items() if default.get(k) != v and k not in ("eval_problems",)}
    return "(the default)" if not diff else ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(diff.items()))


def held_out(folder: Path) -> list[dict]:
    runs = defaultdict(list)
    for result in sorted(folder.rglob("result.json")):
        runs[result.parent.name.rsplit("-s", 1)[0]].append(json.loads(result.read_text()))
    default = runs[DEFAULT][0]["config"] if DEFAULT in runs else None
    rows = []
    for config, results in sorted(runs.items()):
        results.sort(key=lambda r: str(r["seed"]))  # seeds 1, 2, 3407 as text: the order of the tables
        syn = [r["scores"]["synthetic"] for r in results]
        para = [r["gain_points"].get("paraphrased") for r in results]
        fifths = [r["sampled_accuracy_fifths"] for r in results if r.get("sampled_accuracy_fifths")]
        rows.append({
            "config": config, "change": _change(results[0]["config"], default), "seeds": [r["seed"] for r in results],
            "eval_problems": results[0]["config"]["eval_problems"], "device": results[0]["device"],
            "sft_strict_mean": rounded(statistics.mean(s["sft"]["strict_accuracy"] for s in syn), 6),
            "grpo_strict_mean": rounded(statistics.mean(s["grpo"]["strict_accuracy"] for s in syn), 6),
            "gain_points": [r["gain_points"]["synthetic"] for r in results],
            "mean_gain_points": rounded(statistics.mean(r["gain_points"]["synthetic"] for r in results), 4),
            "paraphrased_gain_points": para,
            "mean_paraphrased_gain_points": rounded(statistics.mean(p for p in para if p is not None), 4),
            "sampled_accuracy_first_fifth": rounded(statistics.mean(f[0] for f in fifths), 6),
            "sampled_accuracy_last_fifth": rounded(statistics.mean(f[1] for f in fifths), 6),
            "grpo_step_s_median": statistics.median(r["times"]["grpo_step_s"] for r in results),
        })
    return rows


def sampled(folder: Path) -> list[dict]:
    acc: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for log in sorted(folder.rglob("grpo_steps.txt")):
        for line in log.read_text().splitlines():
            m = STEP.match(line)
            if m:
                acc[m["config"], m["seed"]][int(m["step"])] = float(m["acc"])
    rows: dict[str, dict] = {}
    for (config, seed), steps in sorted(acc.items()):
        values = [steps[k] for k in sorted(steps)]
        half = len(values) // 2
        row = rows.setdefault(config, {"config": config, "seeds": []})
        row["seeds"].append({"seed": int(seed), "steps": len(values),
                             "first_half": rounded(statistics.mean(values[:half]), 6),
                             "second_half": rounded(statistics.mean(values[half:]), 6)})
    return list(rows.values())


def build(raw: Path) -> dict:
    return {"held_out": held_out(raw), "sampled": sampled(raw)}


def render(tables: dict) -> dict[str, str]:
    rows = []
    for r in tables["held_out"]:
        rows.append([
            r["config"], r["change"], len(r["seeds"]),
            f"{100 * r['sft_strict_mean']:.1f} → {100 * r['grpo_strict_mean']:.1f}",
            ", ".join(f"{g:+.1f}" for g in r["gain_points"]), f"**{r['mean_gain_points']:+.1f}**",
            ", ".join(f"{g:+.1f}" for g in r["paraphrased_gain_points"]), f"{r['mean_paraphrased_gain_points']:+.1f}",
            f"{100 * r['sampled_accuracy_first_fifth']:.1f} → {100 * r['sampled_accuracy_last_fifth']:.1f}",
            f"{r['grpo_step_s_median']:.2f}"])
    out = {"held_out": markdown(
        ["config", "change to the default", "seeds", "synthetic strict %, SFT → GRPO (mean)", "gain per seed (1, 2, 3407)",
         "mean gain", "paraphrased gain per seed", "mean", "sampled accuracy %, first → last fifth", "GRPO s/step"],
        rows)}
    rows = []
    for r in tables["sampled"]:
        cells = [f"{s['first_half']:.2f}→{s['second_half']:.2f}" + (f" ({s['steps']} steps)" if s["steps"] != 14 else "")
                 for s in sorted(r["seeds"], key=lambda s: str(s["seed"]))]
        rows.append([r["config"], ", ".join(cells)])
    out["sampled"] = markdown(["config", "sampled accuracy, first half → second half of the steps (seeds 1, 2, 3407)"],
                              rows)
    return out


if __name__ == "__main__":
    main(HERE, build, render)
