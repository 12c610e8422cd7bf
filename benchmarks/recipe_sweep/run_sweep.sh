#!/usr/bin/env bash
# Issue 15's sweep on the GPU machine: every config in benchmarks/sweeps/ (or $CONFIGS) x $SEEDS, spread over the
# GPUs in $GPUS round-robin, $PER_GPU jobs at once on each, one CPU thread each, $JOB_TIMEOUT seconds at most per
# job. Writes /tmp/runs/sweep/<config>-s<seed>/{result.json,log}; benchmarks/sweeps/summarize.py prints the table.
# Keep PER_GPU small: these are small eager jobs, and 21 per H200 (2026-11-30) made every GRPO step ~25 s, as slow
# as the 2-core CPU, so the 42 jobs had not finished their evaluation after 15 minutes (benchmarks/learning.md).
#   bash benchmarks/sweeps/run_gpu.sh            (launch.sh job `sweep`)
set -u
ov=${OVERRIDE:-"{}"} seeds=${SEEDS:-3407 1 2} gpus=${GPUS:-0 1} per_gpu=${PER_GPU:-3} out=/tmp/runs/sweep
configs=${CONFIGS:-$(ls benchmarks/sweeps/*.json)}
mkdir -p "$out"
ngpu=$(wc -w <<< "$gpus"); i=0
jobs_file=$(mktemp)
for c in $configs; do for s in $seeds; do
  gpu=$(cut -d' ' -f$(( i % ngpu + 1 )) <<< "$gpus"); i=$((i + 1))
  echo "$gpu $c $s" >> "$jobs_file"
done; done
one() {  # one GPU CONFIG SEED
  local name; name=$(basename "$2" .json)-s$3; mkdir -p "$out/$name"
  CUDA_VISIBLE_DEVICES=$1 OMP_NUM_THREADS=1 timeout "${JOB_TIMEOUT:-900}" \
    python3 benchmarks/recipe_sweep.py --config "$2" --seed "$3" --out "$out/$name" --override "$ov" > "$out/$name/log" 2>&1
  echo "$name rc=$?"
}
# the embedded model is unpacked into the cache once, before the jobs start (not by all of them at once)
CUDA_VISIBLE_DEVICES= python3 -c 'import sys; sys.modules["unsloth"] = sys.modules["vllm"] = None
from helpers.loading import load_model; load_model(profile="cpu")' > "$out/warm.log" 2>&1 || { cat "$out/warm.log"; exit 1; }
export -f one; export out ov
xargs -P $(( per_gpu * ngpu )) -L 1 bash -c 'one "$@"' _ < "$jobs_file"
rm -f "$jobs_file"
