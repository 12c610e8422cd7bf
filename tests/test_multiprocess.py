"""GRPO in several processes: ``accelerate launch`` with the repository's config runs notebook 07's own cells
(``grpo-notebooks stage 7``, the one GRPO code path) as 2 processes over gloo on a CPU, under the ``ci`` profile,
and the run folder comes out as one process would leave it: one metrics file with each step once, one adapter
(written by rank 0) that records the 2 processes and the same settings as one process, nothing moved aside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from helpers.runtime.profiles import profile_settings

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate's launcher is not installed beside this Python")
def test_two_processes_write_one_run_folder(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRPO_PROFILE": "ci", "OMP_NUM_THREADS": "1"}
    cmd = [str(ACCELERATE), "launch", "--config_file", str(REPO / "configs" / "accelerate_multi_gpu.yaml"),
           "--num_processes", "2", "-m", "helpers.run.cli", "stage", "7", "--out", str(run), "--profile", "ci",
           "-p", "from_sft=False", "-p", "grpo_steps=3", "-p", "grpo_train_problems=16", "--fresh"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert log.count("policy: base model + fresh LoRA") == 2  # both processes trained

    rows = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows if r.get("reward") is not None]
    assert steps == [1, 2, 3]  # rank 0 alone logs: no duplicate step
    assert all(r["reward"] == r["reward"] for r in rows if r.get("reward") is not None)  # finite, not NaN

    adapter = run / "grpo" / "adapter"
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    info = json.loads((adapter / "training.json").read_text())
    assert info["processes"] == 2
    one = profile_settings("ci", grpo_steps=3)  # what one process of the same command trains with
    assert info["settings"] == {**asdict(one), "train_levels": list(one.train_levels)}
    assert info["config"]["per_device_train_batch_size"] == one.grpo_batch_size and info["config"]["seed"] == 3407
    assert sorted(p.name for p in (run / "grpo" / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert not list((run / "grpo").glob("previous-*"))  # a fresh folder: nothing of an earlier run to set aside


@pytest.mark.parametrize("env, expected", [({}, False), ({"GRPO_PLAIN_TRL": "1"}, True), ({"GRPO_PLAIN_TRL": "0"}, False),
                                           ({"WORLD_SIZE": "2"}, True), ({"WORLD_SIZE": "2", "GRPO_PLAIN_TRL": "0"}, True)])
def test_plain_trl_path_with_several_processes_or_when_asked(monkeypatch, env, expected):
    from helpers.runtime.distributed import plain_trl

    for key in ("GRPO_PLAIN_TRL", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert plain_trl() is expected


def test_plain_trl_refuses_a_value_it_cannot_read(monkeypatch):
    from helpers.runtime.distributed import plain_trl

    monkeypatch.setenv("GRPO_PLAIN_TRL", "yes please")
    with pytest.raises(ValueError, match="GRPO_PLAIN_TRL='yes please' is not 0 or 1; fix"):
        plain_trl()


def test_one_rule_for_the_unsloth_path(monkeypatch):
    """load_model, add_lora and notebooks 06 and 07's trainer arguments all ask helpers.runtime.distributed.unsloth_path: Unsloth on a CUDA GPU
    with unsloth, unless the plain-TRL path is on (several processes or GRPO_PLAIN_TRL=1)."""
    from types import SimpleNamespace

    from helpers.runtime.distributed import unsloth_path

    for key in ("GRPO_PLAIN_TRL", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    gpu, no_unsloth, cpu = (SimpleNamespace(cuda=c, unsloth=u) for c, u in ((True, True), (True, False), (False, True)))
    assert unsloth_path(gpu) and not unsloth_path(no_unsloth) and not unsloth_path(cpu)
    monkeypatch.setenv("GRPO_PLAIN_TRL", "1")
    assert not unsloth_path(gpu)
    monkeypatch.setenv("GRPO_PLAIN_TRL", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not unsloth_path(gpu)


def test_shutdown_destroys_the_process_group(tmp_path):
    """grpo-notebooks stage ends with helpers.runtime.distributed.shutdown: without it every NCCL rank warned at exit
    ("destroy_process_group() was not called", the two-GPU run of 2026-11-30)."""
    import torch.distributed as dist

    from helpers.runtime.distributed import shutdown

    shutdown()  # no group yet: nothing to do, no error
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    shutdown()
    assert not dist.is_initialized()


def test_barrier_waits_only_for_other_processes(tmp_path, monkeypatch):
    """A group of one (vLLM's on a single GPU) gets no barrier: NCCL's warned at each saved adapter."""
    import torch.distributed as dist

    from helpers.runtime.distributed import barrier, shutdown

    calls = []
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: calls.append(1))
    barrier()  # no group
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        barrier()
        assert calls == []
        monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
        barrier()
        assert calls == [1]
    finally:
        shutdown()
