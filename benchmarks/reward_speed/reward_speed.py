"""Per-call time of every reward function and answer parser on 4 KB adversarial completions.

    PYTHONPATH=. python benchmarks/reward_speed/reward_speed.py [--size 4096] [--markdown]

The completions are the builders of ``tests/hostile_inputs.py`` (``\\frac{`` + whitespace, nested braces,
long digit runs, many tags, ...), each exactly ``--size`` characters. Prints, per function, the worst
per-call time over all builders and which builder it was (best of 5 batches; a reward call scores
two completions, as TRL passes a batch: the text alone and the text inside the answer tags).
Results: ``benchmarks/reward_speed/README.md``.
"""

import argparse
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hostile_inputs import BUILDERS, per_call, targets  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="characters per completion (default 4096)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    texts = {name: build(args.size) for name, build in BUILDERS.items()}
    assert all(len(t) == args.size for t in texts.values()), "a builder made the wrong length"
    rows = []
    for fname, fn in targets().items():
        times = {name: per_call(fn, text) for name, text in texts.items()}
        worst = max(times, key=times.get)
        rows.append((fname, times[worst], worst, sum(times.values()) / len(times)))
    print(f"{len(texts)} adversarial completions of {args.size} characters; Python {platform.python_version()}, "
          f"{platform.machine()}")
    if args.markdown:
        print("\n| function | worst ms per call | worst input | mean ms per call |\n|---|---:|---|---:|")
        for fname, worst_t, worst, mean in rows:
            print(f"| `{fname}` | {worst_t * 1e3:.3f} | {worst} | {mean * 1e3:.3f} |")
    else:
        for fname, worst_t, worst, mean in rows:
            print(f"{fname:30} worst {worst_t * 1e3:8.3f} ms ({worst}), mean {mean * 1e3:7.3f} ms")
    print(f"slowest call: {max(r[1] for r in rows) * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
