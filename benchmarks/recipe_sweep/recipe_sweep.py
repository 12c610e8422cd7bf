"""One cpu-profile recipe end to end through the helpers API: SFT warm-up -> GRPO -> greedy evaluation
of base / SFT / SFT+GRPO on the 64 held-out synthetic problems and the paraphrased set.

    python benchmarks/recipe_sweep/recipe_sweep.py --config benchmarks/recipe_sweep/configs/d_filter_drop.json --seed 3407 --out DIR

The config is a JSON object whose keys override :data:`DEFAULTS` (the cpu recipe before issue 15: ``a_old_default``;
every other config in ``configs/`` names its changes to it).
Writes ``DIR/result.json`` (accuracy and format per set and model, the gain of GRPO over SFT, GRPO's
sampled accuracy in the first and last fifth of its steps, zero-spread groups, timings). Runs on a
CPU or on CUDA; on CUDA it uses float32 and plain transformers (no Unsloth, no vLLM), so its numbers
follow the CPU's (sampling on another device draws other random numbers: same recipe, other draws).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEFAULTS = dict(
    sft_steps=8, sft_learning_rate=5e-4, sft_problems=256, sft_levels=[1, 2, 3],
    grpo_steps=24, prompts_per_step=2, num_generations=4, max_completion_length=80, temperature=1.0,
    learning_rate=1e-4, grpo_levels=[1, 2, 3], grpo_problems=200, scale_rewards="group", loss_type="dapo",
    beta=0.0, weights=None, closeness_tolerance=0.5, group_filter=None, warmup_ratio=0.1,
    eval_problems=64, paraphrased_problems=64, eval_max_new_tokens=96, include_base=True,
)


def _fifths(history: list[dict], key: str):
    values = [r[key] for r in history if r.get(key) is not None]
    if not values:
        return None
    k = max(1, len(values) // 5)
    return [sum(values[:k]) / k, sum(values[-k:]) / k]


def run(config: dict, seed: int, out: Path) -> dict:
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise SystemExit(f"unknown config keys {sorted(unknown)}; fix: use keys of DEFAULTS in {__file__}")
    c = {**DEFAULTS, **config}
    import torch

    if torch.cuda.is_available():  # mimic the CPU: plain transformers, float32
        sys.modules["unsloth"] = None  # importlib.util.find_spec("unsloth") is None: detect() says no unsloth
        sys.modules["vllm"] = None
    os.environ["GRPO_PROFILE"] = "cpu"
    from helpers.data.synthetic import synthetic_dataset
    from helpers.evaluate.evaluation import evaluate_sets
    from helpers.evaluate.held_out import held_out_sets
    from helpers.files.runs import RunLayout
    from helpers.model.load import load_model
    from helpers.rewards.reward_set import reward_functions
    from helpers.train.grpo import train_grpo
    from helpers.train.grpo_config import GRPOSettings
    from helpers.train.policy import load_policy
    from helpers.train.sft import sft_dataset, train_sft
    from helpers.train.sft_config import SFTSettings

    cuda = torch.cuda.is_available()
    precision = dict(bf16=False, fp16=False) if cuda else {}
    layout = RunLayout(out)
    times = {}
    t0 = time.perf_counter()

    model, tokenizer = load_model(profile="cpu", dtype=torch.float32)
    sft_settings = SFTSettings.for_profile("cpu", seed=seed, max_steps=c["sft_steps"],
                                           learning_rate=c["sft_learning_rate"], **precision)
    sft_data = sft_dataset(synthetic_dataset(c["sft_problems"], split="train", seed=seed,
                                             difficulty=tuple(c["sft_levels"])))
    held = synthetic_dataset(sft_settings.compliance_prompts, split="test", seed=seed)
    sft = train_sft(model, tokenizer, sft_data, settings=sft_settings, held_out=held, run_dir=out,
                    dashboard={"notebook": False, "plot_every": 0})
    times["sft_s"] = round(time.perf_counter() - t0, 1)
    del model, sft

    t1 = time.perf_counter()
    base, tokenizer = load_model(profile="cpu", dtype=torch.float32)
    policy, tokenizer, _ = load_policy(out, profile="cpu", model=base, tokenizer=tokenizer)
    grpo_settings = GRPOSettings.for_profile(
        "cpu", seed=seed, max_steps=c["grpo_steps"], num_generations=c["num_generations"],
        per_device_train_batch_size=c["prompts_per_step"] * c["num_generations"],
        max_completion_length=c["max_completion_length"], temperature=c["temperature"],
        learning_rate=c["learning_rate"], scale_rewards=c["scale_rewards"], loss_type=c["loss_type"],
        beta=c["beta"], warmup_ratio=c["warmup_ratio"], save_steps=10_000, **precision)
    data = synthetic_dataset(c["grpo_problems"], split="train", seed=seed, difficulty=tuple(c["grpo_levels"]))
    rewards = reward_functions(c["weights"], tolerance=c["closeness_tolerance"])
    extra = {}
    if c["group_filter"]:
        from helpers.train.group_filter import GroupFilter

        extra["group_filter"] = GroupFilter(**c["group_filter"])
    result = train_grpo(policy, tokenizer, data, rewards, settings=grpo_settings, run_dir=out,
                        dashboard={"notebook": False, "plot_every": 0}, **extra)
    times["grpo_s"] = round(time.perf_counter() - t1, 1)
    times["grpo_step_s"] = round(result.seconds / max(result.steps, 1), 2)
    history = result.history
    del policy, result

    t2 = time.perf_counter()
    base, tokenizer = load_model(profile="cpu", dtype=torch.float32)
    sets = held_out_sets(c["eval_problems"], gsm8k=False, paraphrased=c["paraphrased_problems"], profile="cpu")
    tables = evaluate_sets(sets, layout, model=base, tokenizer=tokenizer, problems=c["eval_problems"],
                           include_base=c["include_base"],
                           max_new_tokens=c["eval_max_new_tokens"], profile="cpu", progress=False)
    times["eval_s"] = round(time.perf_counter() - t2, 1)
    times["total_s"] = round(time.perf_counter() - t0, 1)

    scores = {}
    for set_name, table in tables.items():
        scores[set_name] = {s.name: {k: v for k, v in s.as_dict().items()
                                     if k in ("strict_accuracy", "lenient_accuracy", "format_compliance", "strict_correct",
                                              "formatted", "mean_completion_tokens", "truncated")}
                            for s in table.scores}
    gains = {name: round(100 * (s["grpo"]["strict_accuracy"] - s["sft"]["strict_accuracy"]), 1)
             for name, s in scores.items() if "grpo" in s and "sft" in s}
    summary = {
        "config": c, "seed": seed, "device": "cuda" if cuda else "cpu", "scores": scores,
        "gain_points": gains,
        "sampled_accuracy_fifths": _fifths(history, "rewards/accuracy/mean"),
        "sampled_format_fifths": _fifths(history, "rewards/format_compliance/mean"),
        "reward_fifths": _fifths(history, "reward"),
        "frac_reward_zero_std_fifths": _fifths(history, "frac_reward_zero_std"),
        "filter": {k: sum(r.get(k, 0) or 0 for r in history) for k in
                   ("group_filter/zero_spread", "group_filter/dropped", "group_filter/replaced",
                    "group_filter/extra_rounds")},
        "times": times,
    }
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "result.json")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON file: keys override DEFAULTS ({} = the recipe before issue 15)")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--out", required=True, help="run folder (result.json goes here)")
    parser.add_argument("--override", default="{}", help="JSON object applied over the config (e.g. a larger "
                        "evaluation for every config of a sweep: '{\"eval_problems\": 200}')")
    args = parser.parse_args(argv)
    config = {**json.loads(Path(args.config).read_text()), **json.loads(args.override)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = run(config, args.seed, out)
    print(json.dumps({k: summary[k] for k in ("gain_points", "sampled_accuracy_fifths", "times")}))
    print(json.dumps({s: {m: v["strict_accuracy"] for m, v in d.items()} for s, d in summary["scores"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
