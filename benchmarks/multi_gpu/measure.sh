#!/usr/bin/env bash
# GRPO throughput on 1 GPU and on N GPUs of one machine, on the same engine and the same work per GPU: notebook 07's
# own cells (grpo-notebooks stage 7, one process per GPU under accelerate) on TRL's GRPOTrainer + PEFT (the multi-GPU
# path: Unsloth's open-source path is single-GPU) with a vLLM engine per GPU in colocate mode; the gpu profile's
# settings (2 prompts x 16 completions x <=512 tokens per GPU per step), the embedded SmolLM2-135M-Instruct from a
# fresh LoRA (no SFT warm-up: completions run long, so generation dominates).
# Needs the `gpu` extra (pip install -e ".[gpu]") and accelerate's config configs/accelerate_multi_gpu.yaml.
#   bash benchmarks/multi_gpu/measure.sh N GPUS     e.g. "1 1" (one process on GPU 1), "2 0,1" (two processes)
# Writes $OUT_DIR/N/ (default runs/multi_gpu/pair/N: run folder, log, GPU memory samples every second, wall time);
# STEPS (default 20) sets the steps; python benchmarks/multi_gpu/summarize.py runs/multi_gpu prints the table.
set -u
n=$1 gpus=$2 steps=${STEPS:-20} out=${OUT_DIR:-runs/multi_gpu/pair}/$1
# The measured runs had NVLink multicast (NVLS) off in NCCL and torch; kept so that a repeat measures the same.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export CUDA_VISIBLE_DEVICES=$gpus GRPO_PLAIN_TRL=1 GRPO_GPU_MEMORY_UTILIZATION=${GRPO_GPU_MEMORY_UTILIZATION:-0.2}
mkdir -p "$out"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi -i "$gpus" --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 1000 > "$out/memory.csv" &
  smi=$!
fi
args=(-m helpers.run.cli stage 7 --out "$out/run" --profile "${PROFILE:-gpu}" --seed 3407 -p from_sft=False
      -p grpo_steps="$steps" -p save_steps=1000 -p grpo_train_problems=400 --fresh ${EXTRA:-})
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
