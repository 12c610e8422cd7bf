#!/usr/bin/env bash
# Issue 18: GRPO throughput on 1 GPU and on N GPUs of one machine, on the same engine and the same work: TRL's
# GRPOTrainer + PEFT (the multi-GPU path: Unsloth's open-source path is single-GPU) with a vLLM engine per GPU in
# colocate mode; the gpu profile's settings (2 prompts x 16 completions x <=512 tokens per GPU per step), the real
# SmolLM2-135M-Instruct from a fresh LoRA (no SFT warm-up: completions run long, so generation dominates).
#   bash benchmarks/multi_gpu/measure.sh N GPUS   e.g. "1 1" (one process on GPU 1), "2 0,1" (two processes)
# Run on the GPU machine after benchmarks/gpu_e2e/stage.sh's steps; writes /tmp/mg/N/ (run folder, log, GPU memory
# samples); benchmarks/multi_gpu/summarize.py prints the table.
set -u
n=$1 gpus=$2 steps=${STEPS:-20} out=/tmp/mg/$1
source "${ENV_SH:-benchmarks/gpu_e2e/env.sh}"  # ENV_SH=/dev/null: this machine's own environment (a CPU rehearsal)
# the machine's rule: NVLink multicast stays off (KINDS.md)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export CUDA_VISIBLE_DEVICES=$gpus GRPO_PLAIN_TRL=1 GRPO_GPU_MEMORY_UTILIZATION=${GRPO_GPU_MEMORY_UTILIZATION:-0.2}
mkdir -p "$out"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi -i "$gpus" --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 1000 > "$out/memory.csv" &
  smi=$!
fi
args=(-m helpers.train.grpo --run-dir "$out/run" --profile "${PROFILE:-gpu}" --no-sft --max-steps "$steps" --save-steps 1000
      --problems 400 --seed 3407 --fresh ${EXTRA:-})
t0=$(date +%s.%N)
if [ "$n" = 1 ]; then
  python3 "${args[@]}" > "$out/log" 2>&1
else
  python3 -m accelerate.commands.launch --config_file configs/accelerate_multi_gpu.yaml --num_processes "$n" \
    "${args[@]}" > "$out/log" 2>&1
fi
rc=$?
echo "$(date +%s.%N) $t0" > "$out/wall"
[ -n "${smi:-}" ] && kill "$smi"
echo "processes=$n gpus=$gpus rc=$rc"
exit $rc
