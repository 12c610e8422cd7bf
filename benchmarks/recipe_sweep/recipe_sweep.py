"""One recipe end to end through the notebooks' own cells (05 → 06 → 07 → 08, run in this process by
``helpers.run.stage.run_notebook``, the code ``grpo-notebooks run`` executes), on the ``cpu`` profile, and its
numbers in one ``result.json``: accuracy and format per held-out set and model, the gain of GRPO over SFT, GRPO's
sampled accuracy in the first and last fifth of its steps, zero-spread groups, timings.

    python benchmarks/recipe_sweep/recipe_sweep.py --config benchmarks/recipe_sweep/configs/d_filter_drop.json --seed 3407 --out DIR

A config is a JSON object of notebook parameters (``grpo-notebooks params`` lists them: ``grpo_learning_rate``,
``grpo_temperature``, ``num_generations``, ``train_levels``, ``group_filter``, ``sft_steps``, ``eval_problems``, ...)
and, for what a notebook writes as a literal in a cell (notebook 07's ``loss_type``, 05's reward weights), ``"edits"``:
``{"07": [["old text", "new text"], ...]}`` applied to a copy of that notebook, as a learner would edit the cell.
The configs of the two recorded sweeps (``configs/``) use the former script's keys, which are translated
(``OLD_KEYS``); they ran at commits 1b0c22f and b442f5c (README). On CUDA the job runs float32 plain transformers
(no Unsloth, no vLLM), so its numbers follow the CPU's recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

OLD_KEYS = {"temperature": "grpo_temperature", "learning_rate": "grpo_learning_rate", "grpo_levels": "train_levels",
            "grpo_problems": "grpo_train_problems", "sft_problems": "sft_train_problems"}
_OLD_EDITS = {  # the former script's keys for what notebook cells now write as literals
    "loss_type": ("07", 'loss_type="dapo"', 'loss_type="{}"'),
    "scale_rewards": ("07", 'scale_rewards="group"', 'scale_rewards="{}"'),
}


def translate(config: dict) -> tuple[dict, dict]:
    """``(notebook parameters, cell edits)`` of a config, old keys translated; keys that cannot be are refused."""
    params, edits = {}, {k: [tuple(e) for e in v] for k, v in config.get("edits", {}).items()}
    for key, value in config.items():
        if key == "edits" or key == "paraphrased_problems":  # the paraphrased set is half of eval_problems now
            continue
        if key == "group_filter":
            params[key] = (value or {}).get("mode", "off") if not isinstance(value, str) else value
        elif key in _OLD_EDITS:
            notebook, old, new = _OLD_EDITS[key]
            edits.setdefault(notebook, []).append((old, new.format(value)))
        elif key in ("weights", "closeness_tolerance", "prompts_per_step", "sft_levels"):
            raise SystemExit(f"config key {key!r}: not a notebook parameter; fix: an 'edits' entry for notebook 05 "
                             "or 07's cell (see this script's docstring).")
        else:
            params[OLD_KEYS.get(key, key)] = list(value) if isinstance(value, list) else value
    return params, edits


def _notebook(number: str, edits: list, folder: Path) -> Path:
    (path,) = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
    if not edits:
        return path
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for old, new in edits:
        cells = [c for c in notebook["cells"] if old in "".join(c["source"])]
        if len(cells) != 1:
            raise SystemExit(f"edit {old!r}: found in {len(cells)} cells of {path.name}; fix: quote one cell's text.")
        cells[0]["source"] = "".join(cells[0]["source"]).replace(old, new)
    copy = folder / path.name
    copy.write_text(json.dumps(notebook), encoding="utf-8")
    return copy


def run(config: dict, seed: int, out: Path) -> dict:
    params, edits = translate(config)
    import papermill as pm
    import torch

    if torch.cuda.is_available():  # mimic the CPU: plain transformers, float32
        sys.modules["unsloth"] = None  # importlib.util.find_spec("unsloth") is None: detect() says no unsloth
        sys.modules["vllm"] = None
    from helpers.dashboard.metrics import read_metrics
    from helpers.evaluate.scoring import paired_change
    from helpers.run.stage import run_notebook
    from helpers.train.curves import fifths

    times, namespaces = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for number in ("05", "06", "07", "08"):
            path = _notebook(number, edits.get(number, []), Path(folder))
            declared = set(pm.inspect_notebook(str(path)))
            given = {"profile": "cpu", "run_dir": str(out), "seed": seed, **params}
            start = time.perf_counter()
            namespaces[number] = run_notebook(path, {k: v for k, v in given.items() if k in declared})
            times[f"notebook_{number}_s"] = round(time.perf_counter() - start, 1)
    unused = set(params) - {k for ns in namespaces.values() for k in ns}
    if unused:
        raise SystemExit(f"no notebook declares {sorted(unused)}; fix: use names `grpo-notebooks params` lists.")
    history = [r for r in read_metrics(out / "grpo" / "metrics.jsonl") if r.get("reward") is not None]
    scores, gains = {}, {}
    for set_name, table in namespaces["08"]["tables"].items():
        by_model = {s.name: s for s in table.scores}
        scores[set_name] = {name: {k: v for k, v in s.as_dict().items()
                                   if k in ("strict_accuracy", "lenient_accuracy", "format_compliance", "strict_correct",
                                            "formatted", "mean_completion_tokens", "truncated")}
                            for name, s in by_model.items()}
        if "grpo" in by_model and "sft" in by_model:
            gains[set_name] = paired_change(by_model["sft"].as_dict(), by_model["grpo"].as_dict())
    summary = {
        "config": config, "parameters": params, "edits": edits, "seed": seed,
        "device": "cuda" if torch.cuda.is_available() else "cpu", "scores": scores, "gain": gains,
        **{f"{name}_fifths": fifths([r.get(key) for r in history]) for name, key in (
            ("sampled_accuracy", "rewards/accuracy/mean"), ("sampled_format", "rewards/format_compliance/mean"),
            ("reward", "reward"), ("frac_reward_zero_std", "frac_reward_zero_std"))},
        "filter": {k: sum(r.get(k, 0) or 0 for r in history) for k in
                   ("group_filter/zero_spread", "group_filter/dropped", "group_filter/replaced")},
        "times": times,
    }
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, out / "result.json")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON file: notebook parameters (and cell edits)")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--out", required=True, help="run folder (result.json goes here)")
    parser.add_argument("--override", default="{}", help="JSON object applied over the config (e.g. a larger "
                        "evaluation for every config of a sweep: '{\"eval_problems\": 200}')")
    args = parser.parse_args(argv)
    config = {**json.loads(Path(args.config).read_text()), **json.loads(args.override)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = run(config, args.seed, out)
    print(json.dumps({k: summary[k] for k in ("gain", "sampled_accuracy_fifths", "times")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
