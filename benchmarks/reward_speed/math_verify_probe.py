"""HF math-verify against helpers.data.answers: what each reads, and how fast (issue 16's "consider math-verify").

    pip install -e ".[dev]"      # math-verify 0.9.0 is in the dev extra (the tests' oracle), not a dependency
    PYTHONPATH=. python benchmarks/reward_speed/math_verify_probe.py

Results and the decision: benchmarks/reward_speed/README.md.
"""

import time

from math_verify import parse, verify

from helpers.data.answers import normalize_answer

CASES = ["1,234", "$18", "18.00", "-3", "\u22123", "3/4", "0.75", r"\boxed{18}", "18 dollars", "18.",
         "The answer is 18.", "$1,234.50", "x = 18", "3 + 4 = 7", r"\frac{1}{3}", r"$\boxed{\dfrac{3}{4}}$",
         r"\boxed{18 \text{ dollars}}", "50%", ".5", "18 or 20", "7e9", "0x7", "\u0661\u0668", "1e400"]
HOSTILE = {
    "frac+spaces": "\\frac{" + " " * 4090,
    "nested braces": "{" * 2048 + "}" * 2048,
    "digits": "1" * 4096,
    "latex": ("\\frac{1}{2} \\sqrt{x} " * 200)[:4096],
    "normal": ("<reasoning>" + "3 + 4 = 7\n" * 400 + "</reasoning><answer>7</answer>")[:4096],
}


def _ms(fn, arg) -> float:
    start = time.perf_counter()
    try:
        fn(arg)
    except Exception as exc:  # report, do not stop
        print(f"  raised {type(exc).__name__}: {exc}")
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    print(f"{'input':35} {'math-verify parse':42} {'ms':>7}  helpers.data.answers")
    for case in CASES:
        start = time.perf_counter()
        parsed = parse(case)
        ms = (time.perf_counter() - start) * 1e3
        print(f"{case!r:35} {parsed!r:42.42} {ms:7.1f}  {normalize_answer(case)!r:.40}")
    print("verify(18, 18.00):", verify(parse("18"), parse("18.00")), " verify(0.75, 3/4):", verify(parse("0.75"), parse("3/4")))
    for name, text in HOSTILE.items():
        print(f"{name:15} 4 KB: math-verify {_ms(parse, text):8.1f} ms   helpers.data.answers {_ms(normalize_answer, text):8.3f} ms")


if __name__ == "__main__":
    main()
