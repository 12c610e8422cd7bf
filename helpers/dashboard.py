"""The training dashboard: a ``TrainerCallback`` that shows, records and plots what a trainer logs.

On every ``on_log`` the callback

- normalises the metric keys of either TRL generation to one canonical set (``canonical_key``);
- appends one JSON object (``step``, ``epoch``, ``time``, ``elapsed_s`` and every numeric value) to
  ``<run>/<stage>/metrics.jsonl``, flushed and fsync'ed per line, so a killed run loses nothing logged;
- in a notebook, refreshes an ipywidgets dashboard in place (header with step/total, elapsed, ETA; the
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

Here: the callback, its console line / widget header (``summary_line``), the sample table and ``attach``.
The metric names and the ``metrics.jsonl`` history are ``helpers.metrics_log``'s, the PNG curves
``helpers.dashboard_plots``'; their public names are re-exported here (``from helpers.dashboard import
read_metrics, plot_metrics``).
"""

from __future__ import annotations

import html
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from transformers import TrainerCallback

from helpers.runs import RunLayout

from .dashboard_plots import PANEL_NAMES, _render, figure, plot_metrics
from .metrics_log import (
    CLIPPED,
    ENTROPY,
    GRAD_NORM,
    KL,
    LENGTH,
    LOSS,
    LR,
    REWARD,
    REWARD_STD,
    ZERO_STD,
    Panels,
    _read_lines,
    canonical,
    canonical_key,
    merge_by_step,
    read_metrics,
    reward_names,
    truncate_metrics,
)

__all__ = [
    # helpers.metrics_log
    "REWARD", "REWARD_STD", "LENGTH", "CLIPPED", "ZERO_STD", "KL", "ENTROPY", "LOSS", "GRAD_NORM", "LR",
    "canonical_key", "canonical", "reward_names", "Panels", "merge_by_step", "read_metrics", "truncate_metrics",
    # helpers.dashboard_plots
    "PANEL_NAMES", "figure", "plot_metrics",
    # this module
    "summary_line", "samples_from_trainer_logs", "samples_html", "Throttle", "DOM_CLASSES", "DashboardCallback",
    "attach",
]


# ---------------------------------------------------------------------------------------------------
# Text: console line, header, sample table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _hms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def summary_line(row: Mapping[str, Any], panels: Panels | None = None, total: int | None = None) -> str:
    """One compact line for a log step: step, reward ± std, format, accuracy, length (clipped), kl, entropy,
    lr; values that were not logged are left out, and so is the loss of GRPO rows (≈ 0 by design; SFT rows
    show it). Eval rows (``eval_*`` keys) get an ``eval`` prefix."""
    panels = panels or Panels()
    is_eval = any(k.startswith("eval_") for k in row)
    vals = {k[5:]: v for k, v in row.items() if k.startswith("eval_")} if is_eval else dict(row)
    names = reward_names(vals)
    parts = [("eval " if is_eval else "") + f"step {row.get('step', '?')}" + (f"/{total}" if total else "")]
    if vals.get(REWARD) is not None:
        std = vals.get(REWARD_STD)
        parts.append(f"reward {_fmt(vals[REWARD])}" + (f" ± {_fmt(std)}" if std is not None else ""))
    for panel, label in (("format", "format"), ("accuracy", "acc")):
        found = panels.match(panel, names)
        if found and vals.get(f"rewards/{found[0]}/mean") is not None:
            parts.append(f"{label} {_fmt(vals[f'rewards/{found[0]}/mean'])}")
    if vals.get(LENGTH) is not None:
        clip = vals.get(CLIPPED)
        parts.append(f"len {vals[LENGTH]:.1f}" + (f" (clip {_fmt(clip)})" if clip is not None else ""))
    for key, label in ((KL, "kl"), (ENTROPY, "ent"), (LOSS, "loss"), (LR, "lr")):
        if vals.get(key) is not None and not (key == LOSS and REWARD in vals):
            parts.append(f"{label} {_fmt(vals[key])}")
    if vals.get("train_runtime") is not None:
        parts.append(f"done in {_hms(vals['train_runtime'])}")
    return " | ".join(parts)


def _text(value: Any) -> str:
    """Plain text of a prompt or completion: a string, or chat messages (the last message's content)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and value and isinstance(value[-1], Mapping):
        content = value[-1].get("content", "")
        if isinstance(content, list):  # multimodal parts
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        return str(content)
    return str(value)


def samples_from_trainer_logs(logs: Mapping[str, Any], weights: Sequence[float] | None = None,
                              n: int = 4) -> list[dict[str, Any]]:
    """The last ``n`` samples of TRL's ``GRPOTrainer._logs`` as dicts: ``prompt``, ``completion`` (text),
    ``rewards`` ({function: score, None when it did not score}), ``total`` (weighted sum, as TRL computes
    the reward) and ``advantage``."""
    prompts, completions = list(logs.get("prompt", [])), list(logs.get("completion", []))
    per_func = {name: list(vals) for name, vals in dict(logs.get("rewards", {})).items()}
    advantages = list(logs.get("advantages", []))
    weights = list(weights) if weights is not None and len(weights) == len(per_func) else [1.0] * len(per_func)

    def at(seq: list, i: int) -> Any:  # columns are aligned at their ends (the newest sample is last)
        return seq[i] if len(seq) >= -i else None

    out = []
    for i in range(-min(n, len(completions)), 0):
        scores = {name: (float(x) if (x := at(v, i)) is not None and math.isfinite(x) else None)
                  for name, v in per_func.items()}
        total = sum(w * s for w, s in zip(weights, scores.values(), strict=True) if s is not None)
        out.append({"prompt": _text(at(prompts, i) or ""), "completion": _text(completions[i]),
                    "rewards": scores, "total": total, "advantage": at(advantages, i)})
    return out


def samples_html(samples: Sequence[Mapping[str, Any]], max_chars: int = 1200) -> str:
    """An HTML table of samples (all text escaped, long text cut to ``max_chars``)."""
    if not samples:
        return "<i>no samples yet</i>"

    def cut(s: str, limit: int) -> str:
        return html.escape(s if len(s) <= limit else s[:limit] + " …")

    names = list(samples[0]["rewards"])
    # Inline styles: the widget's HTML sits outside the notebook's rendered-HTML CSS, and ipywidgets sets a
    # 28px line height; without widths the text columns shrink to a word per line (seen in JupyterLab).
    text = "text-align:left;vertical-align:top;white-space:pre-wrap;font-family:monospace;font-size:11px;padding:2px 6px"
    prompt, completion = f'style="{text};min-width:14em;max-width:22em"', f'style="{text};min-width:22em;max-width:50em"'
    num = 'style="text-align:right;vertical-align:top;padding:2px 6px"'
    head = "".join(f'<th style="text-align:left;padding:2px 6px">{h}</th>' for h in ("prompt", "completion"))
    head += "".join(f"<th {num}>{html.escape(h).replace('_', '_<wbr>')}</th>" for h in [*names, "total", "advantage"])
    body = "".join(
        f"<tr><td {prompt}>{cut(s['prompt'], 200)}</td><td {completion}>{cut(s['completion'], max_chars)}</td>"
        + "".join(f"<td {num}>{_fmt(s['rewards'].get(n))}</td>" for n in names)
        + f"<td {num}><b>{_fmt(s['total'])}</b></td><td {num}>{_fmt(s.get('advantage'))}</td></tr>"
        for s in samples
    )
    return (f'<table style="border-collapse:collapse;line-height:1.35;font-size:12px"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


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
    from helpers import runtime

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
        self._start_step = 0
        self._total: int | None = None
        self._pending = False
        self.widget: Any = self._build_widget() if self.notebook else None

    # -- wiring --------------------------------------------------------------------------------------

    def bind(self, trainer: Any) -> DashboardCallback:
        """Let the callback read the trainer's latest completions at each log step (TRL ``GRPOTrainer._logs``,
        ``_textual_logs`` before 1.0; callbacks are not given the trainer); returns self."""
        self.trainer = trainer
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
        self.history = _read_lines(self.metrics_path)
        self._start, self._start_step, self._total = self.clock(), state.global_step, state.max_steps or None
        if self.widget is not None:
            from IPython.display import display

            display(self.widget)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if self._start is None:  # logging outside train(), e.g. trainer.evaluate()
            self._start, self._start_step, self._total = self.clock(), state.global_step, state.max_steps or None
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
        """``summary_line`` plus `` | elapsed<ETA`` from this session's pace (not on the final summary)."""
        line = summary_line(record, self.panels, self._total)
        if self._start is None or "train_runtime" in record:
            return line
        step = int(record["step"])
        elapsed, done = self.clock() - self._start, step - self._start_step
        eta = elapsed / done * (self._total - step) if self._total and done > 0 else None
        return f"{line} | {_hms(elapsed)}<{_hms(eta)}"

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
        self.image.value = _render(figure(self.history, self.panels), dpi=80)[""]
        self.samples_box.value = samples_html(self.samples)
        self._pending = False


def attach(trainer: Any, run_dir: str | os.PathLike | None = None, stage: str = "grpo",
           **kwargs: Any) -> DashboardCallback:
    """Create a ``DashboardCallback``, bind it to ``trainer`` (for sample completions) and add it; returns it."""
    callback = DashboardCallback(run_dir, stage, **kwargs).bind(trainer)
    trainer.add_callback(callback)
    return callback
