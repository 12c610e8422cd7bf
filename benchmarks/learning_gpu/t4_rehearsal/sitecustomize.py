"""Colab T4 rehearsal on a larger GPU: with this folder on ``PYTHONPATH`` every Python process, the notebook kernels
included, sees a GPU without bf16 (so the suite picks fp16, as on a T4) and may use at most 15 GiB of it; at exit it
writes its peak GPU memory to $GRPO_T4_PEAK_DIR/<pid>.json. The speed is the larger GPU's, not a T4's.

    PYTHONPATH=benchmarks/learning_gpu/t4_rehearsal GRPO_NO_VLLM=1 GRPO_T4_PEAK_DIR=runs/t4/peak \
        grpo-notebooks run --profile colab-t4 --out runs/t4 --from 6 -p grpo_steps=30 -p eval_problems=64
"""
import atexit
import json
import os

try:
    import torch

    if torch.cuda.is_available():
        torch.cuda.is_bf16_supported = lambda *a, **k: False
        torch.cuda.set_per_process_memory_fraction(15 * 2**30 / torch.cuda.get_device_properties(0).total_memory)

        def _peak():
            folder = os.environ.get("GRPO_T4_PEAK_DIR")
            if folder and torch.cuda.is_initialized():
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as fh:
                    json.dump({"argv": " ".join(__import__("sys").argv)[:200],
                               "max_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
                               "max_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}, fh)

        atexit.register(_peak)
except Exception as exc:  # never stop a process over the rehearsal's bookkeeping
    print(f"t4 rehearsal sitecustomize: {exc}")
