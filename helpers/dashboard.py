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
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from transformers import TrainerCallback

from helpers.runs import RunLayout

# Canonical names (TRL 1.15's own keys); per reward function: ``rewards/<name>/mean`` and ``/std``.
REWARD, REWARD_STD = "reward", "reward_std"
LENGTH, CLIPPED = "completions/mean_length", "completions/clipped_ratio"
ZERO_STD = "frac_reward_zero_std"
KL, ENTROPY = "kl", "entropy"
LOSS, GRAD_NORM, LR = "loss", "grad_norm", "learning_rate"

_OLD_KEYS = {"completion_length": LENGTH, "clip_ratio": "clip_ratio/region_mean"}
_RECORD_KEYS = ("step", "epoch", "time", "elapsed_s")


def canonical_key(key: str) -> str:
    """The canonical name of a logged metric key, for TRL ≥ 0.17 (1.x) and the older generation.

    >>> canonical_key("rewards/accuracy"), canonical_key("completion_length"), canonical_key("eval_clip_ratio")
    ('rewards/accuracy/mean', 'completions/mean_length', 'eval_clip_ratio/region_mean')
    >>> canonical_key("rewards/accuracy/std"), canonical_key("kl")
    ('rewards/accuracy/std', 'kl')
    """
    if key.startswith("eval_"):
        return "eval_" + canonical_key(key[5:])
    parts = key.split("/")
    if len(parts) == 2 and parts[0] == "rewards":
        return key + "/mean"
    return _OLD_KEYS.get(key, key)


def canonical(logs: Mapping[str, Any]) -> dict[str, float | None]:
    """The numeric values of ``logs`` under canonical names; NaN/inf and ``None`` become ``None``.

    >>> canonical({"completion_length": 0, "completions/mean_length": 41.5, "reward": float("nan")})
    {'completions/mean_length': 41.5, 'reward': None}
    """
    out: dict[str, float | None] = {}
    for key, value in logs.items():
        name = canonical_key(key)
        if name != key and name in logs:  # both generations logged (Unsloth adds old keys, e.g. a 0
            continue  # `completion_length`): the current key wins
        if value is None:
            out[name] = None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value) if math.isfinite(value) else None
    return out


def reward_names(keys: Iterable[str]) -> list[str]:
    """Reward-function names found among canonical keys ``rewards/<name>/mean``, sorted."""
    return sorted({k.split("/")[1] for k in keys if k.startswith("rewards/") and k.endswith("/mean")})


@dataclass(frozen=True)
class Panels:
    """Which reward functions feed the format-compliance and accuracy panels.

    Each field is a tuple of substrings tried in order against reward-function names: the first one that
    matches any name picks the panel's functions (an exact name first: it is the headline value of the
    console line and header). With ``helpers.rewards``' names the format panel shows
    ``format_compliance`` and the accuracy panel ``accuracy`` and ``lenient_accuracy``; without them it
    falls back to names containing ``format`` / ``correct``. A panel with no match stays empty.
    """

    format: tuple[str, ...] = ("format_compliance", "format")
    accuracy: tuple[str, ...] = ("accuracy", "correct")

    def match(self, panel: str, names: Iterable[str]) -> list[str]:
        """Reward names for ``panel`` ("format" or "accuracy"), headline first.

        >>> Panels().match("accuracy", ["correctness_reward", "lenient_accuracy", "accuracy"])
        ['accuracy', 'lenient_accuracy']
        """
        names = list(names)
        for pattern in getattr(self, panel):
            found = [n for n in names if pattern in n]
            if found:
                return sorted(found, key=lambda n: (n != pattern, n))
        return []


# ---------------------------------------------------------------------------------------------------
# History: JSONL on disk, one row per step in memory


def merge_by_step(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One canonical row per step, sorted by step; records of the same step are merged, later values win.

    Accepts ``metrics.jsonl`` records or ``trainer.state.log_history`` (raw TRL keys of either generation).
    """
    rows: dict[int, dict[str, Any]] = {}
    for rec in records:
        if "step" not in rec:
            continue
        step = int(rec["step"])
        row = rows.setdefault(step, {"step": step})
        row.update({k: v for k, v in rec.items() if k in _RECORD_KEYS[1:]})
        row.update(canonical({k: v for k, v in rec.items() if k not in _RECORD_KEYS}))
    return [rows[s] for s in sorted(rows)]


def _read_lines(path: Path) -> list[dict[str, Any]]:
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(rec, dict) and "step" in rec:
                records.append(rec)
    return records


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The history in a ``metrics.jsonl`` (or a stage folder holding one): one dict per step, sorted,
    de-duplicated by step (later values win), canonical keys; unreadable lines are skipped."""
    path = Path(path)
    return merge_by_step(_read_lines(path / "metrics.jsonl" if path.is_dir() else path))


def truncate_metrics(path: str | os.PathLike, after_step: int) -> int:
    """Drop the records of ``path`` with a step above ``after_step`` (and unreadable lines); returns how many
    lines went. The file is rewritten atomically and its previous content kept as ``<name>.prev``."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [json.dumps(r) for r in _read_lines(path) if int(r["step"]) <= after_step]
    if len(kept) == len(lines):
        return 0
    shutil.copy2(path, path.with_name(path.name + ".prev"))
    _atomic_write(path, "".join(line + "\n" for line in kept).encode())
    return len(lines) - len(kept)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------
# Plots (matplotlib's object API: no pyplot, no GUI backend; PNGs render through Agg)


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _lines(ax: Any, rows: Sequence[Mapping[str, Any]], keys: Sequence[tuple[str, str]], **kw: Any) -> bool:
    drawn = False
    for key, label in keys:
        x, y = _series(rows, key)
        if x:
            ax.plot(x, y, marker="." if len(x) < 30 else None, label=label, **kw)
            drawn = True
    return drawn


def _twin(ax: Any, rows: Sequence[Mapping[str, Any]], left: tuple[str, str], right: tuple[str, str]) -> bool:
    drawn = _lines(ax, rows, [left], color="C0")
    if _series(rows, right[0])[0]:
        other = ax.twinx()
        _lines(other, rows, [right], color="C1")
        other.set_ylabel(right[1], color="C1")
        other.tick_params(labelsize=8)
        drawn = True
    if drawn:
        ax.set_ylabel(left[1], color="C0")
    return drawn


def _draw_reward(ax: Any, rows: Sequence[Mapping[str, Any]], panels: Panels) -> bool:
    x, y = _series(rows, REWARD)
    if not x:
        return False
    ax.plot(x, y, color="C0", marker="." if len(x) < 30 else None, label="mean")
    spread = [(r["step"], r[REWARD], r.get(REWARD_STD)) for r in rows if r.get(REWARD) is not None]
    band = [(s, m, d) for s, m, d in spread if d is not None]
    if band:
        ax.fill_between([b[0] for b in band], [b[1] - b[2] for b in band], [b[1] + b[2] for b in band],
                        color="C0", alpha=0.2, label="± std")
    return True


def _draw_rewards(ax: Any, rows: Sequence[Mapping[str, Any]], panels: Panels) -> bool:
    names = reward_names(k for r in rows for k in r)
    return _lines(ax, rows, [(f"rewards/{n}/mean", n) for n in names])


def _draw_format_accuracy(ax: Any, rows: Sequence[Mapping[str, Any]], panels: Panels) -> bool:
    names = reward_names(k for r in rows for k in r)
    keys = [(f"rewards/{n}/mean", f"{panel}: {n}") for panel in ("format", "accuracy") for n in panels.match(panel, names)]
    drawn = _lines(ax, rows, keys)
    if drawn:
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    return drawn


_PANELS: dict[str, tuple[str, Callable[[Any, Sequence[Mapping[str, Any]], Panels], bool]]] = {
    "reward": ("total reward (mean ± std)", _draw_reward),
    "rewards": ("reward functions (mean)", _draw_rewards),
    "format_accuracy": ("format compliance / accuracy", _draw_format_accuracy),
    "length": ("completion length / clipped ratio", lambda ax, rows, p: _twin(ax, rows, (LENGTH, "tokens"), (CLIPPED, "clipped"))),
    "zero_std": ("frac_reward_zero_std", lambda ax, rows, p: _lines(ax, rows, [(ZERO_STD, "zero-std groups")])),
    "kl_entropy": ("KL / entropy", lambda ax, rows, p: _twin(ax, rows, (KL, "kl"), (ENTROPY, "entropy"))),
    "loss": ("loss / grad norm", lambda ax, rows, p: _twin(ax, rows, (LOSS, "loss"), (GRAD_NORM, "grad norm"))),
    "lr": ("learning rate", lambda ax, rows, p: _lines(ax, rows, [(LR, "lr")])),
}
PANEL_NAMES = tuple(_PANELS)


_FIXED_KEYS = {"reward": [REWARD], "length": [LENGTH, CLIPPED], "zero_std": [ZERO_STD], "kl_entropy": [KL, ENTROPY],
               "loss": [LOSS, GRAD_NORM], "lr": [LR]}


def _panels_with_data(rows: Sequence[Mapping[str, Any]], panels: Panels) -> list[str]:
    names = reward_names(k for r in rows for k in r)
    keys = dict(_FIXED_KEYS, rewards=[f"rewards/{n}/mean" for n in names],
                format_accuracy=[f"rewards/{n}/mean" for p in ("format", "accuracy") for n in panels.match(p, names)])
    return [name for name in PANEL_NAMES if any(r.get(k) is not None for r in rows for k in keys[name])]


def _finish(ax: Any, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 1:  # one curve: the title (or coloured y labels) says it
        ax.legend(fontsize=7, loc="best")


def figure(history: Sequence[Mapping[str, Any]], panels: Panels | None = None, cols: int = 4) -> Any:
    """A matplotlib ``Figure`` with one subplot per panel that has data (all panels empty: one note)."""
    return _figure(merge_by_step(history), panels or Panels(), cols)[0]


def _figure(rows: Sequence[Mapping[str, Any]], panels: Panels, cols: int = 4) -> tuple[Any, dict[str, Any]]:
    from matplotlib.figure import Figure

    names = _panels_with_data(rows, panels)
    ncols = max(1, min(cols, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    width, height = 4.2 * ncols, 2.9 * nrows
    fig = Figure(figsize=(width, height))  # fixed margins: a layout engine costs more than the drawing
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.7 / width, bottom=0.5 / height, top=1 - 0.35 / height,
                        wspace=0.55, hspace=0.55)
    if not names:
        fig.text(0.5, 0.5, "nothing logged yet", ha="center", va="center")
    axes = {}
    for i, name in enumerate(names):
        axes[name] = ax = fig.add_subplot(nrows, ncols, i + 1)
        title, draw = _PANELS[name]
        draw(ax, rows, panels)
        _finish(ax, title)
    return fig, axes


def _render(fig: Any, dpi: int, crops: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """Draw ``fig`` once with Agg; PNG bytes of the whole figure (``""``) and of each axes in ``crops``
    (the panel's box with its twin axes, labels and title), cut from the same pixels."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox
    from PIL import Image

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())
    height, width = pixels.shape[:2]

    def png(arr: Any) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="png")
        return buf.getvalue()

    out = {"": png(pixels)}
    renderer = canvas.get_renderer()
    for name, ax in (crops or {}).items():
        group = [a for a in fig.axes if a.get_position().bounds == ax.get_position().bounds]
        box = Bbox.union([a.get_tightbbox(renderer) for a in group]).padded(6)
        x0, x1 = max(0, int(box.x0)), min(width, int(math.ceil(box.x1)))
        y0, y1 = max(0, int(height - box.y1)), min(height, int(math.ceil(height - box.y0)))
        out[name] = png(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
    return out


def plot_metrics(history: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, prefix: str = "grpo",
                 panels: Panels | None = None, dpi: int = 100) -> dict[str, Path]:
    """Write the curves of ``history`` (``read_metrics`` rows, callback records or ``state.log_history``) as
    PNGs to ``out_dir``: ``<prefix>_dashboard.png`` with every panel that has data, and one
    ``<prefix>_<panel>.png`` per such panel (``PANEL_NAMES``), cut from the same drawing. Each file is
    written atomically (temp file + ``os.replace``). Returns ``{"dashboard" | panel: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = _figure(merge_by_step(history), panels or Panels())
    written = {}
    for name, data in _render(fig, dpi, axes).items():
        written[name or "dashboard"] = path = out / f"{prefix}_{name or 'dashboard'}.png"
        _atomic_write(path, data)
    return written


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
