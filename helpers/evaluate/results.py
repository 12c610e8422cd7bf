"""Writing an evaluation: ``results.json``, ``results.md`` and ``accuracy.png`` (one section / panel per
held-out set), each written to a temporary file and renamed, so a killed run never leaves half a table."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from helpers.evaluate.scoring import change_lines
from helpers.files.atomic import atomic_write

log = logging.getLogger(__name__)

RESULTS_JSON, RESULTS_MD, ACCURACY_PNG = "results.json", "results.md", "accuracy.png"


def _pct(part: float) -> str:
    return f"{100 * part:.1f}%"


def render_markdown(results: dict, *, samples: bool = True) -> str:
    """Markdown tables (one per held-out set) from :func:`write_results`' JSON ``datasets`` mapping."""
    parts = []
    for name, table in results.items():
        settings = table["settings"]
        n = settings.get("samples_per_problem", 1)
        decoding = "greedy" if not settings.get("temperature") else f"temperature {settings['temperature']}, {n} samples/problem"
        parts.append(f"### {name}: {table['description']}\n\n{settings.get('problems')} problems, {decoding}, "
                     f"at most {settings.get('max_new_tokens')} new tokens, {settings.get('backend')}\n")
        ks = sorted({k for s in table["scores"] for k in s["pass_at_k"]}, key=lambda k: int(k.split("@")[1]))
        ks = [k for k in ks if k != "pass@1"] if n == 1 else ks
        head = ["model", "strict accuracy", "lenient accuracy", "format compliance", "mean tokens", "truncated", *ks]
        rows = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for s in table["scores"]:
            total = s["problems"] * s["samples_per_problem"]
            cells = [s["name"], f"{_pct(s['strict_accuracy'])} ({s['strict_correct']}/{total})",
                     f"{_pct(s['lenient_accuracy'])} ({s['lenient_correct']}/{total})",
                     f"{_pct(s['format_compliance'])} ({s['formatted']}/{total})",
                     "-" if s["mean_completion_tokens"] is None else f"{s['mean_completion_tokens']:.1f}",
                     "-" if s["truncated"] is None else _pct(s["truncated"]),
                     *(_pct(s["pass_at_k"][k]) if k in s["pass_at_k"] else "-" for k in ks)]
            rows.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(rows) + "\n")
        changes = change_lines(table["scores"])
        if changes:
            parts.append("Strict accuracy, each model against the one above it, on the same problems "
                         "(a change within about two standard errors can be chance):\n\n"
                         + "\n".join(f"- {line}" for line in changes) + "\n")
        if samples:
            for s in table["scores"]:
                for i, sample in enumerate(s["samples"][:1]):
                    text = sample["completion"].strip().replace("\n", " ⏎ ")
                    text = text if len(text) <= 300 else text[:299] + "…"
                    marks = ", ".join(f"{k}: {'yes' if sample[k] else 'no'}" for k in ("strict", "lenient", "formatted"))
                    parts.append(f"- **{s['name']}** on problem {i + 1} (gold {sample['answer']}; {marks}): `{text}`")
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def plot_results(results: dict, path: str | os.PathLike) -> Path:
    """A bar chart (PNG) of strict accuracy, lenient accuracy and format compliance per model, one
    panel per held-out set; drawn with matplotlib's Agg canvas (no display needed), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = [("strict_accuracy", "strict accuracy", "#1f77b4"), ("lenient_accuracy", "lenient accuracy", "#9ecae1"),
               ("format_compliance", "format compliance", "#ff7f0e")]
    names = list(results)
    fig = Figure(figsize=(max(4.5, 3.2 * len(names) + 1.3), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
    width = 0.8 / len(metrics)
    for ax, name in zip(axes, names, strict=False):
        scores = results[name]["scores"]
        for j, (key, label, color) in enumerate(metrics):
            xs = [i + (j - 1) * width for i in range(len(scores))]
            values = [100 * s[key] for s in scores]
            bars = ax.bar(xs, values, width, label=label, color=color)
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        ax.set_xticks(range(len(scores)), [s["name"] for s in scores])
        ax.set_ylim(0, 109)
        ax.set_title(f"{name} ({results[name]['settings'].get('problems')} problems)", fontsize=10)
        ax.set_ylabel("%")
    axes[0].legend(loc="upper left", fontsize=7, frameon=False)
    path = Path(path)
    atomic_write(path, write=lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


def write_results(table, eval_dir: str | os.PathLike) -> dict[str, Path]:
    """Add ``table`` (a ``helpers.evaluate.evaluation.EvalTable``) to ``eval_dir/results.json`` (replacing an older table of the same held-out set)
    and re-render ``results.md`` and ``accuracy.png`` from all of it; each file written atomically."""
    eval_dir = Path(eval_dir)
    json_path, md_path, png_path = eval_dir / RESULTS_JSON, eval_dir / RESULTS_MD, eval_dir / ACCURACY_PNG
    results = {}
    if json_path.exists():
        try:
            results = json.loads(json_path.read_text(encoding="utf-8")).get("datasets", {})
        except (ValueError, AttributeError):
            log.warning("%s was unreadable; starting it afresh", json_path)
    results[table.dataset] = table.as_dict()
    payload = {"datasets": results}
    atomic_write(json_path, json.dumps(payload, indent=2, default=str))
    md = render_markdown(results)  # helpers.run.report puts it under its own heading
    atomic_write(md_path, md)
    plot_results(results, png_path)
    return {"json": json_path, "markdown": md_path, "chart": png_path}
