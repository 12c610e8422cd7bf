"""Every reward's score on example completions, as rows and as a fixed-width text table (notebook 05)."""

from __future__ import annotations

from helpers.rewards.completions import completion_text
from helpers.rewards.reward_set import RewardSet, reward_functions


def score_table(completions, answer, rewards: RewardSet | None = None, *, labels: list[str] | None = None,
                width: int = 40) -> list[dict]:
    """One row per completion: its label (if given), the completion (shortened, newlines shown as
    ``⏎``), every function's score, and ``reward``, the weighted total TRL trains on."""
    rewards = rewards or reward_functions()
    scores = rewards.scores(completions, answer)
    rows = []
    for i, completion in enumerate(completions):
        text = completion_text(completion).replace("\n", "⏎")
        shown = text if len(text) <= width else text[: width - 1] + "…"
        row = {"case": labels[i]} if labels else {}
        rows.append(row | {"completion": shown} | {name: values[i] for name, values in scores.items()})
    return rows


def format_table(rows: list[dict]) -> str:
    """``rows`` as a fixed-width text table (numbers to 2 decimals; ``_reward`` left out of headers)."""
    if not rows:
        return ""
    columns = list(rows[0])
    headers = [c.removesuffix("_reward") for c in columns]
    cells = [[f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    texts = [not isinstance(rows[0][c], float) for c in columns]

    def line(values):
        return "  ".join(v.ljust(w) if t else v.rjust(w) for v, w, t in zip(values, widths, texts, strict=True))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in cells)])
