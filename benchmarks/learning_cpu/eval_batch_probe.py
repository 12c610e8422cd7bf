"""Notebook 08's evaluation on a CPU at several batch sizes: wall time and whether every problem scores the same.

    python benchmarks/learning_cpu/eval_batch_probe.py RUN_DIR 16 32 48 16 32 48     # RUN_DIR from `grpo-notebooks run --profile cpu`

Evaluates RUN_DIR's SFT adapter on the cpu profile's held-out sets (64 synthetic + 32 paraphrased problems, greedy,
96 new tokens, two torch threads) with ``helpers.evaluate.evaluation.evaluate_sets`` once per batch size given, in that order
(repeat them to see the spread), and prints one line per pass. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(run_dir: str, sizes: list[int]) -> None:
    from helpers.evaluate.evaluation import evaluate_sets
    from helpers.evaluate.held_out import held_out_sets
    from helpers.model.load import load_model

    model, tokenizer = load_model(profile="cpu")
    sets = held_out_sets(64, gsm8k=False, svamp_n=0, profile="cpu")
    first = None
    for size in sizes:
        start = time.perf_counter()
        tables = evaluate_sets(sets, run_dir, model=model, tokenizer=tokenizer,
                               adapters={"sft": Path(run_dir) / "sft" / "adapter"}, include_base=False,
                               batch_size=size, write=False, progress=False, profile="cpu", threads=2)
        seconds = time.perf_counter() - start
        per_problem = [x for table in tables.values() for x in table.scores[0].strict_per_problem]
        same = "-" if first is None else f"{sum(a == b for a, b in zip(per_problem, first, strict=True))}/{len(first)}"
        first = first or per_problem
        print(f"batch {size}: {seconds:.1f} s, strict {sum(per_problem)}/{len(per_problem)}, "
              f"same per problem as the first pass: {same}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2 or not (Path(sys.argv[1]) / "sft" / "adapter").is_dir():
        raise SystemExit("usage: eval_batch_probe.py RUN_DIR [BATCH ...]; fix: RUN_DIR is a finished "
                         "`grpo-notebooks run --profile cpu` folder (it needs RUN_DIR/sft/adapter)")
    main(sys.argv[1], [int(x) for x in sys.argv[2:]] or [16, 32])
