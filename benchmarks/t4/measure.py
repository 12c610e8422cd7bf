"""The `colab-t4` profile's GRPO step measured on this GPU, and the T4 step it predicts (benchmarks/t4/README.md).

    python benchmarks/t4/measure.py                       # from the repository root: ~4 min on an H100
    python benchmarks/t4/measure.py --micro-only          # only the card's bandwidth and fp16 throughput (~20 s)
    python benchmarks/t4/measure.py --out results.json

On one CUDA GPU, in one process: (a) the card's memory bandwidth (a 2 GiB device-to-device copy) and fp16 matmul
throughput (8192^3, torch, bf16 off); (b) GRPO steps of the `colab-t4` profile with a random-weight model of
Qwen2.5-1.5B-Instruct's shape (fp16, the embedded SmolLM2's tokenizer, vocabulary 151,936), rank-64 LoRA through
``helpers.model.lora.add_lora``, the profile's generations and completion length, rollouts through the suite's
sampler (``helpers.generate.backends.prepare_rollouts``), bf16 reported absent and GPU memory capped at a T4's 15 GiB
(as benchmarks/learning_gpu/t4_rehearsal/sitecustomize.py does), the steps after the first timed with their rollout part; (c) the
predicted T4 step (``estimate.predict``: the formula, the T4 figures and their sources are in estimate.py). On a T4
itself nothing is scaled: the measured step is the answer. Prints a table and ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _path in (str(ROOT), str(ROOT / "benchmarks" / "grpo_speed_gpu"), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import estimate  # noqa: E402  (benchmarks/t4/estimate.py: the pure arithmetic, tested on a CPU)
from grpo_gpu import versions  # noqa: E402  (benchmarks/grpo_speed_gpu: standard library at import)

# Qwen2.5-1.5B-Instruct's config.json (the colab-t4 profile's model): q/k/v biases, tied embeddings.
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                  rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False)
PROFILE = "colab-t4"


def _events_seconds(fn, repeats: int, warmup: int = 3) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def copy_bandwidth_gbs(gib: float = 2.0, repeats: int = 20) -> float:
    """Device-to-device copy of ``gib`` GiB: (read + write) bytes / median seconds, in GB/s (1e9)."""
    import torch

    src = torch.empty(int(gib * 2**30) // 2, dtype=torch.float16, device="cuda").normal_()
    dst = torch.empty_like(src)
    seconds = _events_seconds(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * src.element_size() / seconds / 1e9  # the caller empties the cache


def fp16_matmul_tflops(n: int = 8192, repeats: int = 20) -> float:
    """fp16 ``n``^3 matmul (cuBLAS through torch): 2 n^3 / median seconds, in TFLOPS."""
    import torch

    a = torch.randn(n, n, dtype=torch.float16, device="cuda")
    b = torch.randn(n, n, dtype=torch.float16, device="cuda")
    return 2 * n**3 / _events_seconds(lambda: a @ b, repeats) / 1e12  # the caller empties the cache


def build_model(folder: Path, tok_dir: Path) -> None:
    """A random-weight Qwen2.5-1.5B-shaped model in fp16, saved with the tokenizer files of ``tok_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(bos_token_id=1, eos_token_id=2, pad_token_id=0, **QWEN25_15B)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
    model.save_pretrained(folder)
    for f in Path(tok_dir).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, folder)
    del model
    torch.cuda.empty_cache()


def _random_reward(completions, **kwargs):
    """A reward with spread, so advantages are not all zero (the cost study needs no real one; the random weights
    sample ids beyond the tokenizer's 49,152, which decode to empty text)."""
    return [random.random() for _ in completions]


def _grpo_config(steps: int, output_dir: str, hw):
    """Notebook 07's GRPOConfig for the profile: its recipe arguments with the profile's row
    (``helpers.runtime.profiles``) and ``helpers.train.trainer_args``' machine arguments, checkpoints off and DAPO's
    masking of truncated completions off (every random-weight completion is truncated: masking them would leave no
    gradient to compute)."""
    import trl

    from helpers.runtime.profiles import profile_settings
    from helpers.train.trainer_args import machine_args

    s = profile_settings(PROFILE)
    kwargs = dict(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=s.grpo_batch_size,
                  num_generations=s.num_generations, max_completion_length=s.max_completion_length,
                  temperature=s.grpo_temperature, learning_rate=s.grpo_learning_rate, warmup_steps=s.grpo_warmup_ratio,
                  weight_decay=0.001, max_grad_norm=0.1, beta=0.0, loss_type="dapo", scale_rewards="group",
                  logging_steps=1, **machine_args(hw))
    kwargs.update(mask_truncated_completions=False, save_strategy="no", report_to="none")
    return trl.GRPOConfig(**kwargs), "notebook 07's GRPOConfig arguments with the colab-t4 row (helpers.runtime.profiles)"


def _sizes_of(model) -> dict:
    """Bytes and parameter counts the estimate needs, read from the loaded (PEFT) model."""
    seen, weight_bytes, lora_params, linear_params = set(), 0, 0, 0
    for name, p in model.named_parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        if "lora_" in name:
            lora_params += p.numel()
            continue
        weight_bytes += p.numel() * p.element_size()
        if ".layers." in name and name.endswith("weight") and p.dim() == 2:
            linear_params += p.numel()
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    return dict(weight_bytes=weight_bytes + 2 * lora_params, lora_params=lora_params, linear_params=linear_params,
                head_params=config.vocab_size * config.hidden_size, layers=config.num_hidden_layers,
                kv_bytes_per_position=2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2,
                vocab=model.get_input_embeddings().weight.shape[0])


def grpo_steps(steps: int, tok_dir: Path, cap_gib: float) -> dict:
    import torch

    from helpers.generate.backends import grpo_backend, prepare_rollouts
    from helpers.model.load import load_model
    from helpers.model.lora import add_lora
    from helpers.runtime.hardware import detect
    from helpers.runtime.profiles import profile_settings

    work = Path(tempfile.mkdtemp(prefix="t4-measure-"))
    t0 = time.perf_counter()
    build_model(work / "model", tok_dir)
    built = time.perf_counter()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * 2**30 / total), 0)
    torch.cuda.reset_peak_memory_stats()
    sizes = profile_settings(PROFILE)
    model, tok = load_model(str(work / "model"), profile=PROFILE, dtype=torch.float16,
                            max_seq_length=sizes.max_seq_length)
    model, lora_report = add_lora(model, sizes.lora_rank)
    hw = detect()
    backend = prepare_rollouts(model, grpo_backend(model, hw), hw)
    loaded = time.perf_counter()
    print(f"rollouts: {backend}", flush=True)

    from datasets import Dataset
    from grpo_gpu import _Timer, prompts
    from trl import GRPOTrainer

    config, config_source = _grpo_config(steps, str(work / "out"), hw)
    random.seed(0)
    timer = _Timer()
    rows = prompts(64)
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[_random_reward], args=config,
                          train_dataset=Dataset.from_dict({"prompt": rows}), callbacks=[timer.callback])
    timer.wrap_generation(trainer)
    trainer.train()
    done = time.perf_counter()
    free, total_now = torch.cuda.mem_get_info()
    prompt_tokens = statistics.mean(
        len(tok(tok.apply_chat_template(r, tokenize=False, add_generation_prompt=True), add_special_tokens=False)
            .input_ids) for r in rows[:16])
    per_step_rows = config.per_device_train_batch_size * config.gradient_accumulation_steps
    rest = list(range(1, len(timer.steps))) or [0]
    sampler = getattr(model, "_fast_sampler", None)
    result = dict(
        backend=str(backend), config_source=config_source, lora=str(lora_report).splitlines()[0][:200],
        G=config.num_generations, L=config.max_completion_length, rows_per_step=per_step_rows,
        prompt_tokens=round(prompt_tokens, 1),
        completion_tokens_per_row=round(statistics.median(timer.tokens[i] for i in rest) / per_step_rows, 1),
        step_s=[round(x, 3) for x in timer.steps], rollout_s=[round(x, 3) for x in timer.gen],
        first_step_s=round(timer.steps[0], 2),
        median_step_s=round(statistics.median(timer.steps[i] for i in rest), 3),
        median_rollout_s=round(statistics.median(timer.gen[i] for i in rest), 3),
        median_train_s=round(statistics.median(timer.steps[i] - timer.gen[i] for i in rest), 3),
        peak_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
        peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2),
        outside_torch_gib=round((total_now - free - torch.cuda.memory_reserved()) / 2**30, 2),
        cap_gib=cap_gib, build_s=round(built - t0, 1), load_s=round(loaded - built, 1),
        train_s=round(done - loaded, 1), sampler=dict(sampler.stats, fallbacks=sampler.fallbacks,
                                                      failed=sampler.failed) if sampler else None,
        **_sizes_of(model),
    )
    shutil.rmtree(work, ignore_errors=True)
    return result


def table(res: dict) -> str:
    """The result as a markdown table."""
    card, t4 = res["device"], estimate.T4
    pub = estimate.published_for(card)
    eff = estimate.EFFICIENCY
    bw, tf = res["bandwidth_gbs"], res["fp16_tflops"]
    pct = (lambda x, k: f" ({x / pub[k]:.0%} of {pub[k]:,.0f} published)") if pub else (lambda x, k: "")
    lines = [f"| | {card}, measured | {t4['name']}, predicted |", "|---|---|---|",
             f"| memory bandwidth (device copy) | {bw:,.0f} GB/s{pct(bw, 'bandwidth_gbs')} | "
             f"{t4['bandwidth_gbs'] * eff['bandwidth'][1]:,.0f} GB/s assumed ({eff['bandwidth'][1]} x "
             f"{t4['bandwidth_gbs']:.0f} published; {eff['bandwidth'][0]}-{eff['bandwidth'][2]}) |",
             f"| fp16 matmul 8192^3 | {tf:,.0f} TFLOPS{pct(tf, 'fp16_tflops')} | "
             f"{t4['fp16_tflops'] * eff['fp16'][1]:,.0f} TFLOPS assumed ({eff['fp16'][1]} x {t4['fp16_tflops']:.0f} "
             f"published; {eff['fp16'][0]}-{eff['fp16'][2]}) |"]
    g = res.get("grpo")
    if g:
        p = res["prediction"]
        lines += [
            f"| GRPO step ({PROFILE}: {g['rows_per_step']} x {g['L']} tokens, Qwen2.5-1.5B shape, fp16, LoRA 64) | "
            f"{g['median_step_s']} s (rollout {g['median_rollout_s']} + training {g['median_train_s']}); first step "
            f"{g['first_step_s']} s | " + (
                f"{g['median_step_s']} s (measured on a T4)" if res["is_t4"] else
                f"simple {p['simple']['central']:.1f} s, two-part {p['two_part']['central']:.1f} s; range "
                f"{p['range'][0]:.1f}-{p['range'][1]:.1f} s; floor {p['floor']:.1f} s") + " |",
            f"| share of the step that is bandwidth / matmul work here | rollout {p['bandwidth_share']:.0%}, "
            f"training {p['compute_share']:.0%} | |" if not res["is_t4"] else "",
            f"| peak GPU memory (cap {g['cap_gib']} GiB) | {g['peak_allocated_gib']} GiB allocated, "
            f"{g['peak_reserved_gib']} GiB reserved, +{g['outside_torch_gib']} GiB outside PyTorch | the same "
            "(measured, not scaled) |"]
    return "\n".join(line for line in lines if line)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps (the first compiles and is not counted)")
    parser.add_argument("--micro-only", action="store_true", help="only the bandwidth and fp16 throughput")
    parser.add_argument("--tok", default=None, help="tokenizer folder (default: the embedded SmolLM2's)")
    parser.add_argument("--cap-gib", type=float, default=estimate.T4["memory_gib"], help="GPU memory cap")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step compiles and is not timed")
    # The T4 path: no vLLM, the suite's defaults without it (its sampler, no Unsloth compile), offline.
    os.environ.update(GRPO_PROFILE=PROFILE, GRPO_NO_VLLM="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for key in ("GRPO_GPU_SPEED", "GRPO_ROLLOUT_BACKEND"):
        os.environ.pop(key, None)
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/t4/measure.py needs a CUDA GPU; fix: run it on one (a T4 measures itself).")
    torch.cuda.is_bf16_supported = lambda *a, **k: False  # a T4 has no bf16: the suite picks fp16 (before detect())
    props = torch.cuda.get_device_properties(0)
    res = dict(device=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
               memory_gib=round(props.total_memory / 2**30, 1), is_t4=torch.cuda.get_device_capability(0) == (7, 5),
               date=time.strftime("%Y-%m-%d", time.gmtime()), versions=versions(("torch", "triton", "transformers", "trl", "peft", "unsloth", "unsloth_zoo")), t4=estimate.T4,
               efficiency=estimate.EFFICIENCY)
    res["bandwidth_gbs"] = round(copy_bandwidth_gbs(), 1)
    res["fp16_tflops"] = round(fp16_matmul_tflops(), 1)
    torch.cuda.empty_cache()
    print(f"{res['device']}: copy {res['bandwidth_gbs']:,.0f} GB/s, fp16 matmul {res['fp16_tflops']:,.0f} TFLOPS",
          flush=True)
    if not args.micro_only:
        if args.tok:
            tok_dir = Path(args.tok)
        else:
            from helpers.model.embedded import embedded_model_path

            tok_dir = embedded_model_path()
        g = res["grpo"] = grpo_steps(args.steps, tok_dir, args.cap_gib)
        rbytes = estimate.rollout_bytes(g["weight_bytes"], g["kv_bytes_per_position"], g["rows_per_step"],
                                        round(g["prompt_tokens"]), round(g["completion_tokens_per_row"]))
        flops = estimate.training_flops(g["linear_params"], g["head_params"], g["rows_per_step"],
                                        round(g["prompt_tokens"]), round(g["completion_tokens_per_row"]))
        res["rollout_bytes"], res["train_flops"] = rbytes, flops
        res["prediction"] = estimate.predict(g["median_rollout_s"], g["median_train_s"], res["bandwidth_gbs"],
                                             res["fp16_tflops"], rbytes, flops)
    print(table(res), flush=True)
    print("RESULT", json.dumps(res), flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1) + "\n")
        os.replace(tmp, out)
    return res


if __name__ == "__main__":
    main()
