"""One reading of a training curve, used by notebooks 06 and 07, ``report.md`` and the command's summary: the
mean of the first fifth of the logged steps against the mean of the last fifth (:func:`fifths`), and short
readings of a GRPO run (:func:`read_grpo_curves`) and an SFT warm-up (:func:`read_sft_curves`) built on it."""

from __future__ import annotations

import statistics


def fifths(values) -> tuple[float, float] | None:
    """Mean of the first and of the last fifth of ``values`` (``None`` entries left out; at least one value
    each; ``None`` with fewer than two values).

    >>> fifths([0, 0, 1, 1, 1, 2, 2, 2, 3, 4])
    (0.0, 3.5)
    """
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    k = max(1, len(values) // 5)
    return statistics.fmean(values[:k]), statistics.fmean(values[-k:])


def learning_summary(history: list[dict]) -> dict:
    """Reward, format compliance, accuracy, completion length and the share of groups without reward spread,
    first fifth against last fifth of the steps (``report.md``'s learning table, ``learning.json``)."""
    summary: dict = {"steps": len(history)}
    for label, key in (("reward", "reward"), ("format_compliance", "rewards/format_compliance/mean"),
                       ("accuracy", "rewards/accuracy/mean"), ("completion_length", "completions/mean_length"),
                       ("frac_reward_zero_std", "frac_reward_zero_std")):
        pair = fifths([row.get(key) for row in history])
        if pair is not None:
            summary[label] = {"first_fifth": round(pair[0], 4), "last_fifth": round(pair[1], 4)}
    return summary


def _trend_line(label: str, pair: tuple[float, float]) -> str:
    first, last = pair
    word = "rose" if last > first + 1e-6 else "fell" if last < first - 1e-6 else "stayed flat"
    return f"- {label} {word}: {first:.3g} in the first fifth of the steps, {last:.3g} in the last."


def read_grpo_curves(history) -> str:
    """A short reading of a GRPO run's curves (``helpers.dashboard.metrics.read_metrics`` rows): reward, format
    and accuracy (first fifth -> last fifth), groups without reward spread, completion length and clipping,
    and what to change when something looks wrong."""
    rows = [r for r in history if r.get("reward") is not None]
    if not rows:
        return "No GRPO step was logged yet."
    lines = [f"{len(rows)} logged steps."]
    for key, label in (("reward", "reward (weighted sum)"), ("rewards/format_compliance/mean", "format compliance"),
                       ("rewards/accuracy/mean", "strict accuracy"),
                       ("rewards/lenient_accuracy/mean", "lenient accuracy")):
        if pair := fifths([r.get(key) for r in rows]):
            lines.append(_trend_line(label, pair))
    zero = [r["frac_reward_zero_std"] for r in rows if r.get("frac_reward_zero_std") is not None]
    if zero:
        share = statistics.fmean(zero)
        note = ("most groups scored all-equal, so most steps taught nothing: warm up with SFT (notebook 06), "
                "sample more generations, or add a reward with partial credit" if share > 0.5 else
                "most groups had a reward spread, so most steps carried a learning signal")
        lines.append(f"- groups without reward spread: {share:.0%} on average; {note}.")
    clipped = [r["completions/clipped_ratio"] for r in rows if r.get("completions/clipped_ratio") is not None]
    if length := fifths([r.get("completions/mean_length") for r in rows]):
        lines.append(f"- completion length: {length[0]:.0f} -> {length[1]:.0f} tokens"
                     + (f", {statistics.fmean(clipped):.0%} cut at max_completion_length" if clipped else "") + ".")
        if clipped and statistics.fmean(clipped) > 0.5:
            lines.append("  Most completions were cut before they ended: they cannot reach the answer tag; "
                         "raise max_completion_length if memory allows.")
    if kl := fifths([r.get("kl") for r in rows]):
        lines.append(f"- KL to the starting model: {kl[0]:.3g} -> {kl[1]:.3g} (beta > 0).")
    lines.append("- The loss is not a progress measure: with beta=0 it is minus the token-averaged advantages (about 0, "
                 "or tilted by which completions were longer), whatever the model learns.")
    if len(rows) < 20:
        lines.append(f"With only {len(rows)} steps the curves show that the loop works, not a trend: expect noise. "
                     "The GPU profiles run long enough to see the reward climb.")
    return "\n".join(lines)


def read_sft_curves(history, compliance: tuple[float, float] | None = None) -> str:
    """A short reading of an SFT warm-up's curves (loss and next-token accuracy, first fifth -> last fifth) and
    of its held-out format ``compliance`` (before, after)."""
    rows = [r for r in history if r.get("loss") is not None]
    if not rows:
        return "No SFT step was logged yet."
    lines = [f"{len(rows)} logged steps."]
    if loss := fifths([r.get("loss") for r in rows]):
        lines.append(f"- loss (on the responses only) {loss[0]:.3g} in the first fifth -> {loss[1]:.3g} in the last: "
                     + ("the model is learning the traces' layout and wording." if loss[1] < loss[0] else
                        "not falling: raise the learning rate or the steps, or check the data."))
    if accuracy := fifths([r.get("mean_token_accuracy") for r in rows]):
        lines.append(f"- next-token accuracy on the responses {accuracy[0]:.0%} -> {accuracy[1]:.0%}: the format is "
                     "fixed text, so it is learned first; the numbers inside take longer.")
    if compliance is not None:
        before, after = compliance
        lines.append(f"- format compliance on held-out prompts (greedy): {before:.0%} before, {after:.0%} after.")
        lines.append("  GRPO needs completions whose rewards differ within a group; a model that writes the format "
                     "at least sometimes gives the format and correctness rewards something to compare."
                     if after > 0 else
                     "  Still 0%: GRPO would see no reward spread from the format rewards; train longer first.")
    lines.append("A warm-up should stop early: a few dozen steps teach the format; many more start to teach the "
                 "traces' answers by heart, which is GRPO's job to improve on.")
    return "\n".join(lines)
