"""Adversarial completions for the reward functions and answer parsers, and a guarded timer.

Shared by ``tests/test_hostile.py`` (time ratio between two sizes) and ``benchmarks/reward_speed/reward_speed.py``
(per-call time at 4 KB). Each builder makes a string of exactly ``n`` characters from a pattern that
once was, or could be, slow for a regex: a ``\\frac{`` followed by whitespace (the cubic pattern of
issue 16), unclosed and nested braces, long digit runs with separators, exponents and slashes, many
tags, many numbers, many ``=`` signs.
"""

from __future__ import annotations

import gc
import time


def _fill(unit: str, n: int, head: str = "", tail: str = "") -> str:
    body = n - len(head) - len(tail)
    return head + (unit * (body // len(unit) + 1))[:body] + tail


BUILDERS = {
    "frac + spaces": lambda n: _fill(" ", n, "\\frac{"),
    "frac + spaces + }": lambda n: _fill(" ", n // 2, "\\frac{", "}") + _fill(" ", n - n // 2),
    "frac{ } { + spaces": lambda n: _fill(" ", n, "\\dfrac{ 1 } {"),
    "frac + newlines/tabs": lambda n: _fill(" \n\t", n, "\\frac {"),
    "many frac{": lambda n: _fill("\\frac{ ", n),
    "many frac{1}{": lambda n: _fill("\\frac{1}{ ", n),
    "text{ + spaces": lambda n: _fill(" ", n, "\\text{"),
    "latex soup": lambda n: _fill("\\left( \\text{ a } \\frac{1}{2} \\right) \\quad \\, ", n),
    "nested braces": lambda n: "\\boxed{" + "{" * ((n - 7) // 2) + "}" * (n - 7 - (n - 7) // 2),
    "many boxed{": lambda n: _fill("\\boxed{", n),
    "digit run": lambda n: "1" * n,
    "digit run ,1": lambda n: _fill("1", n, "", ",1"),
    "digit run .": lambda n: _fill("1", n, "", ".x"),
    "thousands groups": lambda n: _fill(",123", n, "1"),
    "thousands broken": lambda n: _fill(",12", n, "1"),
    "digits and dots": lambda n: _fill("1.", n),
    "exponent digits": lambda n: _fill("9", n, "1e"),
    "many exponents": lambda n: _fill("1e5 ", n),
    "hex run": lambda n: _fill("f", n, "0x"),
    "number + spaces": lambda n: _fill(" ", n, "1", "x"),
    "number + spaces + /": lambda n: _fill(" ", n, "1", "/"),
    "many fractions": lambda n: _fill("1/7 ", n),
    "slashes": lambda n: _fill("1/", n),
    "many numbers": lambda n: _fill("12 ", n),
    "unicode digits": lambda n: "\u0661" * n,
    "minus run": lambda n: _fill("\u2212", n, "", "1"),
    "equals": lambda n: _fill("= 1 ", n),
    "many answer tags": lambda n: _fill("<answer>", n),
    "many closing tags": lambda n: _fill("</answer>", n),
    "many tag pairs": lambda n: _fill("<reasoning>1</reasoning><answer>1</answer>", n),
    "answer with frac": lambda n: _fill(" ", n, "<reasoning>r</reasoning><answer>\\frac{", "</answer>"),
    "answer with digits": lambda n: _fill("7", n, "<reasoning>r</reasoning><answer>", "</answer>"),
    # issue 27: forms the number reader now reads or refuses, repeated, and the probe's slowest input
    "many big exponents": lambda n: _fill("1e3999 ", n),
    "big exponents over 7": lambda n: _fill("1e3999/7 ", n),
    "many powers": lambda n: _fill("10\u00b2 2^{3} 3**4 ", n),
    "many mixed numbers": lambda n: _fill("1\u00bd 2\\frac{1}{3} ", n),
    "many refused suffixes": lambda n: _fill("18! 3x 1_000 1e5e5 5m 2 million ", n),
    "many signs and currencies": lambda n: _fill("-$5 \u2212\u20ac5 ", n),
    "many sqrt and pi": lambda n: _fill("\\sqrt{16} 2\\pi ", n),
    "times ten + spaces": lambda n: _fill(" ", n, "1.5 \\times", "10^3"),
    "digit + spaces + frac": lambda n: _fill(" ", n, "1", "\\frac{1}{2}"),
    "power + spaces": lambda n: _fill(" ", n, "10^"),
    "glued letters": lambda n: _fill("a", n, "1"),
    "brackets then power": lambda n: _fill(")", n, "(5", "^2"),
}


class TooSlow(Exception):
    """A single call ran past the guard's limit."""


def time_limit(seconds: float, what: str):
    """Raise :class:`TooSlow` if the block runs longer than ``seconds`` (SIGALRM: Python's regex engine
    checks for signals, so a runaway match is interrupted). Main thread, POSIX only."""
    from helpers.runtime.threads import time_limit as limit

    return limit(seconds, lambda: TooSlow(f"{what} took over {seconds} s"))


def per_call(fn, arg, *, limit: float = 10.0, budget: float = 0.02, repeats: int = 5) -> float:
    """Seconds per call of ``fn(arg)``: the best of ``repeats`` batches, each of enough calls to take
    ``budget`` seconds (small timings are noisy); a single call over ``limit`` raises :class:`TooSlow`."""
    return per_call_pair(fn, arg, arg, limit=limit, budget=budget, repeats=repeats)[0]


def per_call_pair(fn, small, large, *, limit: float = 10.0, budget: float = 0.02, repeats: int = 5):
    """``(seconds per call on small, on large)``, measured in alternation (a change in the machine's load
    hits both), garbage collection off, best of ``repeats`` batches each; see :func:`per_call`."""
    name = getattr(fn, "__name__", repr(fn))
    calls = []
    for arg in (small, large):
        with time_limit(limit, name):
            start = time.perf_counter()
            fn(arg)
            first = time.perf_counter() - start
        calls.append((arg, max(1, int(budget / max(first, 1e-7))), first))
    best = [first for _, _, first in calls]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for i, (arg, n, _) in enumerate(calls):
                with time_limit(limit * n, name):
                    start = time.perf_counter()
                    for _ in range(n):
                        fn(arg)
                    best[i] = min(best[i], (time.perf_counter() - start) / n)
    finally:
        if enabled:
            gc.enable()
    return best[0], best[1]


def targets():
    """``{name: one-argument function}``: every reward function (as TRL calls it: a batch of two chat
    completions, the text alone and the text inside the answer tags; gold answer ``18``) and every
    answer parser."""
    from helpers.data.answers import last_number, normalize_answer, parse_number
    from helpers.data.chat_template import DEFAULT_FORMAT
    from helpers.data.gsm8k import extract_gsm8k_answer
    from helpers.rewards.reward_set import reward_functions

    def batch(text):  # the text as it is, and inside the tags (where the answer parsers read it)
        return [[{"role": "assistant", "content": text}],
                [{"role": "assistant", "content": f"<reasoning>r</reasoning><answer>{text}</answer>"}]]

    out = {}
    for f in reward_functions(combined=True).funcs:
        out[f.__name__] = lambda text, f=f: f(completions=batch(text), answer=["18", "18"])
    prefilled = reward_functions(combined=True, prefilled=True).funcs[0]
    out["combined_reward (prefilled)"] = lambda text: prefilled(completions=[text, text + "</answer>"], answer=["18"] * 2)
    out.update({
        "parse_number": parse_number, "last_number": last_number, "normalize_answer": normalize_answer,
        "extract_gsm8k_answer": lambda text: extract_gsm8k_answer("#### " + text),
        "ReasoningFormat.parse": DEFAULT_FORMAT.parse,
    })
    return out
