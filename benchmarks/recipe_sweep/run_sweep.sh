#!/usr/bin/env bash
# The recipe sweep on one or more CUDA GPUs (or a CPU: GPUS=""): every config in benchmarks/recipe_sweep/configs/
# (or $CONFIGS) x $SEEDS, spread over the GPUs in $GPUS round-robin, $PER_GPU jobs at once on each, one CPU thread
# each, $JOB_TIMEOUT seconds at most per job; $OVERRIDE (a JSON object) is applied to every job's config.
# Writes $OUT_DIR/<config>-s<seed>/{result.json,log} (default runs/sweep); summarize.py prints the table.
# Keep PER_GPU small: these are small eager jobs, and 21 per H200 made every GRPO step ~25 s, as slow as a
# 2-core CPU, so 42 jobs had not finished their evaluation after 15 minutes (README, "The first GPU sweep").
#   bash benchmarks/recipe_sweep/run_sweep.sh
#   CONFIGS="benchmarks/recipe_sweep/configs/d_filter_drop.json ..." PER_GPU=5 \
#     OVERRIDE='{"eval_problems": 200, "paraphrased_problems": 64, "include_base": false}' bash benchmarks/recipe_sweep/run_sweep.sh
set -u
ov=${OVERRIDE:-"{}"} seeds=${SEEDS:-3407 1 2} gpus=${GPUS-0 1} per_gpu=${PER_GPU:-3} out=${OUT_DIR:-runs/sweep}
configs=${CONFIGS:-$(ls benchmarks/recipe_sweep/configs/*.json)}
mkdir -p "$out"
ngpu=$(wc -w <<< "$gpus"); [ "$ngpu" = 0 ] && { gpus=none; ngpu=1; }
i=0
jobs_file=$(mktemp)
for c in $configs; do for s in $seeds; do
  gpu=$(cut -d' ' -f$(( i % ngpu + 1 )) <<< "$gpus"); i=$((i + 1))
  echo "$gpu $c $s" >> "$jobs_file"
done; done
one() {  # one GPU CONFIG SEED
  local name; name=$(basename "$2" .json)-s$3; mkdir -p "$out/$name"
  CUDA_VISIBLE_DEVICES=$([ "$1" = none ] || echo "$1") OMP_NUM_THREADS=1 timeout "${JOB_TIMEOUT:-900}" \
    python3 benchmarks/recipe_sweep/recipe_sweep.py --config "$2" --seed "$3" --out "$out/$name" --override "$ov" \
    > "$out/$name/log" 2>&1
  echo "$name rc=$?"
}
# the embedded model is unpacked into the cache once, before the jobs start (not by all of them at once)
CUDA_VISIBLE_DEVICES= python3 -c 'import sys; sys.modules["unsloth"] = sys.modules["vllm"] = None
from helpers.model.load import load_model; load_model(profile="cpu")' > "$out/warm.log" 2>&1 || { cat "$out/warm.log"; exit 1; }
export -f one; export out ov
xargs -P $(( per_gpu * ngpu )) -L 1 bash -c 'one "$@"' _ < "$jobs_file"
rm -f "$jobs_file"
