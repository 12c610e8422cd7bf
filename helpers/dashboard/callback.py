"""The training dashboard: a ``TrainerCallback`` that shows, records and plots what a trainer logs.

On every ``on_log`` the callback

- normalises the metric keys of either TRL generation to one canonical set (``canonical_key``);
- appends one JSON object (``step``, ``epoch``, ``time``, ``elapsed_s`` and every numeric value) to
  ``<run>/<stage>/metrics.jsonl``, flushed and fsync'ed per line, so a killed run loses nothing logged;
- in a notebook, refreshes an ipywidgets dashboard in place (header with step/total, seconds per step, time left and elapsed; the
  curves as a PNG image; the latest sample completions with their scores), at most once per
  ``min_redraw_s`` and always at the end; without a widget front end it prints one compact line instead;
- every ``plot_every`` log steps and at the end of training, writes the curves as PNGs to ``<run>/plots/``
  (each file written atomically).

Sample completions are not passed to callbacks: TRL's ``GRPOTrainer`` keeps the latest generation batch
in ``trainer._logs`` (``prompt``, ``completion``, ``rewards[name]``, ``advantages``; filled whether or not
``log_completions`` is set), so once given the trainer (``bind(trainer)``, or use ``attach``) the callback
copies the newest ``n_samples`` of it at each log step. Only the main process records anything.

Resuming: at ``on_train_begin`` entries of ``metrics.jsonl`` with a step above ``state.global_step`` (the
checkpoint's step, 0 on a fresh start) are cut, since the trainer will log those steps again; the file
as it was before the cut is kept as ``metrics.jsonl.prev``. ``read_metrics`` also merges records of
the same step (later values win), so a history read from any file has one row per step.

Here: the callback and ``attach``. The console line / widget header (``summary_line``) and the sample table
are ``helpers.dashboard.text``'s, the metric names and the ``metrics.jsonl`` history
``helpers.dashboard.metrics``'s, the PNG curves ``helpers.dashboard.plots``'.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from transformers import PrinterCallback, TrainerCallback

from helpers.dashboard.metrics import Panels, canonical, read_records, truncate_metrics
from helpers.dashboard.pace import StepPace, hms
from helpers.dashboard.plots import figure, plot_metrics, render_png
from helpers.dashboard.text import samples_from_trainer_logs, samples_html, summary_line
from helpers.files.runs import RunLayout
from helpers.runtime import hardware as runtime


class Throttle:
    """``ready()`` is true at most once per ``interval`` seconds of ``clock`` (or whenever forced)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval, self.clock = interval, clock
        self.last: float | None = None

    def ready(self, force: bool = False) -> bool:
        now = self.clock()
        if force or self.last is None or now - self.last >= self.interval:
            self.last = now
            return True
        return False


def _widget_frontend() -> bool:
    if runtime.in_notebook():
        return True
    try:  # Colab's kernel shell is a ZMQInteractiveShell subclass with another class name
        from IPython import get_ipython
    except ImportError:
        return False
    return runtime.in_colab() and get_ipython() is not None


# ---------------------------------------------------------------------------------------------------
# The callback


# CSS classes on the notebook widget: the whole dashboard, its header line, the curves image, the samples.
DOM_CLASSES = {"dashboard": "grpo-dashboard", "header": "grpo-dashboard-header", "plot": "grpo-dashboard-plot",
               "samples": "grpo-dashboard-samples"}


class DashboardCallback(TrainerCallback):
    """Live dashboard (notebook) or compact console lines, plus ``metrics.jsonl`` and PNG curves.

    ``run_dir``: the run folder (``RunLayout``; ``None``: ``$GRPO_RUN_DIR`` or ``runs/latest``);
    ``stage``: the sub-folder for ``metrics.jsonl`` and the PNG prefix (``grpo``, ``sft``);
    ``notebook``: force widget (True) or console (False) mode, ``None`` detects a widget front end;
    ``plot_every``: write PNGs every that many log steps (0: only at the end);
    ``min_redraw_s``: least time between two widget refreshes; ``n_samples``: completions shown;
    ``panels``: which reward functions are format compliance and accuracy; ``clock``/``stream``: for tests.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None, stage: str = "grpo", *,
                 notebook: bool | None = None, plot_every: int = 10, min_redraw_s: float = 0.5,
                 n_samples: int = 4, panels: Panels | None = None,
                 clock: Callable[[], float] = time.monotonic, stream: TextIO | None = None):
        layout = RunLayout(run_dir)
        self.stage, self.metrics_path, self.plots_dir = stage, layout.stage(stage) / "metrics.jsonl", layout.plots
        self.notebook = _widget_frontend() if notebook is None else notebook
        self.plot_every, self.n_samples = plot_every, n_samples
        self.panels = panels or Panels()
        self.clock, self.stream = clock, stream
        self.throttle = Throttle(min_redraw_s, clock)
        self.history: list[dict[str, Any]] = []  # one canonical record per on_log, as written to the JSONL
        self.samples: list[dict[str, Any]] = []
        self.trainer: Any = None
        self._file: Any = None
        self._logs_seen = 0
        self._start: float | None = None
        self.pace = StepPace()  # seconds per step and time left, warm-up left out (helpers.dashboard.pace)
        self._total: int | None = None
        self._pending = False
        self.widget: Any = self._build_widget() if self.notebook else None

    # -- wiring --------------------------------------------------------------------------------------

    def bind(self, trainer: Any) -> DashboardCallback:
        """Let the callback read the trainer's latest completions at each log step (TRL ``GRPOTrainer._logs``,
        ``_textual_logs`` before 1.0; callbacks are not given the trainer), and take over the console: the
        trainer's ``PrinterCallback`` (every log printed as a dict) is removed, since the dashboard prints or
        draws each step. Returns self."""
        self.trainer = trainer
        trainer.remove_callback(PrinterCallback)
        return self

    def _read_samples(self) -> None:
        logs = getattr(self.trainer, "_logs", None) or getattr(self.trainer, "_textual_logs", None)  # TRL 1.x, 0.1x
        if not isinstance(logs, Mapping) or not logs.get("completion"):
            return
        weights: Any = getattr(self.trainer, "reward_weights", None)
        weights = weights.tolist() if hasattr(weights, "tolist") else weights
        self.samples = samples_from_trainer_logs(logs, weights, self.n_samples)

    # -- trainer events ------------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._close()
        dropped = truncate_metrics(self.metrics_path, state.global_step)
        if dropped:
            self._print(f"[dashboard] resuming at step {state.global_step}: dropped {dropped} later line(s) "
                        f"from {self.metrics_path} (previous file kept as {self.metrics_path.name}.prev)")
        self.history = read_records(self.metrics_path)
        self._start, self._total = self.clock(), state.max_steps or None
        self.pace.reset()
        if self.widget is not None:
            from IPython.display import display

            display(self.widget)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if self._start is None:  # logging outside train(), e.g. trainer.evaluate()
            self._start, self._total = self.clock(), state.max_steps or None
        self.pace.update(state.global_step, self.clock())
        record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(),
                  "elapsed_s": round(self.clock() - self._start, 3), **canonical(logs)}
        self._append(record)
        self.history.append(record)
        self._logs_seen += 1
        if self.trainer is not None:
            self._read_samples()
        if self.notebook:
            self._pending = True
            if self.throttle.ready(force=bool(state.max_steps) and state.global_step >= state.max_steps):
                self.refresh()
        else:
            self._print(self._line(record))
        if self.plot_every and self._logs_seen % self.plot_every == 0:
            self.write_plots()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._close()
        if self.notebook and self._pending:
            self.refresh()
        if self.history:
            self.write_plots()

    # -- outputs -------------------------------------------------------------------------------------

    def _append(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def _line(self, record: Mapping[str, Any]) -> str:
        """``summary_line`` with this session's pace (seconds per step, time left) and `` | m:ss elapsed``
        (not on the final summary)."""
        line = summary_line(record, self.panels, self._total, self.pace)
        if self._start is None or "train_runtime" in record:
            return line
        return f"{line} | {hms(self.clock() - self._start)} elapsed"

    def write_plots(self) -> dict[str, Path]:
        """Write this run's PNG curves to ``<run>/plots/<stage>_*.png`` now (see ``plot_metrics``)."""
        return plot_metrics(self.history, self.plots_dir, prefix=self.stage, panels=self.panels)

    def _build_widget(self) -> Any:
        """The widget tree; its CSS classes (``DOM_CLASSES``) are stable hooks for browser tests and styling."""
        import ipywidgets as w

        self.header = w.HTML("<b>waiting for the first log step…</b>")
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.samples_box = w.HTML(samples_html([]))
        box = w.VBox([self.header, self.image, w.HTML("<b>latest completions</b>"), self.samples_box])
        for widget, css in zip((box, self.header, self.image, self.samples_box), DOM_CLASSES.values(), strict=True):
            widget.add_class(css)
        return box

    def refresh(self) -> None:
        """Redraw the widget now: header, curves (PNG into an ``ipywidgets.Image``: updated in place, no
        flicker, no pyplot backend needed) and the sample table."""
        if self.widget is None or not self.history:
            return
        self.header.value = f"<b>{self.stage}</b> &nbsp; {html.escape(self._line(self.history[-1]))}"
        self.image.value = render_png(figure(self.history, self.panels), dpi=80)[""]
        self.samples_box.value = samples_html(self.samples)
        self._pending = False


def attach(trainer: Any, run_dir: str | os.PathLike | None = None, stage: str = "grpo",
           **kwargs: Any) -> DashboardCallback:
    """Create a ``DashboardCallback``, bind it to ``trainer`` (for sample completions) and add it; returns it."""
    callback = DashboardCallback(run_dir, stage, **kwargs)
    trainer.add_callback(callback)
    return callback.bind(trainer)
