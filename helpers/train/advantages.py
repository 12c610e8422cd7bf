"""GRPO's advantages, computed as TRL 1.15 computes them, for explaining them on a toy batch (notebook 07)."""

from __future__ import annotations

import statistics


def group_advantages(rewards, num_generations: int, scale_rewards: str = "group") -> list[float]:
    """The advantages TRL 1.15 gives completions with these (weighted, summed) ``rewards``: reward
    minus its group's mean, divided by the group's standard deviation (+1e-4) with ``"group"``, by the
    whole batch's with ``"batch"``, not at all with ``"none"``. A group whose rewards are all equal
    gets advantage 0: no gradient.

    >>> group_advantages([1, 0, 0, 0,  1, 1, 1, 1], 4)  # the second group has no spread
    [1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    >>> group_advantages([3, 1], 2, "none")
    [1.0, -1.0]
    """
    rewards = [float(r) for r in rewards]
    if num_generations < 2 or len(rewards) % num_generations:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {num_generations}; fix: pass whole groups.")
    out = []
    batch_std = statistics.stdev(rewards) if len(rewards) > 1 else 0.0
    for start in range(0, len(rewards), num_generations):
        group = rewards[start:start + num_generations]
        mean = statistics.fmean(group)
        std = {"group": statistics.stdev(group), "batch": batch_std, "none": None}[scale_rewards]
        out.extend(round((r - mean) / (std + 1e-4), 3) if std is not None else round(r - mean, 3) for r in group)
    return [a + 0.0 for a in out]  # no -0.0
