"""The dashboard's curves as PNGs: one panel per group of metrics (reward, reward functions, format /
accuracy, length, zero-std groups, KL / entropy, loss, learning rate), drawn from ``helpers.dashboard.metrics``
rows with matplotlib's object API (no pyplot, no GUI backend; Agg renders the pixels).

``figure`` returns the matplotlib ``Figure``; ``plot_metrics`` writes ``<prefix>_dashboard.png`` and one PNG
per panel with data, cut from the same drawing, each file written atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from helpers.dashboard.metrics import (
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
    merge_by_step,
    reward_names,
)
from helpers.files.atomic import atomic_write


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


def render_png(fig: Any, dpi: int, crops: Mapping[str, Any] | None = None) -> dict[str, bytes]:
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
    for name, data in render_png(fig, dpi, axes).items():
        written[name or "dashboard"] = path = out / f"{prefix}_{name or 'dashboard'}.png"
        atomic_write(path, data)
    return written
