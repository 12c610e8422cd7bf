"""Tables of grpo_gpu.py's, decode_probe.py's and train_gpu.py's results kept in benchmarks/grpo_speed_gpu/raw.tar.xz:

- ``runs_h100`` / ``t4_rehearsal_h100``: every ``grpo_gpu.py run`` of the H100 session (``h100-*/batchN_*.jsonl``, one
  result a line; the batches ran in that order), the ``gpu`` profile's work and the ``colab-t4`` profile's;
- ``runs_h200``: the 1.7B rows of the H200 session (``h200-*/<side>.json``);
- ``decode_probes``: decode_probe.py's per-token rows (``batchN_decode_probe_*``);
- ``train30``: train_gpu.py's 30-step run of the suite's GRPO path.

    python benchmarks/grpo_speed_gpu/summarize.py                 # from raw.tar.xz
    python benchmarks/grpo_speed_gpu/summarize.py runs/speed      # your own: a folder <session>/ of result files

Seconds per step: the median of the steps after the first (the first compiles / warms up); rollout: the median of
the rollout time of the steps after the first that generated.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shelf import main, markdown  # noqa: E402

BATCH = re.compile(r"batch(\d+)_")
KEYS = ("shape", "G", "L", "steps", "dtype", "profile", "mem_cap_gib", "gen_batch", "speed", "peak_alloc_gib",
        "peak_reserved_gib", "first_step_s", "median_step_s", "best_step_s", "mean_step_s", "median_gen_s",
        "rollout_tok_s", "load_s", "step_s", "gen_s", "device", "date", "versions")


def _records(path: Path) -> list[dict]:
    text = path.read_text()
    if path.suffix == ".json":
        return [json.loads(text)]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _side(r: dict) -> str:
    if r["side"] == "trl":
        return "plain TRL + PEFT"
    if r["side"] == "trl+vllm":
        return "TRL + PEFT + TRL's vLLM engine (colocate)"
    source = r.get("config_source") or ""
    if "rollouts: vllm" in source:
        return "suite where vLLM runs: Unsloth's vLLM engine, the adapter folded into its weights"
    if "rollouts: suite-sampler" in source:
        return "suite without vLLM: the suite's sampler (fast_rollout, no_compile)"
    speed = [s for s in (r.get("speed") or []) if s != "none"]
    return "suite" + (" + " + ", ".join(speed) if speed else ", Unsloth as it comes")


def _run(r: dict, **extra) -> dict:
    row = {**extra, "side": _side(r)}
    row.update({k: r.get(k) for k in KEYS})
    return row


def build(raw: Path) -> dict:
    tables: dict = {"runs_h100": [], "t4_rehearsal_h100": [], "runs_h200": [], "decode_probes": [], "train30": []}
    for session in sorted(p for p in raw.iterdir() if p.is_dir()):
        for path in sorted(session.iterdir(), key=lambda p: (int(m[1]) if (m := BATCH.match(p.name)) else 0, p.name)):
            if not path.is_file():
                continue
            m = BATCH.match(path.name)
            if "decode_probe" in path.name:
                lines = path.read_text().splitlines()
                rows = [json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith("ROW ")] or \
                    [json.loads(x) for x in lines if x.strip().startswith("{")]
                for r in rows:
                    tables["decode_probes"].append({"batch": int(m[1]), "file": path.name, "mode": r["mode"],
                                                    "rows": r["batch"], "tokens": r["tokens"],
                                                    "ms_per_token": r["ms_per_token"], "tok_s": r["tok_s"]})
            elif path.suffix in (".json", ".jsonl") and "profile" not in path.name:
                for r in _records(path):
                    if "side" not in r:
                        continue
                    if m:
                        name = "t4_rehearsal_h100" if r.get("profile") == "colab-t4" else "runs_h100"
                        tables[name].append(_run(r, batch=int(m[1]), file=path.name))
                    else:
                        tables["runs_h200"].append(_run(r, run=path.stem, file=path.name))
        train30 = session / "train30" / "train30.json"
        if train30.exists():
            t = json.loads(train30.read_text())
            tables["train30"].append({k: t[k] for k in ("shape", "profile", "steps", "seconds", "wall_s", "speed",
                                                        "metrics_rows", "checkpoints", "peak_alloc_gib",
                                                        "peak_reserved_gib")})
    return tables


def _work(r: dict) -> str:
    return f"{r['shape']}, {r['G']} × {r['L']}"


def render(tables: dict) -> dict[str, str]:
    out = {}
    header = ["batch", "work", "side", "peak alloc GiB", "peak reserved GiB", "s/step (median)", "best", "1st step s",
              "rollout s/step", "rollout tok/s"]
    for name in ("runs_h100", "t4_rehearsal_h100"):
        out[name] = markdown(header, [
            [r["batch"], _work(r), r["side"], r["peak_alloc_gib"], r["peak_reserved_gib"], f"{r['median_step_s']:.2f}",
             f"{r['best_step_s']:.2f}", r["first_step_s"], f"{r['median_gen_s']:.2f}", f"{r['rollout_tok_s']:,.0f}"]
            for r in tables[name]])
    out["runs_h200"] = markdown(
        ["run", "side", "peak alloc GiB", "peak reserved GiB", "s/step, median (best)", "s/step, mean", "1st step s",
         "load s", "rollout tok/s", "steps after the first, s", "rollouts after the first, s"],
        [[r["run"], r["side"] + (f", steps_per_generation={r['gen_batch']}" if (r["gen_batch"] or 1) > 1 else ""),
          r["peak_alloc_gib"], r["peak_reserved_gib"], f"{r['median_step_s']:.2f} ({r['best_step_s']:.2f})",
          f"{r['mean_step_s']:.2f}", r["first_step_s"], r["load_s"], f"{r['rollout_tok_s']:,.0f}",
          ", ".join(f"{x:.2f}" for x in r["step_s"][1:]), ", ".join(f"{x:.2f}" for x in r["gen_s"][1:] if x > 0)]
         for r in tables["runs_h200"]])
    out["decode_probes"] = markdown(
        ["batch", "mode", "rows", "tokens", "ms per decode step", "tokens/s"],
        [[r["batch"], r["mode"], r["rows"], r["tokens"], f"{r['ms_per_token']:.1f}", f"{r['tok_s']:,.0f}"]
         for r in tables["decode_probes"]])
    out["train30"] = markdown(
        ["shape", "profile", "steps", "training s", "wall s", "speed options", "metrics rows", "checkpoints",
         "peak alloc GiB", "peak reserved GiB"],
        [[t["shape"], t["profile"], t["steps"], t["seconds"], t["wall_s"], t["speed"]["options"], t["metrics_rows"],
          ", ".join(t["checkpoints"]), t["peak_alloc_gib"], t["peak_reserved_gib"]] for t in tables["train30"]])
    return out


if __name__ == "__main__":
    main(HERE, build, render)
