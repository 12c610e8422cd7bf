"""Tables of the cpu-profile runs kept in benchmarks/learning_cpu/raw.tar.xz (run folders of
``grpo-notebooks run --profile cpu``, named ``<variant>-<seed>``): one table per variant, a row per seed in
learning_rows.py's columns, and the paired "grpo vs sft" lines of the runs whose report.md has them.

    python benchmarks/learning_cpu/summarize.py                # from raw.tar.xz
    python benchmarks/learning_cpu/summarize.py runs           # a folder of your own run folders <variant>-<seed>
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from learning_rows import HEADER, format_row, values  # noqa: E402
from shelf import main, markdown  # noqa: E402

SEED_ORDER = {"3407": 0, "1": 1, "2": 2}
CHANGE = re.compile(r"^- grpo vs sft: (?P<text>.+)$")
WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)")


def _split(name: str) -> tuple[str, str]:
    variant, _, seed = name.rpartition("-")
    return variant, seed


def build(raw: Path) -> dict:
    runs = sorted((p for p in raw.iterdir() if (p / "eval" / "results.json").exists()),
                  key=lambda p: (_split(p.name)[0], SEED_ORDER.get(_split(p.name)[1], 9), p.name))
    variants: dict[str, list[dict]] = {}
    changes, walls = [], []
    for run in runs:
        variant, _ = _split(run.name)
        variants.setdefault(variant, []).append({"run": run.name, **values(run)})
        report = run / "report.md"
        lines = [m["text"] for m in map(CHANGE.match, report.read_text().splitlines()) if m] if report.exists() else []
        for name, text in zip(("synthetic", "paraphrased"), lines, strict=False):
            changes.append({"run": run.name, "set": name, "grpo_vs_sft": text})
        log = run / "command.log"  # GNU time's report at its end, where the command ran under /usr/bin/time -v
        m = WALL.search(log.read_text()) if log.exists() else None
        if m:
            walls.append({"run": run.name, "wall_s": round(int(m[1] or 0) * 3600 + int(m[2]) * 60 + float(m[3]), 2)})
    return {"variants": variants, "changes": changes, "command_wall": walls}


def render(tables: dict) -> dict[str, str]:
    out = {name: HEADER + "\n" + "\n".join(format_row(v) for v in rows) for name, rows in tables["variants"].items()}
    out["command_wall"] = markdown(["run", "the whole command, wall minutes (GNU time)"],
                                   [[w["run"], f"{w['wall_s'] / 60:.1f}"] for w in tables["command_wall"]])
    out["changes"] = markdown(["run", "held-out set", "grpo vs sft (report.md)"],
                              [[c["run"], c["set"], c["grpo_vs_sft"]] for c in tables["changes"]])
    return out


if __name__ == "__main__":
    main(HERE, build, render)
