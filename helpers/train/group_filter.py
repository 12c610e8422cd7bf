"""Zero-spread groups in GRPO: drop them, or replace them with groups that have a learning signal.

A group whose completions all score the same has advantage 0 and teaches nothing (see
notebook 07); TRL logs their share as ``frac_reward_zero_std`` and trains on them anyway. Two
ways past them, switched by :class:`GroupFilter` ``mode`` and built on TRL 1.15's extension point
``GRPOTrainer._generate_and_score_completions`` (subclassed by :func:`filtered_trainer_class`):

- ``"resample"`` (DAPO's dynamic sampling, verl's ``filter_groups``): after a step's groups are
  scored, the zero-spread ones are replaced by groups for other prompts drawn from the training set,
  sampled and scored the same way, for up to ``max_rounds`` extra rounds; the batch keeps its size
  (zero-spread groups fill whatever could not be replaced). Costs extra sampling, not extra backward.
  With ``target_column`` (default ``"difficulty"``) the replacements are drawn level by level, each
  level in proportion to the share of its groups that had a spread so far (Laplace-smoothed): online
  difficulty targeting, as balanced online difficulty filtering does per prompt.
- ``"drop"``: the zero-spread groups leave the batch before the loss. No extra sampling, and the
  backward pass skips them; with ``loss_type="dapo"`` the loss is averaged over the remaining
  tokens only, so the informative groups weigh more. A batch where no group has a spread is kept
  as it is (its loss is 0).

Per step the trainer logs ``group_filter/zero_spread`` (groups without spread in the first
sampling), ``group_filter/replaced``, ``group_filter/dropped`` and ``group_filter/extra_rounds``;
``helpers.dashboard.callback`` writes them to ``metrics.jsonl`` with TRL's own metrics.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MODES = {
    "off": "train on every group, as TRL does",
    "drop": "leave zero-spread groups out of the loss (no extra sampling)",
    "resample": "replace zero-spread groups by freshly sampled groups of other prompts (DAPO dynamic sampling)",
}


@dataclass
class GroupFilter:
    """What to do with groups whose completions all got the same reward."""

    mode: str = field(default="resample", metadata={"help": "; ".join(f"{k!r}: {v}" for k, v in MODES.items())})
    max_rounds: int = field(default=1, metadata={
        "help": "resample: extra sampling rounds per step at most (each samples as many groups as are missing)"})
    seed: int = field(default=0, metadata={"help": "resample: seed of the draw of replacement prompts"})
    target_column: str | None = field(default="difficulty", metadata={
        "help": "resample: draw replacements by this dataset column (the synthetic problems' level), each value "
                "in proportion to how often its groups had a spread so far (online difficulty targeting: levels "
                "the policy solves always or never are drawn less); None or a missing column: uniformly"})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"GroupFilter mode={self.mode!r}; fix: use one of {', '.join(MODES)}.")
        if not isinstance(self.max_rounds, int) or isinstance(self.max_rounds, bool) or self.max_rounds < 0:
            raise ValueError(f"max_rounds={self.max_rounds!r}; fix: 0 or more (1-2 on a CPU: each round samples again).")


def spread_groups(advantages, num_generations: int) -> list[bool]:
    """For each group of ``num_generations`` consecutive completions: whether any advantage is non-zero
    (TRL gives every completion of a zero-spread group advantage exactly 0).

    >>> import torch
    >>> spread_groups(torch.tensor([1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]), 4)
    [True, False]
    """
    grouped = advantages.reshape(-1, num_generations)
    return [bool(x) for x in (grouped != 0).any(dim=1).tolist()]


_PAD_LEFT = {"prompt_ids", "prompt_mask"}
_ROWS = {"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "old_per_token_logps",
         "sampling_per_token_logps", "ref_per_token_logps", "importance_sampling_ratio"}


def merge_groups(parts: list[tuple[dict, list[int]]], num_generations: int) -> dict:
    """One batch from the chosen groups of several ``_generate_and_score_completions`` outputs:
    ``parts`` holds ``(output, group indices)``. Prompts are left-padded and completions right-padded
    to the widest; ``num_items_in_batch`` is recounted. Refuses outputs with keys it does not know
    (images, tools), so a new TRL field cannot be silently dropped."""
    import torch

    for out, _ in parts:
        unknown = {k for k, v in out.items() if v is not None} - _ROWS - {"num_items_in_batch"}
        if unknown:
            raise ValueError(f"group filtering cannot merge batches with {sorted(unknown)} (images, tools or a newer "
                             "TRL field); fix: GroupFilter(mode='off') for this run.")
    merged = {}
    for key in _ROWS:
        pieces = []
        for out, groups in parts:
            value = out.get(key)
            if value is None:
                continue
            rows = [g * num_generations + i for g in groups for i in range(num_generations)]
            pieces.append(value[rows])
        if not pieces:
            continue
        if pieces[0].dim() == 2:
            width = max(p.shape[1] for p in pieces)
            padded = []
            for p in pieces:
                extra = width - p.shape[1]
                if extra:
                    pad = torch.zeros(p.shape[0], extra, dtype=p.dtype, device=p.device)
                    p = torch.cat([pad, p] if key in _PAD_LEFT else [p, pad], dim=1)
                padded.append(p)
            pieces = padded
        merged[key] = torch.cat(pieces, dim=0)
    merged["num_items_in_batch"] = merged["completion_mask"].sum()
    return merged


def filtered_trainer_class(base, group_filter: GroupFilter):
    """A subclass of TRL's ``GRPOTrainer`` (``base``) that applies ``group_filter`` to each training batch."""
    if group_filter.mode == "off":
        return base

    class FilteredGRPOTrainer(base):
        _group_filter = group_filter

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if not self.model.training:
                return out
            if self.accelerator.num_processes > 1:
                raise ValueError("group filtering runs on one process only; fix: GroupFilter(mode='off') here.")
            gen = self.num_generations
            spread = spread_groups(out["advantages"], gen)
            self._record_spread(inputs, spread, gen)
            total, zero = len(spread), spread.count(False)
            good = [(out, [g for g, s in enumerate(spread) if s])]
            rest = [(out, [g for g, s in enumerate(spread) if not s])]
            have, rounds = total - zero, 0
            mode = self._group_filter.mode
            if mode == "drop" and self.args.steps_per_generation > 1:
                raise ValueError("GroupFilter(mode='drop') changes the batch size, which steps_per_generation > 1 "
                                 "cannot split; fix: gradient_accumulation_steps=1, or mode='resample'.")
            while mode == "resample" and have < total and rounds < self._group_filter.max_rounds:
                rounds += 1
                rows = self._draw_rows(total - have, gen)
                more = super()._generate_and_score_completions(rows)
                more_spread = spread_groups(more["advantages"], gen)
                self._record_spread(rows, more_spread, gen)
                found = [g for g, s in enumerate(more_spread) if s]
                good.append((more, found))
                have += len(found)
            replaced = min(have, total) - (total - zero)
            if mode == "resample":
                chosen, need = [], total
                for part, groups in good + rest:
                    take = groups[:need]
                    if take:
                        chosen.append((part, take))
                    need -= len(take)
                batch = merge_groups(chosen, gen) if (replaced or zero) else out
                dropped = 0
            else:  # drop
                batch = merge_groups(good, gen) if 0 < zero < total else out
                dropped = zero if zero < total else 0
            metrics = self._metrics["train"]
            metrics["group_filter/zero_spread"].append(float(zero))
            metrics["group_filter/replaced"].append(float(replaced))
            metrics["group_filter/dropped"].append(float(dropped))
            metrics["group_filter/extra_rounds"].append(float(rounds))
            return batch

        def _record_spread(self, rows, spread, gen) -> None:
            column = self._group_filter.target_column
            if not hasattr(self, "_spread_counts"):
                self._spread_counts = {}  # value -> [groups seen, groups with a spread]
            if column is None or not rows or column not in rows[0]:
                return
            for g, s in enumerate(spread):
                counts = self._spread_counts.setdefault(rows[g * gen][column], [0, 0])
                counts[0] += 1
                counts[1] += int(s)

        def _draw_rows(self, groups: int, gen: int) -> list[dict]:
            """``groups`` training rows (seeded draw), each repeated ``gen`` times as TRL's sampler does: by
            ``target_column`` value in proportion to its spread rate so far, else uniformly."""
            if not hasattr(self, "_filter_rng"):
                self._filter_rng = random.Random(self._group_filter.seed + self.args.seed)
            rng, data = self._filter_rng, self.train_dataset
            column = self._group_filter.target_column
            if column is not None and column in getattr(data, "column_names", ()):
                by_value = getattr(self, "_rows_by_value", None)
                if by_value is None:
                    by_value = self._rows_by_value = {}
                    for i, value in enumerate(data[column]):
                        by_value.setdefault(value, []).append(i)
                values = sorted(by_value, key=str)
                counts = getattr(self, "_spread_counts", {})
                weights = [(counts.get(v, [0, 0])[1] + 1) / (counts.get(v, [0, 0])[0] + 2) for v in values]
                picks = [rng.choice(by_value[rng.choices(values, weights)[0]]) for _ in range(groups)]
            else:
                picks = [rng.randrange(len(data)) for _ in range(groups)]
            return [dict(data[i]) for i in picks for _ in range(gen)]

    FilteredGRPOTrainer.__name__ = FilteredGRPOTrainer.__qualname__ = f"Filtered{base.__name__}"
    return FilteredGRPOTrainer


def filter_report(history) -> str:
    """One line per logged GRPO step (``helpers.dashboard.metrics.read_metrics`` rows): groups without reward
    spread in the first sampling, and how many were replaced or dropped; then the totals."""
    rows = [r for r in history if r.get("group_filter/zero_spread") is not None]
    if not rows:
        zero = [r.get("frac_reward_zero_std") for r in history if r.get("frac_reward_zero_std") is not None]
        if not zero:
            return "No GRPO step was logged."
        return (f"Group filter off: {sum(zero) / len(zero):.0%} of the groups had no reward spread on average "
                "(frac_reward_zero_std) and were trained on anyway (advantage 0, no gradient).")
    lines = ["step  zero-spread  replaced  dropped  extra rounds"]
    for r in rows:
        lines.append(f"{r.get('step', '?'):>4}  {r['group_filter/zero_spread']:>11.0f}  {r['group_filter/replaced']:>8.0f}"
                     f"  {r['group_filter/dropped']:>7.0f}  {r['group_filter/extra_rounds']:>12.0f}")
    total = {k: sum(r[f"group_filter/{k}"] for r in rows) for k in ("zero_spread", "replaced", "dropped")}
    lines.append(f"In all: {total['zero_spread']:.0f} zero-spread groups, {total['replaced']:.0f} replaced by groups "
                 f"with a spread, {total['dropped']:.0f} dropped.")
    return "\n".join(lines)
