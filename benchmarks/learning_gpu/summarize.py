"""Tables of the GPU runs kept in benchmarks/learning_gpu/raw.tar.xz (one folder per run: GRPO's metrics, the SFT
summary, the evaluation's ``results.json`` where notebook 08 ran, ``timings.json``; flat names there, a run folder's
own layout for your runs):

- ``curves_*``: GRPO's own rollouts, first fifth of the logged steps -> last fifth, and seconds per step;
- ``held_out_*``: the held-out evaluation of base, SFT and SFT+GRPO where notebook 08 ran;
- ``notebook_seconds``: each notebook's wall time.

``*_first`` are the first session's runs (``e2e-SEED``: the README's command, all notebooks, cut short by the session's
time; ``sft-100``: a 100-step warm-up), ``*_second`` the second session's three seeds (``learn-SEED``), ``*_t4`` the
colab-t4 rehearsal.

    python benchmarks/learning_gpu/summarize.py                  # from raw.tar.xz
    python benchmarks/learning_gpu/summarize.py runs/gpu         # your own: run folders as grpo-notebooks writes them
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shelf import main, markdown, rounded  # noqa: E402

SEED_ORDER = {"3407": 0, "1": 1, "2": 2}
NOTEBOOKS = ["01", "02", "03", "04", "05", "06", "07", "08"]


def _session(name: str) -> str:
    return "second" if name.startswith("learn-") else "t4" if name.startswith("t4") else "first"


def _order(path: Path) -> tuple:
    prefix, _, seed = path.name.rpartition("-")
    return (prefix, SEED_ORDER.get(seed, 9), path.name)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _file(folder: Path, kind: str) -> Path | None:
    """A run's file of ``kind``: where ``grpo-notebooks run`` writes it, or the flat name of the archived runs."""
    names = {"metrics": ("grpo/metrics.jsonl", "grpo_metrics.jsonl"), "sft": ("sft/summary.json", "sft_summary.json"),
             "results": ("eval/results.json", "results.json")}[kind]
    return next((folder / n for n in names if (folder / n).exists()), None)


def fifths(rows: list[dict], key: str) -> list[float] | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return None
    k = max(1, len(values) // 5)
    return [rounded(sum(values[:k]) / k, 6), rounded(sum(values[-k:]) / k, 6)]


def curves(folder: Path) -> dict | None:
    path = _file(folder, "metrics")
    rows = [r for r in _jsonl(path) if r.get("reward") is not None] if path else []
    if not rows:
        return None
    summary = _file(folder, "sft")
    sft = json.loads(summary.read_text()) if summary else {}
    return {"run": folder.name, "sft_steps": sft.get("steps"), "sft_format": sft.get("compliance_after"),
            "grpo_steps_logged": len(rows), "s_per_step": rounded(rows[-1]["elapsed_s"] / len(rows), 4),
            "reward": fifths(rows, "reward"), "sampled_format": fifths(rows, "rewards/format_compliance/mean"),
            "sampled_accuracy": fifths(rows, "rewards/accuracy/mean"),
            "zero_spread": fifths(rows, "frac_reward_zero_std")}


def held_out(folder: Path) -> list[dict]:
    path = _file(folder, "results")
    if path is None:
        return []
    out = []
    for name, table in json.loads(path.read_text())["datasets"].items():
        scores = {s["name"]: {k: s[k] for k in ("strict_correct", "strict_accuracy", "format_compliance", "problems")}
                  for s in table["scores"]}
        out.append({"run": folder.name, "set": name, "problems": table["settings"]["problems"],
                    "backend": table["settings"]["backend"], "scores": scores})
    return out


def build(raw: Path) -> dict:
    folders = sorted((p for p in raw.iterdir() if p.is_dir()), key=_order)
    tables: dict = {}
    for f in folders:
        row = curves(f)
        if row:
            tables.setdefault(f"curves_{_session(f.name)}", []).append(row)
    for f in folders:
        for row in held_out(f):
            tables.setdefault(f"held_out_{_session(f.name)}", []).append(row)
    tables["notebook_seconds"] = []
    for f in folders:
        if (f / "timings.json").exists():
            timings = json.loads((f / "timings.json").read_text())
            tables["notebook_seconds"].append({"run": f.name, "seconds": {k[:2]: v for k, v in timings.items()}})
    return tables


def _pair(values: list[float] | None) -> str:
    return "–" if values is None else f"{values[0]:.2f} → {values[1]:.2f}"


def render(tables: dict) -> dict[str, str]:
    out = {}
    for name, rows in tables.items():
        if name.startswith("curves_"):
            out[name] = markdown(
                ["run", "SFT steps", "SFT format (64 held out)", "GRPO steps logged", "s/step", "reward",
                 "sampled format", "sampled accuracy", "groups without spread"],
                [[r["run"], r["sft_steps"] or "–", "–" if r["sft_format"] is None else f"{r['sft_format']:.0%}",
                  r["grpo_steps_logged"], f"{r['s_per_step']:.2f}", _pair(r["reward"]), _pair(r["sampled_format"]),
                  _pair(r["sampled_accuracy"]), _pair(r["zero_spread"])] for r in rows])
        elif name.startswith("held_out_"):
            lines = []
            for r in rows:
                s = r["scores"]
                cells = [f"{s[m]['strict_accuracy']:.1%} ({s[m]['strict_correct']}/{s[m]['problems']})" if m in s else "–"
                         for m in ("base", "sft", "grpo")]
                gain = f"{(s['grpo']['strict_accuracy'] - s['sft']['strict_accuracy']) * 100:+.1f}"
                fmt = " / ".join(f"{s[m]['format_compliance']:.0%}" for m in ("base", "sft", "grpo") if m in s)
                lines.append([r["run"], f"{r['set']} ({r['problems']}, {r['backend']})", *cells, gain, fmt])
            out[name] = markdown(["run", "held-out set", "base strict", "SFT strict", "SFT+GRPO strict",
                                  "GRPO − SFT (points)", "format base / SFT / GRPO"], lines)
    out["notebook_seconds"] = markdown(
        ["run", *(f"{n} s" for n in NOTEBOOKS)],
        [[r["run"], *(f"{r['seconds'][n]:.0f}" if n in r["seconds"] else "–" for n in NOTEBOOKS)]
         for r in tables["notebook_seconds"]])
    return out


if __name__ == "__main__":
    main(HERE, build, render)
