"""helpers.dashboard.callback, headless: fake trainer events in both TRL key generations, no model, no front end."""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict, deque
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from helpers.dashboard.callback import DashboardCallback, Throttle, attach
from helpers.dashboard.metrics import Panels, canonical, read_metrics, reward_names
from helpers.dashboard.plots import PANEL_NAMES, plot_metrics
from helpers.dashboard.text import samples_from_trainer_logs, samples_html, summary_line

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def new_logs(step: int) -> dict:
    """What TRL 1.15's GRPOTrainer.log passes to on_log (rewards.py's function names)."""
    return {
        "loss": 0.0, "grad_norm": 0.5, "learning_rate": 5e-6 * (1 - step / 10), "num_tokens": 100.0 * step,
        "completions/mean_length": 40.0 + step, "completions/min_length": 10.0, "completions/max_length": 64.0,
        "completions/clipped_ratio": 0.25, "completions/mean_terminated_length": 30.0,
        "rewards/format_compliance/mean": 0.1 * step, "rewards/format_compliance/std": 0.2,
        "rewards/accuracy/mean": 0.05 * step, "rewards/accuracy/std": 0.1,
        "rewards/correctness_reward/mean": 0.1 * step, "rewards/correctness_reward/std": 0.3,
        "reward": 0.2 * step, "reward_std": 0.3, "frac_reward_zero_std": 0.5,
        "kl": 0.001 * step, "entropy": 1.5, "clip_ratio/low_mean": 0.0, "clip_ratio/region_mean": 0.0,
        "epoch": step / 10,
    }


def old_logs(step: int) -> dict:
    """The same step as TRL <= 0.16 (and Unsloth's older trainers) logged it."""
    return {
        "loss": 0.0, "grad_norm": 0.5, "learning_rate": 5e-6, "completion_length": 40.0 + step,
        "rewards/format_compliance": 0.1 * step, "rewards/accuracy": 0.05 * step,
        "reward": 0.2 * step, "reward_std": 0.3, "kl": 0.001 * step, "clip_ratio": 0.0, "epoch": step / 10,
    }


def state(step: int, max_steps: int = 10) -> TrainerState:
    return TrainerState(global_step=step, max_steps=max_steps, epoch=step / max_steps)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(tmp_path, **kw) -> DashboardCallback:
    kw.setdefault("notebook", False)
    kw.setdefault("plot_every", 0)
    kw.setdefault("stream", io.StringIO())
    return DashboardCallback(tmp_path / "run", "grpo", **kw)


def drive(cb, steps, logs=new_logs, max_steps=10, end=True):
    args, control = SimpleNamespace(), TrainerControl()
    cb.on_train_begin(args, state(steps[0] - 1, max_steps), control)
    for s in steps:
        cb.on_log(args, state(s, max_steps), control, logs=logs(s))
    if end:
        cb.on_train_end(args, state(steps[-1], max_steps), control)


def test_both_generations_give_the_same_canonical_names():
    new, old = canonical(new_logs(3)), canonical(old_logs(3))
    shared = {"reward", "reward_std", "rewards/format_compliance/mean", "rewards/accuracy/mean",
              "completions/mean_length", "kl", "learning_rate", "loss", "grad_norm", "epoch"}
    assert shared <= set(new) and shared <= set(old)
    assert "completion_length" not in old and "rewards/accuracy" not in old
    assert old["clip_ratio/region_mean"] == 0.0
    for key in shared - {"learning_rate"}:
        assert math.isclose(new[key], old[key]), key
    assert canonical({"eval_rewards/accuracy": 1, "x": float("nan"), "y": None, "s": "text", "b": True}) == {
        "eval_rewards/accuracy/mean": 1.0, "x": None, "y": None}
    assert reward_names(new) == ["accuracy", "correctness_reward", "format_compliance"]


def test_panels_match_by_substring_best_first():
    p = Panels()
    names = ["strict_format_reward", "format_compliance", "correctness_reward", "lenient_accuracy", "accuracy"]
    assert p.match("format", names) == ["format_compliance"]
    assert p.match("accuracy", names) == ["accuracy", "lenient_accuracy"]  # strict and lenient, strict first
    unsloth = ["xmlcount_reward_func", "soft_format_reward_func", "strict_format_reward_func", "correctness_reward_func"]
    assert p.match("format", unsloth) == ["soft_format_reward_func", "strict_format_reward_func"]
    assert p.match("accuracy", unsloth) == ["correctness_reward_func"]
    assert p.match("accuracy", ["xml_count"]) == []
    assert Panels(accuracy=("exact",)).match("accuracy", ["exact_match", "accuracy"]) == ["exact_match"]


@pytest.mark.parametrize("logs", [new_logs, old_logs], ids=["trl1", "trl0"])
def test_jsonl_is_flushed_per_line_and_console_lines(tmp_path, logs):
    cb = make(tmp_path)
    drive(cb, [1, 2, 3], logs=logs, end=False)
    path = tmp_path / "run" / "grpo" / "metrics.jsonl"
    lines = path.read_text().splitlines()  # read before on_train_end: already on disk
    assert len(lines) == 3
    recs = [json.loads(line) for line in lines]
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert {"epoch", "time", "elapsed_s", "reward", "rewards/accuracy/mean", "completions/mean_length"} <= set(recs[0])
    assert recs[2]["reward"] == pytest.approx(0.6) and recs[2]["rewards/format_compliance/mean"] == pytest.approx(0.3)
    out = cb.stream.getvalue().splitlines()
    assert len(out) == 3
    assert out[2].startswith("step 3/10 | reward 0.6 ± 0.3 | format 0.3 | acc 0.15 | len 43.0")
    assert "kl 0.003" in out[2] and "lr " in out[2] and "loss" not in out[2]
    assert read_metrics(path) == read_metrics(path.parent)


def test_console_eta_eval_and_summary_lines(tmp_path):
    clock = Clock()
    cb = make(tmp_path, clock=clock)
    assert DashboardCallback(tmp_path / "run").notebook is False  # plain pytest: no widget front end
    args, control = SimpleNamespace(), TrainerControl()
    cb.on_train_begin(args, state(0), control)
    clock.t = 20.0
    cb.on_log(args, state(2), control, logs=new_logs(2))
    cb.on_log(args, state(2), control, logs={"eval_reward": 0.5, "eval_rewards/accuracy": 0.25, "eval_loss": 0.1})
    cb.on_log(args, state(2), control, logs={"train_runtime": 3725.0, "train_loss": 0.0})
    out = cb.stream.getvalue().splitlines()
    assert out[0].endswith(" | estimating time left | 0:20 elapsed")  # the first logged step is warm-up
    assert out[1].startswith("eval step 2/10 | reward 0.5 | acc 0.25")
    assert out[2] == "step 2/10 | done in 1:02:05"
    sft = summary_line({"step": 5, "loss": 1.234, "learning_rate": 2e-4})
    assert sft == "step 5 | loss 1.23 | lr 0.0002"


def test_resume_drops_steps_logged_after_the_checkpoint(tmp_path):
    drive(make(tmp_path), [1, 2, 3, 4, 5], end=False)  # killed after step 5, checkpoint at step 3
    path = tmp_path / "run" / "grpo" / "metrics.jsonl"
    with open(path, "a") as f:
        f.write('{"step": 6, "rew')  # a line cut short by the kill
    cb = make(tmp_path)
    drive(cb, [4, 5, 6, 7], logs=lambda s: {**new_logs(s), "reward": 10.0 + s}, end=False)
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["reward"] for r in rows] == pytest.approx([0.2, 0.4, 0.6, 14, 15, 16, 17])
    assert len(path.read_text().splitlines()) == 7
    assert len((path.parent / "metrics.jsonl.prev").read_text().splitlines()) == 6
    assert "resuming at step 3: dropped 3 later line(s)" in cb.stream.getvalue()
    assert [r["step"] for r in cb.history] == [1, 2, 3, 4, 5, 6, 7]  # plots cover the whole run


def test_read_metrics_dedups_by_step_last_wins_and_merges(tmp_path):
    path = tmp_path / "m.jsonl"
    recs = [{"step": 1, "reward": 1.0}, {"step": 2, "reward": 2.0}, {"step": 1, "reward": 5.0},
            {"step": 2, "train_runtime": 9.0, "completion_length": 7}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + "not json\n")
    assert read_metrics(path) == [{"step": 1, "reward": 5.0},
                                     {"step": 2, "reward": 2.0, "train_runtime": 9.0, "completions/mean_length": 7.0}]
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_pngs_are_written_periodically_and_at_the_end(tmp_path):
    cb = make(tmp_path, plot_every=2)
    drive(cb, [1], end=False)
    plots = tmp_path / "run" / "plots"
    assert not list(plots.glob("*.png"))
    cb.on_log(SimpleNamespace(), state(2), TrainerControl(), logs=new_logs(2))
    assert (plots / "grpo_dashboard.png").exists()
    cb.on_train_end(SimpleNamespace(), state(2), TrainerControl())
    names = {p.name for p in plots.glob("*.png")}
    assert names == {f"grpo_{n}.png" for n in ("dashboard", *PANEL_NAMES)}
    for p in plots.iterdir():
        assert p.read_bytes().startswith(PNG_MAGIC), p  # no temp files left behind either
    import matplotlib.image

    assert matplotlib.image.imread(plots / "grpo_reward.png").ndim == 3


def test_plot_metrics_skips_panels_without_data(tmp_path):
    history = [{"step": s, **old_logs(s)} for s in (1, 2, 3)]  # e.g. trainer.state.log_history
    written = plot_metrics(history, tmp_path, prefix="old")
    assert set(written) == {"dashboard", "reward", "rewards", "format_accuracy", "length", "kl_entropy", "loss", "lr"}
    sft = plot_metrics([{"step": s, "loss": 2.0 / s, "learning_rate": 1e-4} for s in (1, 2)], tmp_path, "sft")
    assert set(sft) == {"dashboard", "loss", "lr"}
    assert plot_metrics([], tmp_path, "empty")["dashboard"].read_bytes().startswith(PNG_MAGIC)


def test_throttle_with_an_injected_clock():
    clock = Clock()
    t = Throttle(0.5, clock)
    assert t.ready() and not t.ready()
    clock.t = 0.4
    assert not t.ready() and t.ready(force=True)
    clock.t = 0.89
    assert not t.ready()
    clock.t = 0.9
    assert t.ready()


def fake_trainer():
    n = 8
    logs = {"prompt": deque(maxlen=n), "completion": deque(maxlen=n),
            "rewards": defaultdict(lambda: deque(maxlen=n)), "advantages": deque(maxlen=n)}
    for i in range(10):
        logs["prompt"].append([{"role": "system", "content": "sys"}, {"role": "user", "content": f"What is {i}+1?"}])
        logs["completion"].append([{"role": "assistant", "content": f"<reasoning>{i}+1</reasoning><answer>{i + 1}</answer> <b>"}])
        logs["rewards"]["format_compliance"].append(1.0)
        logs["rewards"]["accuracy"].append(float(i % 2))
        logs["rewards"]["correctness"].append(float("nan"))
        logs["advantages"].append(0.5 - i % 2)
    return SimpleNamespace(_logs=logs, reward_weights=SimpleNamespace(tolist=lambda: [0.0, 0.0, 2.0]),
                           remove_callback=lambda callback: None)


def test_samples_from_trainer_logs():
    samples = samples_from_trainer_logs(fake_trainer()._logs, [1.0, 2.0, 1.0], n=3)
    assert [s["prompt"] for s in samples] == ["What is 7+1?", "What is 8+1?", "What is 9+1?"]
    assert samples[-1]["completion"].endswith("<answer>10</answer> <b>")
    assert samples[-1]["rewards"] == {"format_compliance": 1.0, "accuracy": 1.0, "correctness": None}
    assert samples[-1]["total"] == 3.0 and samples[-1]["advantage"] == -0.5
    table = samples_html(samples)
    assert "&lt;answer&gt;10&lt;/answer&gt; &lt;b&gt;" in table
    assert "<answer>" not in table and "<b>" not in table.replace("<b>3</b>", "").replace("<b>1</b>", "")


def test_widget_mode_builds_and_updates_throttled(tmp_path, monkeypatch):
    import ipywidgets

    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)
    clock = Clock()
    cb = make(tmp_path, notebook=True, clock=clock)
    assert isinstance(cb.widget, ipywidgets.VBox)
    assert [type(c).__name__ for c in cb.widget.children] == ["HTML", "Image", "HTML", "HTML"]
    cb.bind(fake_trainer())
    args, control = SimpleNamespace(), TrainerControl()
    cb.on_train_begin(args, state(0, 3), control)
    cb.on_log(args, state(1, 3), control, logs=new_logs(1))
    assert "step 1/3" in cb.header.value and bytes(cb.image.value).startswith(PNG_MAGIC)
    assert "What is 9+1?" in cb.samples_box.value and "&lt;answer&gt;10" in cb.samples_box.value
    first = bytes(cb.image.value)
    clock.t = 0.1
    cb.on_log(args, state(2, 3), control, logs=new_logs(2))  # throttled: too soon
    assert "step 1/3" in cb.header.value and bytes(cb.image.value) == first
    clock.t = 0.2
    cb.on_log(args, state(3, 3), control, logs=new_logs(3))  # the final step always redraws
    assert "step 3/3" in cb.header.value and bytes(cb.image.value) != first
    clock.t = 0.3
    cb.on_log(args, state(3, 3), control, logs={"train_runtime": 12.0, "train_loss": 0.0})
    assert "done in 0:12" in cb.header.value
    cb.on_train_end(args, state(3, 3), control)
    assert cb.stream.getvalue() == ""  # no console lines in widget mode
    assert len((tmp_path / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()) == 4


def test_widget_draws_a_throttled_update_at_train_end(tmp_path, monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)
    clock = Clock()
    cb = make(tmp_path, notebook=True, clock=clock)
    drive(cb, [1, 2], end=False)  # stopped early at step 2 of 10; step 2 came too soon to draw
    assert "step 1/10" in cb.header.value
    cb.on_train_end(SimpleNamespace(), state(2), TrainerControl())
    assert "step 2/10" in cb.header.value and "no samples yet" in cb.samples_box.value


def test_attach_binds_and_adds(tmp_path):
    from transformers.trainer_callback import PrinterCallback

    added, removed = [], []
    trainer = SimpleNamespace(add_callback=added.append, remove_callback=removed.append, _logs={})
    cb = attach(trainer, tmp_path / "run", stage="sft", notebook=False)
    assert added == [cb] and cb.trainer is trainer
    assert removed == [PrinterCallback]  # the dashboard prints each step: TRL's log dicts would print twice
    assert cb.metrics_path == (tmp_path / "run" / "sft" / "metrics.jsonl").resolve()


def test_other_ranks_record_nothing(tmp_path):
    cb = make(tmp_path)
    s = state(1)
    s.is_world_process_zero = False
    cb.on_train_begin(SimpleNamespace(), s, TrainerControl())
    cb.on_log(SimpleNamespace(), s, TrainerControl(), logs=new_logs(1))
    cb.on_train_end(SimpleNamespace(), s, TrainerControl())
    assert not cb.metrics_path.exists() and cb.stream.getvalue() == ""
