"""The tables of benchmarks/gpu_warnings: the warnings of a ``gpu``-profile run by kind before and after issue 31's
fixes (counted by count.py), the GRPO time left as the console showed it against the true remaining time, the vLLM
engine starts, and the rollout lines of notebook 07.

    python benchmarks/gpu_warnings/summarize.py            # from benchmarks/gpu_warnings/raw.tar.xz
    python benchmarks/gpu_warnings/summarize.py runs       # your own: runs/warn-before/, runs/warn-before.console, ...

A raw folder holds the run folders ``warn-before`` and ``warn-after`` (their ``notebooks/*.ipynb`` and
``grpo/metrics.jsonl``) and beside each the console it printed, ``warn-before.console`` and ``warn-after.console``.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from count import notebook_lines, tally  # noqa: E402
from shelf import main, markdown, rounded  # noqa: E402

RUNS = ("warn-before", "warn-after")
SHARED = 7  # the last notebook both runs reached: warn-before stopped at the end of 07
TRITON = "vLLM WARNING: Triton kernel JIT compilation during inference"
START = re.compile(r"^\[\d+/\d+\] (\d\d)_\S+\.ipynb \.\.\.$")  # the runner's line as a notebook starts
STEP = re.compile(r"grpo step (\d+)/(\d+) \|.*\| (?:([\d.]+) s/step \| ([\d:]+) left|estimating time left)\s*$")
ENGINE = "Initializing a V1 LLM engine"
ROLLOUT_LINES = ("GRPO rollouts:", "Unsloth: Merged-weight rollouts")
RETRIES = ("Unsloth: engine start retried", "suite: engine start retried (its one line)")


def console_lines(raw: Path, run: str) -> list[str]:
    return (raw / f"{run}.console").read_text(encoding="utf-8", errors="replace").splitlines()


def sources(raw: Path, run: str) -> list[tuple[str, int | None, list[str]]]:
    """``(label, notebook, lines)``: each executed notebook's stream lines, and the console cut where the runner
    starts each notebook (``[i/n] NN_name.ipynb ...``; the lines before the first: notebook None)."""
    found = [(nb.name[:2], int(nb.name[:2]), notebook_lines(nb))
             for nb in sorted((raw / run / "notebooks").glob("*.ipynb"))]
    chunk: list[str] = []
    chunks = [(None, chunk)]
    for line in console_lines(raw, run):
        if start := START.match(line.strip()):
            chunk = []
            chunks.append((int(start[1]), chunk))
        chunk.append(line)
    return found + [("console", number, lines) for number, lines in chunks]


def grouped(parts: list[tuple[str, int | None, list[str]]]) -> tuple[Counter, dict[str, set[str]]]:
    """count.py's counts per kind over ``parts``, with vLLM's Triton JIT lines (one kind per kernel) in one row."""
    counts, where = tally([(label, lines) for label, _, lines in parts])
    merged: Counter = Counter()
    seen: dict[str, set[str]] = defaultdict(set)
    for kind, n in counts.items():
        name = f"{TRITON} (all kernels)" if kind.startswith(TRITON) else kind
        merged[name] += n
        seen[name] |= where[kind]
    return merged, seen


def warnings(raw: Path) -> list[dict]:
    """One row per kind: the count of each run on notebooks 01-07 and their console, and warn-after's on 08."""
    shared, later, seen = {}, {}, defaultdict(set)
    for run in RUNS:
        parts = sources(raw, run)
        shared[run], where = grouped([p for p in parts if p[1] is None or p[1] <= SHARED])
        later[run], where_later = grouped([p for p in parts if p[1] is not None and p[1] > SHARED])
        for kind in set(where) | set(where_later):
            seen[kind] |= where.get(kind, set()) | where_later.get(kind, set())
    before, after = RUNS
    rows = [{"kind": kind, "before": shared[before][kind], "after": shared[after][kind],
             "after_08": later[after][kind], "seen_in": sorted(seen[kind])}
            for kind in seen]
    rows.sort(key=lambda r: (-(r["before"] + r["after"] + r["after_08"]), r["kind"]))
    total = {k: sum(r[k] for r in rows) for k in ("before", "after", "after_08")}
    return rows + [{"kind": "all", **total, "seen_in": []}]


def seconds(clock: str) -> int:
    """``M:SS`` or ``H:MM:SS`` in seconds."""
    value = 0
    for part in clock.split(":"):
        value = value * 60 + int(part)
    return value


def shown(raw: Path, run: str) -> dict[int, tuple[float | None, int | None]]:
    """Per GRPO step, the console's ``(s/step, seconds left)``, ``(None, None)`` for "estimating time left"; a
    step printed twice (a resumed run) keeps its last line."""
    found = {}
    for line in console_lines(raw, run):
        if step := STEP.search(line):
            found[int(step[1])] = (None, None) if step[3] is None else (float(step[3]), seconds(step[4]))
    return found


def training(raw: Path, run: str) -> tuple[dict[int, float], float]:
    """``({step: elapsed_s}, end)`` from grpo/metrics.jsonl: each step's log row, and the last row's elapsed_s
    (the one with train_runtime: the end of training, after the end-of-training work)."""
    text = (raw / run / "grpo" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    steps = {r["step"]: r["elapsed_s"] for r in rows if "train_runtime" not in r}
    end = next(r["elapsed_s"] for r in reversed(rows) if "train_runtime" in r)
    return steps, end


def eta(raw: Path) -> tuple[list[dict], list[dict]]:
    """Per step and run: how long the step took, the time left shown, the true time left (to the end of
    training) and the error of the shown one; and per run the times the error is computed from."""
    per_run, times = {}, []
    for run in RUNS:
        steps, end = training(raw, run)
        console, last = shown(raw, run), max(steps)
        rows = {}
        for step, at in sorted(steps.items()):
            per_step, left = console.get(step, (None, None))
            true = end - at
            error = None if left is None or step == last else (left - true) / true * 100
            rows[step] = {"took_s": rounded(at - steps.get(step - 1, 0.0), 3), "shown_per_step_s": per_step,
                          "shown_left_s": left, "true_left_s": rounded(true, 3), "error_pct": rounded(error, 1)}
        per_run[run] = rows
        times.append({"run": run, "step_1_s": steps[1], "last_step": last, "last_step_s": steps[last], "end_s": end,
                      "end_work_s": rounded(end - steps[last], 3)})
    all_steps = sorted(set().union(*per_run.values()))
    return [{"step": s, **{run: per_run[run].get(s) for run in RUNS}} for s in all_steps], times


def eta_errors(rows: list[dict]) -> list[dict]:
    """Per run: the first step with an estimate and its error, the errors of the next two steps, and the range of
    the errors over steps 7-16 and 17 to the one before the last."""
    out = []
    for run in RUNS:
        errors = {r["step"]: r[run]["error_pct"] for r in rows if r[run] and r[run]["error_pct"] is not None}
        first = min(errors)
        late = [errors[s] for s in errors if s >= 17]
        out.append({"run": run, "first_step": first, "first_three": [errors.get(s) for s in range(first, first + 3)],
                    "steps_7_16": [min(errors[s] for s in range(7, 17)), max(errors[s] for s in range(7, 17))],
                    "steps_17_on": [min(late), max(late)]})
    return out


def engines(raw: Path) -> list[dict]:
    """Per run: vLLM engine starts per notebook, Unsloth's retry lines and the suite's one-line notice."""
    out = []
    for run in RUNS:
        parts = sources(raw, run)
        starts = {label: sum(ENGINE in line for line in lines) for label, n, lines in parts if label != "console"}
        counts, where = tally([(label, lines) for label, _, lines in parts])
        out.append({"run": run, "engine_starts": {k: v for k, v in starts.items() if v},
                    **{kind: {"count": counts[kind], "seen_in": sorted(where.get(kind, ()))} for kind in RETRIES}})
    return out


def rollouts(raw: Path) -> dict[str, list[str]]:
    """Per run: the lines of notebook 07 that say how GRPO's rollouts are made (the suite's, then Unsloth's)."""
    found = {}
    for run in RUNS:
        lines = [line for nb in (raw / run / "notebooks").glob("07_*.ipynb") for line in notebook_lines(nb)]
        found[run] = [line.strip() for line in lines if line.strip().startswith(ROLLOUT_LINES)]
    return found


def build(raw: Path) -> dict:
    rows, times = eta(raw)
    return {"warnings": warnings(raw), "eta": rows, "eta_times": times, "eta_errors": eta_errors(rows),
            "engines": engines(raw), "rollouts": rollouts(raw)}


def clock(value: float) -> str:
    value = round(value)
    return f"{value // 60}:{value % 60:02d}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.0f}%"


def render(tables: dict) -> dict[str, str]:
    before, after = RUNS
    rows = [[("**all**" if r["kind"] == "all" else r["kind"].replace("|", "/")), r["before"], r["after"],
             r["after_08"], " ".join(r["seen_in"])] for r in tables["warnings"]]
    out = {"warnings": markdown(["kind", f"{before}: 01-07 + console", f"{after}: 01-07 + console",
                                 f"{after}: 08 + console", "seen in"], rows)}

    def cells(step: dict | None) -> list[str]:
        if step is None:
            return ["-"] * 4
        left = ("estimating" if step["shown_left_s"] is None else
                f"{clock(step['shown_left_s'])} ({step['shown_per_step_s']:.1f} s/step)")
        return [f"{step['took_s']:.1f}", left, clock(step["true_left_s"]), percent(step["error_pct"])]

    head = [f"{run}: {c}" for run in RUNS for c in ("step took (s)", "shown left", "true left", "error")]
    out["eta"] = markdown(["step", *head], [[r["step"], *cells(r[before]), *cells(r[after])] for r in tables["eta"]])
    out["eta_times"] = markdown(
        ["run", "step 1 logged (s into training)", "last step logged (s)", "training ended (s, last row)",
         "end-of-training work (s)"],
        [[t["run"], f"{t['step_1_s']:.1f}", f"{t['last_step_s']:.1f} (step {t['last_step']})", f"{t['end_s']:.1f}",
          f"{t['end_work_s']:.1f}"] for t in tables["eta_times"]])
    out["eta_errors"] = markdown(
        ["run", "first estimate", "it and the next two steps", "steps 7-16", "steps 17 to the one before the last"],
        [[e["run"], f"step {e['first_step']}", ", ".join(percent(v) for v in e["first_three"]),
          f"{percent(e['steps_7_16'][0])} to {percent(e['steps_7_16'][1])}",
          f"{percent(e['steps_17_on'][0])} to {percent(e['steps_17_on'][1])}"] for e in tables["eta_errors"]])

    def where(entry: dict) -> str:
        return f"{entry['count']}" + (f" ({' '.join(entry['seen_in'])})" if entry["seen_in"] else "")

    out["engines"] = markdown(
        ["run", "vLLM engine starts (per notebook)", "Unsloth's retry (\"Retrying vLLM ...\")",
         "the suite's one-line notice (\"vLLM engine: the first start failed ...\")"],
        [[e["run"], f"{sum(e['engine_starts'].values())} ("
          + ", ".join(f"{k}" + (f" ×{v}" if v > 1 else "") for k, v in e["engine_starts"].items()) + ")",
          where(e[RETRIES[0]]), where(e[RETRIES[1]])] for e in tables["engines"]])
    lines = []
    for run in RUNS:
        found = tables["rollouts"][run]
        lines += [f"{run}, notebook 07:", *(found or ["(no such line)"])]
    out["rollouts"] = "```text\n" + "\n".join(lines) + "\n```"
    return out


if __name__ == "__main__":
    main(HERE, build, render)
