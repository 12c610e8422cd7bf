"""How much of SVAMP the embedded SmolLM2-135M-Instruct solves on a CPU: base model and a run's adapters.

    python benchmarks/svamp_cpu/svamp_cpu.py RUN_DIR 160 OUT.json    # RUN_DIR from `grpo-notebooks run --profile cpu`

Evaluates the base model and RUN_DIR's SFT and GRPO adapters (whichever exist) on the first N problems of SVAMP
(``helpers.data.svamp.load_svamp``: a local SVAMP.json or the pinned download; its fixed order makes them a sample of
the set) with ``helpers.evaluate.evaluation.evaluate_sets``: greedy, the cpu profile's 96 new tokens, batches of 32,
one torch thread. Prints the table and the paired changes, and writes OUT.json: per model its scores and, per problem,
the upstream ID and whether it was strictly right (no problem text), and the wall time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(run_dir: str, n: int, out: str) -> None:
    from helpers.data.svamp import load_svamp
    from helpers.evaluate.evaluation import evaluate_sets, find_adapters
    from helpers.evaluate.scoring import change_lines
    from helpers.model.load import load_model

    ds = load_svamp(limit=n)
    model, tokenizer = load_model(profile="cpu")
    adapters = find_adapters(run_dir)
    start = time.perf_counter()
    table = evaluate_sets({"svamp": ds}, run_dir, model=model, tokenizer=tokenizer, adapters=adapters, problems=n,
                          write=False, progress=False, profile="cpu", threads=1)["svamp"]
    seconds = time.perf_counter() - start
    print(table.to_markdown())
    scores = [s.as_dict() for s in table.scores]
    for line in change_lines(scores):
        print(line)
    print(f"{seconds:.0f} s for {len(table.scores)} models x {len(ds)} problems", flush=True)
    for s in scores:
        s.pop("samples")  # problem texts stay upstream
    record = {"run_dir": str(run_dir), "problems": len(ds), "ids": list(ds["id"]), "settings": table.settings,
              "seconds": round(seconds, 1), "description": ds.info.description.split(" (")[0], "scores": scores,
              "changes": change_lines(scores)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
