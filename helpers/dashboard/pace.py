"""Seconds per step and the time left of a training run, as the dashboard and ``grpo-notebooks run`` show them.

One estimator (:class:`StepPace`) serves both: the dashboard's console line and widget header
(``helpers.dashboard.text.summary_line``) and the command line's progress lines (``helpers.run.progress``).
It leaves the warm-up out and follows recent steps: the first logged step of a session carries the start-up
work (vLLM's engine and CUDA graphs, ``torch.compile``: 65 s of a run that then took ~3 s per step on an
H100, 2026-12-06), so the time from the session's start to its first logged step is never counted; the rate
is the median of the per-step times of the last ``window`` intervals between logged steps, so a single slow
step (a checkpoint save) does not move it; until ``min_intervals`` intervals are seen it says
``estimating time left``.
"""

from __future__ import annotations

import math
import statistics
from collections import deque


def hms(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour).

    >>> hms(75), hms(3725), hms(None)
    ('1:15', '1:02:05', '?')
    """
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class StepPace:
    """The pace of one training session from ``(step, clock)`` readings of its logged steps.

    >>> pace = StepPace()
    >>> for step, t in [(1, 65.0), (2, 68.0), (3, 71.0)]:
    ...     pace.update(step, t)
    >>> pace.text(total=10)
    'estimating time left'
    >>> pace.update(4, 74.2)
    >>> pace.rate, pace.text(total=10)
    (3.0, '3.0 s/step | 0:18 left')
    """

    def __init__(self, window: int = 9, min_intervals: int = 3):
        if window < 1 or not 1 <= min_intervals <= window:
            raise ValueError(f"window={window}, min_intervals={min_intervals}; fix: 1 <= min_intervals <= window.")
        self.min_intervals = min_intervals
        self.per_step: deque[float] = deque(maxlen=window)
        self.last: tuple[int, float] | None = None

    def reset(self) -> None:
        """Forget every reading (a new session: its first logged step is warm-up again)."""
        self.per_step.clear()
        self.last = None

    def update(self, step: int, clock: float) -> None:
        """Record that ``step`` was logged at ``clock`` (seconds on any clock that only moves forward within a
        session). The same step again (an evaluation logged at that step) adds nothing; a step or clock
        behind the last one starts a new session (a resumed run)."""
        if self.last is not None:
            last_step, last_clock = self.last
            if step == last_step:
                return
            if step < last_step or clock < last_clock:
                self.reset()
            else:
                self.per_step.append((clock - last_clock) / (step - last_step))
        self.last = (step, clock)

    @property
    def rate(self) -> float | None:
        """Seconds per step (the median of the recent per-step times), or None while estimating."""
        if len(self.per_step) < self.min_intervals:
            return None
        return statistics.median(self.per_step)

    def left(self, total: int | None) -> float | None:
        """Seconds left to step ``total`` (0 once there), or None while estimating or without a total."""
        if not total or self.last is None:
            return None
        remaining = max(total - self.last[0], 0)
        if remaining == 0:
            return 0.0
        rate = self.rate
        return None if rate is None else rate * remaining

    def text(self, total: int | None = None) -> str:
        """``'3.0 s/step | 4:50 left'`` (without a total: ``'3.0 s/step'``), or ``'estimating time left'``."""
        rate, left = self.rate, self.left(total)
        if rate is None:
            return "0:00 left" if left == 0 else "estimating time left"
        return f"{rate:.1f} s/step" + (f" | {hms(left)} left" if left is not None else "")
