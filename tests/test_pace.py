"""helpers.dashboard.pace (issue 31): the time left that ``grpo-notebooks run`` and the dashboard show leaves the
warm-up step out and follows recent steps. A fake clock replays runs with a slow first step (65 s, as on the
H100 on 2026-12-06, then ~3 s steps); from step 5 on the estimate must be within 25% of the true time left,
through both consumers: the command line's progress lines and the dashboard's line."""

from __future__ import annotations

import io
import random
import re
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from helpers.dashboard.callback import DashboardCallback
from helpers.dashboard.pace import StepPace, hms
from helpers.dashboard.text import summary_line
from helpers.run.progress import training_line

TOTAL = 300


def warm_then_steady(seed: int = 0) -> list[float]:
    """Seconds of steps 1..TOTAL: 65 s of warm-up, then 3 s ± 10%."""
    rng = random.Random(seed)
    return [65.0] + [3.0 * rng.uniform(0.9, 1.1) for _ in range(TOTAL - 1)]


def slow_fast_slow(seed: int = 1) -> list[float]:
    """Slow, fast, slow again, fast: 65 s of warm-up, ~3 s steps, a checkpoint save every 50 steps (+5 s), and
    three 30 s steps at 150-152 (a re-compile for longer completions), then ~3 s again."""
    rng = random.Random(seed)
    steps = [65.0]
    for step in range(2, TOTAL + 1):
        seconds = 3.0 * rng.uniform(0.9, 1.1)
        if step % 50 == 0:
            seconds += 5.0
        if 150 <= step <= 152:
            seconds = 30.0
        steps.append(seconds)
    return steps


def drifting(seed: int = 2) -> list[float]:
    """65 s of warm-up, then steps that slow down from 3 s to 4 s as the completions grow longer."""
    rng = random.Random(seed)
    return [65.0] + [(3.0 + step / TOTAL) * rng.uniform(0.9, 1.1) for step in range(2, TOTAL + 1)]


RUNS = pytest.mark.parametrize("durations", [warm_then_steady(), slow_fast_slow(), drifting()],
                               ids=["warm-steady", "slow-fast-slow", "drifting"])


def clocks(durations: list[float]) -> list[float]:
    out, t = [], 0.0
    for d in durations:
        t += d
        out.append(t)
    return out


def seconds_left(line: str) -> float | None:
    """The time left a line shows (``m:ss left`` or ``h:mm:ss left``), None while it says 'estimating'."""
    found = re.search(r"\| ([\d:]+) left", line)
    if found is None:
        assert "estimating time left" in line, line
        return None
    parts = [int(p) for p in found.group(1).split(":")]
    return float(sum(p * 60 ** i for i, p in enumerate(reversed(parts))))


def check(lines: list[str], durations: list[float]) -> None:
    """From step 5 on: within 25% of the true time left, give or take 5 s (the last steps of a run, where a
    checkpoint save is a large share of what is left)."""
    for step, line in enumerate(lines, 1):
        truth = sum(durations[step:])
        shown = seconds_left(line)
        if step >= 5:
            assert shown is not None, f"step {step}: still estimating"
            assert abs(shown - truth) <= 0.25 * truth + 5, f"step {step}: {line!r}, true time left {hms(truth)}"


def grpo_row(step: int, clock: float) -> dict:
    return {"step": step, "time": 1.7e9 + clock, "elapsed_s": clock, "reward": 1.0,
            "rewards/format_compliance/mean": 0.5, "rewards/accuracy/mean": 0.25}


@RUNS
def test_the_command_line_estimate_is_within_a_quarter_from_step_5(durations):
    pace = StepPace()
    lines = [training_line("grpo", grpo_row(step, clock), TOTAL, pace) for step, clock in
             enumerate(clocks(durations), 1)]
    assert "estimating time left" in lines[0] and "s/step" not in lines[0]  # not "65.3 s/step | 5:25:21 left"
    check(lines, durations)
    assert lines[-1].endswith("| 0:00 left")


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


@RUNS
def test_the_dashboard_estimate_is_the_same(tmp_path, durations):
    clock, stream = Clock(), io.StringIO()
    cb = DashboardCallback(tmp_path / "run", "grpo", notebook=False, plot_every=0, stream=stream, clock=clock)
    args, control = SimpleNamespace(), TrainerControl()
    cb.on_train_begin(args, TrainerState(global_step=0, max_steps=TOTAL), control)
    cli_pace, cli = StepPace(), []
    for step, t in enumerate(clocks(durations), 1):
        clock.t = t
        cb.on_log(args, TrainerState(global_step=step, max_steps=TOTAL), control,
                  logs={"reward": 1.0, "rewards/accuracy": 0.25})
        cli.append(training_line("grpo", grpo_row(step, t), TOTAL, cli_pace))
    lines = stream.getvalue().splitlines()
    assert len(lines) == TOTAL
    check(lines, durations)
    assert [seconds_left(line) for line in lines] == [seconds_left(line) for line in cli]  # one estimator
    assert lines[9].endswith(f"| {hms(clocks(durations)[9])} elapsed")


def test_a_resumed_session_starts_estimating_again():
    pace = StepPace()
    for step, t in [(1, 60.0), (2, 63.0), (3, 66.0), (4, 69.0), (5, 72.0)]:
        pace.update(step, t)
    assert pace.rate == 3.0
    pace.update(5, 80.0)  # an evaluation logged at the same step: not a step
    assert pace.rate == 3.0 and pace.left(10) == 15.0
    pace.update(3, 50.0)  # resumed from the checkpoint of step 2: a new session, its first step is warm-up
    assert pace.rate is None and pace.text(10) == "estimating time left"
    with pytest.raises(ValueError, match="fix: 1 <= min_intervals <= window"):
        StepPace(window=2, min_intervals=3)


def test_summary_line_shows_the_pace_but_not_on_eval_rows_or_the_final_summary():
    pace = StepPace()
    for step, t in [(1, 65.0), (2, 68.0), (3, 71.0), (4, 74.0)]:
        pace.update(step, t)
    assert summary_line({"step": 4, "reward": 1.0}, total=10, pace=pace).endswith("| 3.0 s/step | 0:18 left")
    assert "left" not in summary_line({"step": 4, "eval_reward": 1.0}, total=10, pace=pace)
    assert summary_line({"step": 10, "train_runtime": 75.0}, total=10, pace=pace) == "step 10/10 | done in 1:15"
