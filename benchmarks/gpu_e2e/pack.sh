#!/usr/bin/env bash
# Pack what the GPU runs wrote into $OUT/results.tgz (one file comes back): logs, metrics, evaluation tables, plots,
# executed notebooks; not checkpoints, saved models or weights.
cd /tmp && tar czf "$OUT/results.tgz" --exclude='*/checkpoints' --exclude='*/saved' --exclude='*.safetensors' \
  --exclude='*.gguf' --exclude='*/previous-*' jobs runs mg 2>/dev/null
ls -la "$OUT"
