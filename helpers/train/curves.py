"""A short reading of a GRPO run's logged curves (:func:`read_curves`)."""

from __future__ import annotations


def _trend(rows, key) -> tuple[float, float] | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return None
    k = max(1, len(values) // 3)
    return _mean(values[:k]), _mean(values[-k:])


def _mean(values) -> float:
    return sum(values) / len(values)


def read_curves(history) -> str:
    """A short reading of a GRPO run's curves (``helpers.dashboard.metrics.read_metrics`` rows): the reward,
    format and accuracy from the first third of the steps to the last, the share of groups without
    reward spread, completion length and clipping, and what to change when something looks wrong."""
    rows = [r for r in history if r.get("reward") is not None]
    if not rows:
        return "No GRPO step was logged yet."
    lines = [f"{len(rows)} logged steps."]
    for key, label in (("reward", "reward (weighted sum)"), ("rewards/format_compliance/mean", "format compliance"),
                       ("rewards/accuracy/mean", "strict accuracy"), ("rewards/lenient_accuracy/mean",
                                                                     "lenient accuracy")):
        trend = _trend(rows, key)
        if trend:
            first, last = trend
            word = "rose" if last > first + 1e-6 else "fell" if last < first - 1e-6 else "stayed flat"
            lines.append(f"- {label} {word}: {first:.3g} in the first third of the steps, {last:.3g} in the last.")
    zero = [r["frac_reward_zero_std"] for r in rows if r.get("frac_reward_zero_std") is not None]
    if zero:
        share = _mean(zero)
        note = ("most groups scored all-equal, so most steps taught nothing: warm up with SFT (notebook 06), "
                "sample more generations, or add a reward with partial credit" if share > 0.5 else
                "most groups had a reward spread, so most steps carried a learning signal")
        lines.append(f"- groups without reward spread: {share:.0%} on average; {note}.")
    clipped = [r["completions/clipped_ratio"] for r in rows if r.get("completions/clipped_ratio") is not None]
    length = _trend(rows, "completions/mean_length")
    if length:
        lines.append(f"- completion length: {length[0]:.0f} -> {length[1]:.0f} tokens"
                     + (f", {_mean(clipped):.0%} cut at max_completion_length" if clipped else "") + ".")
        if clipped and _mean(clipped) > 0.5:
            lines.append("  Most completions were cut before they ended: they cannot reach the answer tag; "
                         "raise max_completion_length if memory allows.")
    kl = _trend(rows, "kl")
    if kl:
        lines.append(f"- KL to the starting model: {kl[0]:.3g} -> {kl[1]:.3g} (beta > 0).")
    lines.append("- The loss is not a progress measure: with beta=0 it is minus the token-averaged advantages (about 0, "
                 "or tilted by which completions were longer), whatever the model learns.")
    if len(rows) < 20:
        lines.append(f"With only {len(rows)} steps the curves show that the loop works, not a trend: expect noise. "
                     "The cpu and GPU profiles run long enough to see the reward climb.")
    return "\n".join(lines)
