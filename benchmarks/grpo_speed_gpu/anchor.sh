#!/usr/bin/env bash
# GRPO on the random-weight SmolLM2-1.7B shape, 16 completions x 1,024 tokens, rank-64 LoRA, five sides one after
# another on one GPU (benchmarks/grpo_speed_gpu/grpo_gpu.py), on a machine with the `gpu` extra (pip install -e ".[gpu]"):
#   suite-vllm       the suite's default where vLLM runs: helpers.model.load (Unsloth fast_inference=True) + the
#                    suite's GRPO config, rollouts by helpers.generate.completions's rule (Unsloth's vLLM engine)
#   suite-vllm-gen2  suite-vllm with steps_per_generation=2 (32 rollouts generated at once for two optimizer steps)
#   suite-sampler    the same without vLLM (GRPO_NO_VLLM=1): the suite's sampler (the T4 path)
#   trl-vllm         plain TRL + PEFT with TRL's vLLM engine in colocate mode (the multi-GPU path's engine)
#   trl              plain TRL + PEFT, transformers generate (the reference)
# `anchor.sh a` runs the suite's three, `anchor.sh b` TRL's two (e.g. at the same time on two GPUs:
# CUDA_VISIBLE_DEVICES=0 bash anchor.sh a & CUDA_VISIBLE_DEVICES=1 bash anchor.sh b); no argument: all five.
# Writes $OUT_DIR/<side>.json and .log (default runs/grpo_speed) and prints the table.
set -u
export UNSLOTH_VLLM_STANDBY=${UNSLOTH_VLLM_STANDBY:-0}  # as measured: Unsloth's standby off (it sizes vLLM to ~87% of the GPU)
out=${OUT_DIR:-runs/grpo_speed}; mkdir -p "$out"
part=${1:-all}
here=benchmarks/grpo_speed_gpu
# both parts build the same model folder: one at a time (the second finds it built)
flock "$out/.build.lock" python3 $here/grpo_gpu.py build --shapes smollm2-1.7b || exit 1
g() { local name=$1; shift; python3 $here/grpo_gpu.py run --shape smollm2-1.7b --G 16 --L 1024 --out "$out/$name.json" "$@" \
        > "$out/$name.log" 2>&1; echo "$name rc=$?"; }
if [ "$part" != b ]; then
  GRPO_GPU_MEMORY_UTILIZATION=0.3 g suite-vllm --side suite --speed none --steps 6
  GRPO_GPU_MEMORY_UTILIZATION=0.3 g suite-vllm-gen2 --side suite --speed none --steps 6 --gen-batch 2
  GRPO_NO_VLLM=1 g suite-sampler --side suite --speed fast_rollout no_compile --steps 6
fi
if [ "$part" != a ]; then
  g trl-vllm --side trl --vllm --vllm-memory 0.3 --steps 6
  g trl --side trl --steps 3
fi
python3 $here/grpo_gpu.py table "$out"/*.json | tee "$out/table-$part.md"
