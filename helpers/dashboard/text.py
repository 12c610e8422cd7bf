"""The dashboard's text: one line per logged step (:func:`summary_line`) and the latest sampled completions
with their scores (:func:`samples_html`)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from helpers.dashboard.metrics import (
    CLIPPED,
    ENTROPY,
    KL,
    LENGTH,
    LOSS,
    LR,
    REWARD,
    REWARD_STD,
    Panels,
    reward_names,
)
from helpers.dashboard.pace import StepPace, hms

# ---------------------------------------------------------------------------------------------------
# Text: console line, header, sample table


def short_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def summary_line(row: Mapping[str, Any], panels: Panels | None = None, total: int | None = None,
                 pace: StepPace | None = None) -> str:
    """One compact line for a log step: step, reward ± std, format, accuracy, length (clipped), kl, entropy,
    lr; values that were not logged are left out, and so is the loss of GRPO rows (≈ 0 by design; SFT rows
    show it). Eval rows (``eval_*`` keys) get an ``eval`` prefix. ``pace`` (the session's
    :class:`~helpers.dashboard.pace.StepPace`, already fed this step) adds seconds per step and the time left
    to ``total``, or ``estimating time left`` while it has too few steps; not on eval rows or the final summary.

    >>> pace = StepPace()
    >>> for step, clock in [(1, 65.0), (2, 68.0), (3, 71.0), (4, 74.0)]:
    ...     pace.update(step, clock)
    >>> summary_line({"step": 4, "loss": 1.5}, total=10, pace=pace)
    'step 4/10 | loss 1.5 | 3.0 s/step | 0:18 left'
    """
    panels = panels or Panels()
    is_eval = any(k.startswith("eval_") for k in row)
    vals = {k[5:]: v for k, v in row.items() if k.startswith("eval_")} if is_eval else dict(row)
    names = reward_names(vals)
    parts = [("eval " if is_eval else "") + f"step {row.get('step', '?')}" + (f"/{total}" if total else "")]
    if vals.get(REWARD) is not None:
        std = vals.get(REWARD_STD)
        parts.append(f"reward {short_number(vals[REWARD])}" + (f" ± {short_number(std)}" if std is not None else ""))
    for panel, label in (("format", "format"), ("accuracy", "acc")):
        found = panels.match(panel, names)
        if found and vals.get(f"rewards/{found[0]}/mean") is not None:
            parts.append(f"{label} {short_number(vals[f'rewards/{found[0]}/mean'])}")
    if vals.get(LENGTH) is not None:
        clip = vals.get(CLIPPED)
        parts.append(f"len {vals[LENGTH]:.1f}" + (f" (clip {short_number(clip)})" if clip is not None else ""))
    for key, label in ((KL, "kl"), (ENTROPY, "ent"), (LOSS, "loss"), (LR, "lr")):
        if vals.get(key) is not None and not (key == LOSS and REWARD in vals):
            parts.append(f"{label} {short_number(vals[key])}")
    if vals.get("train_runtime") is not None:
        parts.append(f"done in {hms(vals['train_runtime'])}")
    elif pace is not None and not is_eval:
        parts.append(pace.text(total))
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
        + "".join(f"<td {num}>{short_number(s['rewards'].get(n))}</td>" for n in names)
        + f"<td {num}><b>{short_number(s['total'])}</b></td><td {num}>{short_number(s.get('advantage'))}</td></tr>"
        for s in samples
    )
    return (f'<table style="border-collapse:collapse;line-height:1.35;font-size:12px"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")
