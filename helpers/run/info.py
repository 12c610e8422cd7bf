"""``grpo-notebooks info``: which optional parts this machine has, whether each is usable, what it enables.

Nothing is imported to find out (importing unsloth patches other libraries): packages are looked up
with ``importlib``, the GPU through ``helpers.runtime.hardware.detect``, Chromium at the path the browser test uses.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from helpers.runtime.hardware import detect, importable


def chromium_path() -> str | None:
    """The Chromium the browser test drives (``$GRPO_CHROMIUM``, else ``/usr/bin/chromium``, else on PATH)."""
    for candidate in (os.environ.get("GRPO_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def parts() -> list[tuple[str, str, str]]:
    """``[(part, state, what it enables)]``; state starts with ``yes``, ``no`` or ``present but unused``."""
    hw = detect()
    gpu = f"yes: {hw.gpu_name}, {hw.vram_gib} GiB" if hw.cuda else "no"
    rows = [("GPU (CUDA)", gpu, "the colab-t4 / gpu profiles: hub models of 0.5B-3B, Unsloth, vLLM; without it the "
             "cpu profile trains the embedded 135M model")]
    rows.append(("bf16", "yes" if hw.bf16 else ("no: fp16 (a T4-class GPU)" if hw.cuda else "no (CPU: fp32)"),
                 "bfloat16 training and merged 16-bit models (fp16 on a T4; fp32 on a CPU)"))

    def package(module: str) -> str:
        if not importable(module):
            return "no"
        return "yes" if hw.cuda else "present but unused: needs a CUDA GPU here"

    rows.append(("Unsloth", package("unsloth"), "5-7x faster GRPO steps and far less reserved memory "
                 "(benchmarks/README.md), GGUF export; pip install -e '.[gpu]'"))
    rows.append(("vLLM", package("vllm"), "fast rollouts and evaluation (fast_inference=True, LoRA requests); "
                 "on a CPU only in its own environment (.ci/vllm-stage)"))
    chromium = chromium_path()
    browser = [m for m in ("jupyterlab", "playwright") if not importable(m)]
    state = "no" if chromium is None else (f"yes: {chromium}" if not browser else
                                           f"present ({chromium}) but {' and '.join(browser)} missing")
    rows.append(("Chromium", state, "the browser test: JupyterLab in headless Chromium shows the live dashboard "
                 "(pytest -m browser)"))
    return rows


def optional_parts() -> str:
    """The lines ``grpo-notebooks info`` prints after the one-line description."""
    rows = parts()
    width = max(len(name) for name, _, _ in rows)
    return "optional parts:\n" + "\n".join(f"  {name:<{width}}  {state}\n  {'':<{width}}  -> {what}"
                                            for name, state, what in rows)
