#!/usr/bin/env bash
# Run GRPO benchmark jobs on the device machine (nvidia-h100-x1), from the project root.
#
# Prepare once here: ../shared/tools/gpu-wheels.sh (fills .whl/ and .gpu-site/), and SmolLM2's tokenizer in
# .anchor/tok (cp -r ../shared/tools/anchor/tok .anchor/; ignored in .git/info/exclude). Then, with the device
# tool:  run(command="bash benchmarks/device.sh benchmarks/jobs/<file>.txt", carry=[".whl", ".gpu-site", ".anchor"])
#
# A job file holds one job a line: NAME TIMEOUT_S ARGS (ARGS for `benchmarks/grpo_gpu.py run`), or
# `build 0 --shapes ...`, or `sh TIMEOUT_S COMMAND` (any shell command); '#' starts a comment. Every job stops by
# DEADLINE_S (default 570 s after the start, under the device's 600 s per command). What comes back in $OUT:
# results.jsonl (one JSON result a line), results.tgz (the result JSONs, logs, profiles, dashboard run folders).
set -u
root=$PWD
t0=$(date +%s)
deadline=$(( t0 + ${DEADLINE_S:-570} ))
OUT=${OUT:-$(mktemp -d)}
work=$(mktemp -d); mkdir -p $work/res $work/logs $work/runs
if [ -z "${GG_SITE:-}" ]; then
  GG_SITE=$(mktemp -d)
  python3 -m pip install -q --no-index --no-deps --no-compile --target $GG_SITE .whl/*.whl 2>&1 | tail -2
fi
export PYTHONPATH=$GG_SITE:$root/.gpu-site:$root PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
export GG_WORK=$work
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "setup $(( $(date +%s) - t0 ))s"
for jf in "$@"; do
  while read -r name tmo rest; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    now=$(date +%s); left=$(( deadline - now ))
    if [ $left -lt 20 ]; then echo "$name skipped: deadline"; continue; fi
    [ "$tmo" -gt 0 ] 2>/dev/null && [ "$tmo" -lt $left ] && left=$tmo
    case $name in
      build) timeout $left python3 benchmarks/grpo_gpu.py build --tok .anchor/tok $rest > $work/logs/build.log 2>&1 < /dev/null; rc=$? ;;
      sh*) timeout $left bash -c "$rest" > $work/logs/$name.log 2>&1 < /dev/null; rc=$? ;;
      *) eval "set -- $rest"
         timeout $left python3 benchmarks/grpo_gpu.py run "$@" --out $work/res/$name.json > $work/logs/$name.log 2>&1 < /dev/null; rc=$? ;;
    esac
    echo "$name rc=$rc $(( $(date +%s) - now ))s"
    if [ $rc -ne 0 ]; then grep -v "^\s" $work/logs/$name.log | grep -v "it/s\]\|s/it\]" | tail -6; fi
  done < "$jf"
done
cat $work/res/*.json 2>/dev/null | python3 -c "
import json,sys
txt=sys.stdin.read(); dec=json.JSONDecoder(); i=0
while True:
    while i < len(txt) and txt[i].isspace(): i += 1
    if i >= len(txt): break
    obj, i = dec.raw_decode(txt, i); print(json.dumps(obj))
" > $OUT/results.jsonl
tar czf $OUT/results.tgz --exclude="checkpoint-*" --exclude="*.safetensors" --exclude="*.pt" --exclude="*.bin" -C $work res logs runs
ls $work/res/*.json >/dev/null 2>&1 && python3 benchmarks/grpo_gpu.py table $work/res/*.json
echo "total $(( $(date +%s) - t0 ))s"
