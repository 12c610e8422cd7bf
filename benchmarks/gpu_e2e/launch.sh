#!/usr/bin/env bash
# Start the GPU runs in the background (setsid: they outlive the device call; the machine stays warm while calls
# follow each other), each logging to /tmp/jobs/NAME.log and writing /tmp/jobs/NAME.rc when it ends.
#   bash benchmarks/gpu_e2e/launch.sh JOB...      JOB: e2e-SEED | learn-SEED | mg-N | anchor[-a|-b] | sweep | t4 | lr-RATE | sft-STEPS
set -u
source benchmarks/gpu_e2e/env.sh
mkdir -p /tmp/jobs /tmp/runs
nb() {  # nb RUN_DIR NOTEBOOK [papermill -p NAME VALUE ...]: one notebook, executed into RUN_DIR/notebooks
  local run=$1 name=$2; shift 2; mkdir -p "$run/notebooks"
  GRPO_RUN_DIR=$run python3 -m papermill "notebooks/$name.ipynb" "$run/notebooks/$name.ipynb" --cwd notebooks \
    -p run_dir "$run" "$@" --no-progress-bar
}
wait_for() { while [ ! -e "$1" ]; do sleep 5; done; }
job() {  # job NAME: the work of one job, in this shell
  local name=$1 run=/tmp/runs/$1
  case $name in
    e2e-*)  # the suite's own command, all eight notebooks, gpu profile, Unsloth + vLLM
      python3 -m helpers.run.cli run --profile gpu --out "$run" --seed "${name#e2e-}" --from "${FROM:-1}" ;;
    08-*)  # notebook 08 again in an existing gpu run (after a fix)
      nb "/tmp/runs/${name#08-}" 08_save_and_evaluate -p profile gpu ;;
    t4-08)  # the rehearsal's notebook 08 again (after a fix)
      export PYTHONPATH=$PWD/benchmarks/gpu_e2e/t4:$PYTHONPATH GRPO_NO_VLLM=1 GRPO_PROFILE=colab-t4 GRPO_T4_PEAK_DIR=/tmp/runs/t4/peak
      nb /tmp/runs/t4 08_save_and_evaluate -p profile colab-t4 -p eval_problems 64 ;;
    t4)  # colab-t4 rehearsal: fp16, no bf16, no vLLM, memory capped at 15 GiB (t4/sitecustomize.py), notebooks 06-08
      export PYTHONPATH=$PWD/benchmarks/gpu_e2e/t4:$PYTHONPATH GRPO_NO_VLLM=1 GRPO_PROFILE=colab-t4 GRPO_T4_PEAK_DIR=$run/peak
      nb "$run" 06_sft_warmup -p profile colab-t4 && nb "$run" 07_grpo_training -p profile colab-t4 -p grpo_steps 30 \
        && nb "$run" 08_save_and_evaluate -p profile colab-t4 -p eval_problems 64 ;;
    lr-*)  # GRPO at another learning rate on e2e-3407's SFT adapter
      wait_for /tmp/runs/e2e-3407/sft/adapter/adapter_model.safetensors; sleep 5
      mkdir -p "$run" && cp -r /tmp/runs/e2e-3407/sft "$run/"
      nb "$run" 07_grpo_training -p profile gpu -p grpo_learning_rate "${name#lr-}" && nb "$run" 08_save_and_evaluate -p profile gpu ;;
    sft-*)  # another SFT warm-up length, then GRPO and evaluation as the profile says
      nb "$run" 06_sft_warmup -p profile gpu -p sft_steps "${name#sft-}" && nb "$run" 07_grpo_training -p profile gpu \
        && nb "$run" 08_save_and_evaluate -p profile gpu ;;
    learn-*)  # notebooks 06-08 of the suite's command (gpu profile): SFT warm-up, 300 GRPO steps, held-out evaluation
      python3 -m helpers.run.cli run --profile gpu --out "$run" --seed "${name#learn-}" --from 6 ;;
    mg-*)  # issue 18: GRPO on N GPUs (mg-1 on GPU ${MG_GPU:-1}, mg-2 on GPUs 0,1; benchmarks/multi_gpu/measure.sh)
      local n=${name#mg-}; bash benchmarks/multi_gpu/measure.sh "$n" "$([ "$n" = 1 ] && echo "${MG_GPU:-1}" || echo 0,1)" ;;
    anchor)  # the 1.7B rows: suite (vLLM), suite (sampler), TRL + vLLM colocate, plain TRL (anchor.sh)
      bash benchmarks/gpu_e2e/anchor.sh ;;
    anchor-a|anchor-b)  # the same split over two GPUs: the suite's sides on GPU 0, TRL's on GPU 1
      CUDA_VISIBLE_DEVICES=$([ "$name" = anchor-a ] && echo 0 || echo 1) bash benchmarks/gpu_e2e/anchor.sh "${name#anchor-}" ;;
    sweep)  # issue 15's recipe sweep (benchmarks/sweeps/run_gpu.sh): cpu-profile recipes, float32, on both GPUs
      bash benchmarks/sweeps/run_gpu.sh ;;
    sh:*) bash -c "${name#sh:}" ;;
    *) echo "unknown job $name"; return 2 ;;
  esac
}
for name in "$@"; do
  log=/tmp/jobs/${name//[^A-Za-z0-9._-]/_}
  rm -f "$log.rc"
  setsid bash -c "$(declare -f nb wait_for job); source benchmarks/gpu_e2e/env.sh; job '$name' > '$log.log' 2>&1; echo \$? > '$log.rc'" \
    < /dev/null > /dev/null 2>&1 &
  echo "started $name"
  sleep "${STAGGER_S:-20}"  # vLLM engines profile free memory at start: not all at once
done
