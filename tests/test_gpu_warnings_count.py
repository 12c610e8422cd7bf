"""benchmarks/gpu_warnings/count.py (issue 31), the script that counts a GPU run's warnings by kind before and after,
run on synthetic run folders whose executed notebooks and console carry the lines the H100/H200 runs printed
(the logs of the 2026-11-30 runs, now in benchmarks/grpo_speed_gpu/raw.tar.xz and benchmarks/learning_gpu/raw.tar.xz)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_warnings" / "count.py"

TORCHAO = "/tmp/gsite/torchao/quantization/quant_api.py:1731: SyntaxWarning: invalid escape sequence '\\.'\n"
UNSLOTH_ORDER = ("/tmp/gsite/unsloth/__init__.py:1655: UserWarning: WARNING: Unsloth should be imported before "
                 "[transformers] to ensure all optimizations are applied. Your code may run slower or encounter memory "
                 "issues without these optimizations.\n\nPlease restructure your imports with 'import unsloth' at the "
                 "top of your file.\n  from ._gpu_init import *\n")
VLLM_ENV = "WARNING 11-30 05:06:08 [envs.py:2096] Unknown vLLM environment variable detected: VLLM_ATTENTION_BACKEND\n"
VLLM_SEED = ("WARNING 11-30 05:06:08 [arg_utils.py:1631] The global random seed is set to 0. Since "
             "VLLM_ENABLE_V1_MULTIPROCESSING is set to False, this may affect the random state of the Python process.\n")
DTYPE = "`torch_dtype` is deprecated! Use `dtype` instead!\n"
BOTH = ("Both `max_new_tokens` (=256) and `max_length`(=8192) seem to have been set. `max_new_tokens` will take "
        "precedence. Please refer to the documentation for more information.\n")
C10D = "[W1130 05:06:29.312285188 socket.cpp:207] [c10d] The hostname of the client socket cannot be retrieved. err=-3\n"
NCCL = ("[rank0]:[W1206 22:44:13.763765140 ProcessGroupNCCL.cpp:5188] Guessing device ID based on global rank.\n")
RETRY = "Unsloth: Retrying vLLM to process 72 sequences and 8192 tokens in tandem.\nError:\nNo available memory.\n"


def notebook(path: Path, outputs: list[tuple[str, str]]) -> None:
    """An executed notebook: one code cell per (stream name, text), plus a cell whose result is not a stream."""
    cells = [{"cell_type": "code", "metadata": {}, "source": "x = 1", "execution_count": i + 1,
              "outputs": [{"output_type": "stream", "name": name, "text": text.splitlines(keepends=True)}]}
             for i, (name, text) in enumerate(outputs)]
    cells.append({"cell_type": "code", "metadata": {}, "source": "x", "execution_count": 99,
                  "outputs": [{"output_type": "execute_result", "execution_count": 99, "metadata": {},
                               "data": {"text/plain": "'UserWarning: only a value, not a warning'"}}]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def run_folder(root: Path, name: str, before: bool) -> Path:
    run = root / name
    notebook(run / "notebooks" / "01_model_loading.ipynb",
             [("stderr", (TORCHAO + UNSLOTH_ORDER) if before else ""), ("stdout", VLLM_ENV + VLLM_SEED + RETRY),
              ("stdout", "vLLM engine: the first start failed (No available memory for the cache blocks) ...\n")])
    notebook(run / "notebooks" / "06_sft_warmup.ipynb",
             [("stderr", (UNSLOTH_ORDER + DTYPE + BOTH * 8) if before else ""), ("stdout", "sft step 3/30 | loss 1.2\n")])
    (run / "run.log").write_text("2026-12-06 10:00:00.000 grpo-notebooks run: profile gpu\n")
    return run


def test_counts_by_kind_before_and_after(tmp_path):
    before, after = run_folder(tmp_path, "before", True), run_folder(tmp_path, "after", False)
    console = tmp_path / "before.console"
    console.write_text("grpo-notebooks run: profile gpu\n" + C10D * 2 + "  grpo step 1/300 | estimating time left\n")
    after_console = tmp_path / "after.console"
    after_console.write_text("grpo-notebooks run: profile gpu\n  vLLM engine: the first start failed (...)\n" + NCCL)
    done = subprocess.run([sys.executable, str(SCRIPT), str(before), str(after), "--console", str(console),
                           "--console", str(after_console)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in done.stdout.splitlines()[2:]}
    assert rows["transformers: both max_new_tokens and max_length"] == ["8", "0", "06 |"]
    assert rows["Unsloth: should be imported before [transformers]"] == ["2", "0", "01 06 |"]
    assert rows["SyntaxWarning: invalid escape sequence (torchao)"] == ["1", "0", "01 |"]
    assert rows["vLLM: unknown environment variable VLLM_ATTENTION_BACKEND"] == ["1", "1", "01 |"]
    assert rows["transformers: `torch_dtype` is deprecated"] == ["1", "0", "06 |"]
    assert rows["c10d: hostname of the client socket"] == ["2", "0", "console |"]
    assert rows["Unsloth: engine start retried"] == ["1", "1", "01 |"]
    assert rows["suite: engine start retried (its one line)"] == ["1", "2", "01 console |"]
    seed = "vLLM WARNING: The global random seed is set to #. Since VLLM_ENABLE_V#_MULTIPROCESSI"  # 70 characters
    assert rows[seed] == ["1", "1", "01 |"]  # an unnamed kind: grouped by its message
    assert rows["torch C++ warning: Guessing device ID based on global rank."] == ["0", "1", "console |"]  # [rank0]:
    assert rows["**all**"] == ["18", "6", "|"]
    assert not any("only a value" in line for line in done.stdout.splitlines())  # results are not warnings


def test_run_log_when_no_console_and_one_line_errors(tmp_path):
    run = run_folder(tmp_path, "only", True)
    (run / "run.log").write_text("2026-12-06 10:00:01.000   vLLM engine: the first start failed (...)\n")
    done = subprocess.run([sys.executable, str(SCRIPT), str(run)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "| suite: engine start retried (its one line) | 2 | 01 run.log |" in done.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "has no notebooks/ folder" in bad.stderr and "fix:" in bad.stderr
    mismatch = subprocess.run([sys.executable, str(SCRIPT), str(run), str(run), "--console", str(run / "run.log")],
                              capture_output=True, text=True, timeout=120)
    assert mismatch.returncode == 2 and "one --console per run folder" in mismatch.stderr
