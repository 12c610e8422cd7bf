"""HF math-verify against helpers.answers: what each reads, and how fast (issue 16's "consider math-verify").

    pip install --target /tmp/mv math-verify     # not a dependency of the suite
    PYTHONPATH=.:/tmp/mv python benchmarks/math_verify_probe.py

Results and the decision: benchmarks/reward_speed.md.
"""
import time
from math_verify import parse, verify
from helpers.answers import normalize_answer, answers_match
cases = ["1,234","$18","18.00","-3","\u22123","3/4","0.75",r"\boxed{18}","18 dollars","18.","The answer is 18.","$1,234.50","x = 18",
 "3 + 4 = 7", r"\frac{1}{3}", r"$\boxed{\dfrac{3}{4}}$", r"\boxed{18 \text{ dollars}}", "50%", ".5", "18 or 20", "7e9", "0x7", "\u0661\u0668","1e400"]
for c in cases:
    t=time.perf_counter(); p = parse(c); dt=time.perf_counter()-t
    print(f"{c!r:35} mv={p!r:40.40} {dt*1e3:7.1f}ms  ours={normalize_answer(c)!r}")
print("verify 18.00 vs 18:", verify(parse("18"), parse("18.00")), "3/4 vs 0.75:", verify(parse("0.75"), parse("3/4")))
for name, s in [("frac+spaces", "\\frac{" + " "*4000), ("nested braces", "{"*2000+"}"*2000), ("digits", "1"*4000), ("latex", "\\frac{1}{2} \\sqrt{x} "*200), ("normal", "<reasoning>" + "3 + 4 = 7\n"*400 + "</reasoning><answer>7</answer>")]:
    s = s[:4096]
    t=time.perf_counter()
    try: parse(s)
    except Exception as e: print("raised", e)
    dt=time.perf_counter()-t
    t=time.perf_counter(); normalize_answer(s); dt2=time.perf_counter()-t
    print(f"{name:15} math-verify {dt*1e3:8.1f} ms   ours {dt2*1e3:8.3f} ms")
