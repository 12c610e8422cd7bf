"""The tables of benchmarks/t4: each measurement's step on its card with the T4 step it predicts, and what that makes
of notebook 07 (the `colab-t4` profile's GRPO steps) on a T4.

    python benchmarks/t4/summarize.py                 # from benchmarks/t4/raw.tar.xz
    python benchmarks/t4/summarize.py results/        # your own: a folder of measure.py --out JSON files

The notebook-07 table multiplies the predicted step by the profile's ``grpo_steps`` (read from the profile table
now, so a changed profile shows here); loading, the first step's compile and the checkpoints are not in it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parents[1]), str(HERE.parent), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from measure import PROFILE, table  # noqa: E402  (measure.py imports torch only when it measures)
from shelf import main, markdown  # noqa: E402

from helpers.runtime.profiles import profile_settings  # noqa: E402


def build(raw: Path) -> dict:
    """Each measurement (``<card>-<date>.json``) as measure.py wrote it, and notebook 07's predicted T4 time."""
    steps = profile_settings(PROFILE).grpo_steps
    runs = {}
    for path in sorted(raw.glob("*.json")):
        res = json.loads(path.read_text())
        p = res.get("prediction")
        runs[path.stem] = {"result": res, "grpo_steps": steps, "notebook_07_minutes": None if not p else {
            "two_part": round(steps * p["two_part"]["central"] / 60, 1),
            "simple": round(steps * p["simple"]["central"] / 60, 1),
            "range": [round(steps * s / 60, 1) for s in p["range"]],
            "floor": round(steps * p["floor"] / 60, 1)}}
    return {"runs": runs}


def render(tables: dict) -> dict[str, str]:
    out = {}
    for name, run in tables["runs"].items():
        out[name] = table(run["result"])
        minutes, g = run["notebook_07_minutes"], run["result"].get("grpo")
        if minutes:
            out[f"{name} notebook 07"] = markdown(
                ["notebook 07 on a T4 (colab-t4)", "predicted", "peak GPU memory (measured)"],
                [[f"{run['grpo_steps']} GRPO steps x the predicted step",
                  f"{minutes['two_part']:.0f} min (two-part), {minutes['simple']:.0f} min (simple); range "
                  f"{minutes['range'][0]:.0f}-{minutes['range'][1]:.0f} min; floor {minutes['floor']:.0f} min",
                  f"{g['peak_reserved_gib'] + g['outside_torch_gib']:.1f} GiB ({g['peak_reserved_gib']} reserved + "
                  f"{g['outside_torch_gib']} outside PyTorch)"]])
    return out


if __name__ == "__main__":
    main(HERE, build, render)
