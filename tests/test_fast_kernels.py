"""The fast sampler's Triton kernels build for a T4 (compute capability 7.5), checked on a CPU without a GPU.

Issue 29, item 1. The sampler's real decode step (``FastSampler.generate`` with ``kernels="triton"``) runs here on a
CPU in fp16 (the T4's dtype) with the real shapes of the ``colab-t4`` profile's model (Qwen2.5-1.5B-Instruct) and of
the embedded SmolLM2-135M-Instruct (one decoder layer each: the kernels see the same shapes in every layer). Each
kernel launch it makes is compiled instead of run: Triton's own ``JITFunction.warmup`` with the launch's real
arguments (so the signature, the constexprs and the alignment specialisation are the ones a launch on a GPU gets),
for ``GPUTarget("cuda", 75, 32)``, through a stand-in driver that only names the target. Triton's wheel brings its
own ``ptxas``, so this reaches a cubin for sm_75. Then the two checks Triton makes when it loads a kernel on a
device (``CompiledKernel._init_handles``): shared memory within the card's limit, and enough registers for the
kernel's threads (read from the cubin with the wheel's ``cuobjdump -res-usage``).

T4 limits (NVIDIA CUDA C++ Programming Guide, "Compute Capabilities", compute capability 7.5): 64 KiB of shared
memory per block, 64 Ki 32-bit registers per block, at most 255 per thread, 1,024 threads per block.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.generate import fast_kernels, fast_sampler

triton = pytest.importorskip("triton", reason="Triton is in the dev extra (pyproject.toml): install it to run these")

import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

T4 = GPUTarget("cuda", 75, 32)
T4_SHARED_PER_BLOCK = 64 * 1024
T4_REGISTERS_PER_BLOCK = 64 * 1024
KERNELS = ("_add_rms_kernel", "_rope_cache_kernel", "_decode_attn_kernel", "_silu_mul_kernel")

# The decoder shapes (the kernels' constexprs come from these: head_dim, the head-group size, the hidden size's
# power-of-two block). Qwen2.5-1.5B-Instruct: its config.json on the Hugging Face hub (hidden 1536, 12 heads,
# 2 KV heads, intermediate 8960, rope theta 1e6, q/k/v biases). SmolLM2-135M-Instruct: the embedded model's
# config.json (~/.cache/grpo-notebooks/SmolLM2-135M-Instruct).
SHAPES = {
    "qwen2.5-1.5b (colab-t4)": ("qwen2", dict(hidden_size=1536, intermediate_size=8960, num_attention_heads=12,
                                              num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6)),
    "smollm2-135m (embedded)": ("llama", dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                                              num_key_value_heads=3, rope_theta=1e5, rms_norm_eps=1e-5)),
}


class _TargetOnly:
    """A Triton driver that only names a target: enough for ``JITFunction.warmup`` to compile, never to launch."""

    def __init__(self, target):
        self.target = target

    def get_current_device(self):
        return ("ahead-of-time", self.target.arch)

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target


class _CompileInstead:
    """Stands in for one of ``fast_kernels``' kernels: each launch ``kernel[grid](*args, **constexprs)`` compiles
    the kernel for ``target`` with those arguments (Triton's JIT path) and records it; nothing runs."""

    def __init__(self, kernel, target, built):
        self.jit = JITFunction(kernel.fn)  # a fresh JITFunction: also right when TRITON_INTERPRET=1 wrapped it
        self.name, self.target, self.built = kernel.fn.__name__, target, built

    def __getitem__(self, grid):
        def launch(*args, **constexprs):
            saved = driver._active
            driver.set_active(_TargetOnly(self.target))
            try:
                compiled = self.jit.warmup(*args, grid=grid, **constexprs)
            finally:
                driver.set_active(saved)
            self.built.setdefault((self.name, compiled.hash), (constexprs, compiled))

        return launch


def _one_layer_lora_model(kind, dims, dtype):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(vocab_size=512, num_hidden_layers=1, max_position_embeddings=4096, tie_word_embeddings=True,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0, **dims)
    cfg = LlamaConfig(**common) if kind == "llama" else Qwen2Config(use_sliding_window=False, **common)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
    lora = LoraConfig(r=64, lora_alpha=64, task_type="CAUSAL_LM",  # the profiles' rank 64
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return get_peft_model(model, lora).to(dtype)


def _decode_launches(monkeypatch, kind, dims, target, dtype=torch.float16):
    """Every distinct kernel build the sampler's Triton decode step asks for, compiled for ``target``."""
    from transformers import GenerationConfig

    built = {}
    for name in KERNELS:
        monkeypatch.setattr(fast_kernels, name, _CompileInstead(getattr(fast_kernels, name), target, built))
    model = _one_layer_lora_model(kind, dims, dtype)
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    cfg = GenerationConfig(max_new_tokens=3, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=0,
                           eos_token_id=[2], bos_token_id=1)
    sampler = fast_sampler.FastSampler(model, kernels="triton", use_graphs=False)
    sampler.generate(ids, (ids != 0).long(), cfg)
    assert sampler.stats["eager_steps"] == 2  # two decode steps went through decode_triton
    return built


def _resources(cubin: bytes, tmp_path: Path) -> dict[str, int]:
    """REG / SHARED / LOCAL of the cubin's one kernel, from the Triton wheel's ``cuobjdump -res-usage``."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    path = tmp_path / "kernel.cubin"
    path.write_bytes(cubin)
    out = subprocess.run([str(tool), "-res-usage", str(path)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in re.findall(r"\b(REG|SHARED|LOCAL):(\d+)", out)}


def _fits_a_t4(name, compiled, tmp_path) -> list[str]:
    """What would stop ``compiled`` from loading on a T4 (Triton's load-time checks), as messages; [] if nothing."""
    meta = compiled.metadata
    problems = []
    if meta.target != T4 or ".target sm_75" not in compiled.asm["ptx"]:
        problems.append(f"{name}: not built for sm_75 ({meta.target})")
    use = _resources(compiled.asm["cubin"], tmp_path)
    shared = meta.shared + use.get("SHARED", 0)
    if shared > T4_SHARED_PER_BLOCK:
        problems.append(f"{name}: {shared} B of shared memory > {T4_SHARED_PER_BLOCK}")
    threads = meta.num_warps * 32
    per_warp = -(-use["REG"] * 32 // 256) * 256  # registers are allocated per warp in units of 256
    if use["REG"] > 255 or per_warp * meta.num_warps > T4_REGISTERS_PER_BLOCK or threads > 1024:
        problems.append(f"{name}: {use['REG']} registers x {threads} threads do not fit a T4's block")
    return problems


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_decode_kernel_builds_for_a_t4(monkeypatch, tmp_path, shape):
    """Each kernel the T4 path launches, with each set of constexprs it uses for this model in fp16, compiles for
    sm_75 and passes the load-time resource checks. Fails on the first kernel Triton cannot build."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))  # really compile, every run
    kind, dims = SHAPES[shape]
    built = _decode_launches(monkeypatch, kind, dims, T4)
    names = sorted({name for name, _ in built})
    assert names == sorted(KERNELS), names
    head_dim = dims["hidden_size"] // dims["num_attention_heads"]
    variants = {(name, tuple(sorted(c.items()))) for (name, _), (c, _) in built.items()}
    block = triton.next_power_of_2(dims["hidden_size"])
    assert variants == {
        ("_add_rms_kernel", (("BLOCK", block), ("HAS_D", False))),
        ("_add_rms_kernel", (("BLOCK", block), ("HAS_D", True))),
        ("_rope_cache_kernel", (("D", head_dim), ("HALF", head_dim // 2))),
        ("_decode_attn_kernel", (("BLOCK_N", 64), ("D", head_dim),
                                 ("GROUPS", dims["num_attention_heads"] // dims["num_key_value_heads"]))),
        ("_silu_mul_kernel", (("BLOCK", 1024),)),
    }
    problems = [p for (name, _), (_, compiled) in built.items() for p in _fits_a_t4(name, compiled, tmp_path)]
    assert problems == []
    for (name, _), (constexprs, compiled) in sorted(built.items()):
        print(f"{shape}: {name} {constexprs} -> sm_75 cubin, {_resources(compiled.asm['cubin'], tmp_path)}, "
              f"{compiled.metadata.num_warps} warps, {compiled.metadata.shared} B dynamic shared")
    fp16 = [k for (_, _), (_, k) in built.items() if "*fp16" in str(k.src.signature.values())]
    assert len(fp16) == len(built)  # the activations and the cache are fp16, as on a T4


@triton.jit
def _fp8_dot_kernel(X, Y, OUT, BLOCK: tl.constexpr):
    """A kernel only newer GPUs can build: a dot product of fp8 (e4m3) tiles."""
    i = tl.arange(0, BLOCK)
    x = tl.load(X + i[:, None] * BLOCK + i[None, :])
    y = tl.load(Y + i[:, None] * BLOCK + i[None, :])
    tl.store(OUT + i[:, None] * BLOCK + i[None, :], tl.dot(x, y))


def test_the_check_tells_turing_from_hopper(monkeypatch, tmp_path):
    """The same harness refuses what a T4 cannot build: an fp8 (e4m3) dot product, which Hopper has and Turing
    lacks, compiles for sm_90 and fails for sm_75 (so a pass above is not a harness that passes everything)."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))
    x = torch.empty((32, 32), dtype=torch.float8_e4m3fn)
    out = torch.empty((32, 32), dtype=torch.float32)
    hopper, turing = {}, {}
    _CompileInstead(_fp8_dot_kernel, GPUTarget("cuda", 90, 32), hopper)[(1,)](x, x, out, BLOCK=32)
    assert len(hopper) == 1
    with pytest.raises(Exception, match="(?i)fp8e4nv"):
        _CompileInstead(_fp8_dot_kernel, T4, turing)[(1,)](x, x, out, BLOCK=32)
    assert turing == {}


def test_triton_is_what_the_t4_stack_brings():
    """The Triton these checks compile with is the one torch 2.11 (the `t4` extra's torch, Colab's too) installs."""
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    pins = {r.name: str(r.specifier) for r in map(Requirement, extras["dev"] + extras["t4"])}
    assert pins["triton"] == f"=={triton.__version__}" == "==3.6.0"
    assert pins["torch"] == "==2.11.0"  # whose Linux wheels require triton==3.6.0


def test_triton_kernels_match_the_torch_decode_in_the_interpreter():
    """Runs tests/test_fast_rollout.py's Triton-vs-torch decode check in a process with TRITON_INTERPRET=1 (Triton
    reads it when the kernels are defined, so it cannot be switched on inside this process)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 here: tests/test_fast_rollout.py runs the check in this process")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    test = "tests/test_fast_rollout.py::test_triton_decode_matches_torch_decode"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                          cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-3000:]
