#!/usr/bin/env bash
# Issue 14 item 5 / issue 19 item 3: GRPO on the random-weight SmolLM2-1.7B shape, 16 completions x 1,024 tokens,
# rank-64 LoRA, four sides one after another on one GPU of the same session (benchmarks/grpo_gpu.py):
#   suite-vllm     the suite's default where vLLM runs: helpers.model.load (Unsloth fast_inference=True) + the
#                  suite's GRPO config, rollouts by helpers.generate.completions's rule (Unsloth's vLLM engine)
#   suite-sampler  the same without vLLM (GRPO_NO_VLLM=1): the suite's sampler (the T4 path)
#   trl-vllm       plain TRL + PEFT with TRL's vLLM engine in colocate mode (the multi-GPU path's engine)
#   trl            plain TRL + PEFT, transformers generate (the reference)
#   suite-vllm-gen2  suite-vllm with steps_per_generation=2 (32 rollouts generated at once for two optimizer steps:
#                  issue 19's generation-batch lever; measured beside the default, not the default)
# `anchor.sh a` runs the suite's three, `anchor.sh b` TRL's two (one GPU each, at the same time: launch.sh jobs
# anchor-a and anchor-b); no argument: all five one after another.
# Needs stage.sh's steps and .anchor/tok (SmolLM2's tokenizer: cp -r ../shared/tools/anchor/tok .anchor/, carried
# with the call that launches it: ignored folders carried by one call are gone in the next). Writes /tmp/runs/anchor/*.json and the table; launch.sh job `anchor`.
set -u
out=/tmp/runs/anchor; mkdir -p "$out"
export GRPO_GPU_MODELS=/tmp/grpo_gpu_models
part=${1:-all}
# both parts build the same model folder: one at a time (the second finds it built)
flock /tmp/anchor-build.lock python3 benchmarks/grpo_gpu.py build --tok .anchor/tok --shapes smollm2-1.7b || exit 1
g() { local name=$1; shift; python3 benchmarks/grpo_gpu.py run --shape smollm2-1.7b --G 16 --L 1024 --out "$out/$name.json" "$@" \
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
python3 benchmarks/grpo_gpu.py table "$out"/*.json | tee "$out/table-$part.md"
