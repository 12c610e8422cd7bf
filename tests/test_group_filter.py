"""helpers.train.group_filter: zero-spread groups dropped or replaced, on TRL's real output layout and in a real run."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from helpers.train.group_filter import GroupFilter, filtered_trainer_class, merge_groups, spread_groups

G = 2  # completions per group in the fake batches


def _batch(advantages, prompt_width=3, completion_width=4, tag=0):
    """A ``_generate_and_score_completions`` output with TRL's keys; row i's ids are tag*100 + i."""
    n = len(advantages)
    ids = torch.arange(n).unsqueeze(1) + tag * 100
    return {
        "prompt_ids": ids.repeat(1, prompt_width), "prompt_mask": torch.ones(n, prompt_width, dtype=torch.long),
        "completion_ids": ids.repeat(1, completion_width),
        "completion_mask": torch.ones(n, completion_width, dtype=torch.long),
        "advantages": torch.tensor(advantages, dtype=torch.float32),
        "num_items_in_batch": torch.tensor(n * completion_width),
    }


def test_spread_groups_finds_groups_without_signal():
    assert spread_groups(torch.tensor([0.0, 0.0, 0.7, -0.7, 0.0, 0.0]), 2) == [False, True, False]


def test_merge_groups_pads_and_recounts():
    a = _batch([1.0, -1.0, 0.0, 0.0], prompt_width=3, completion_width=4, tag=1)
    b = _batch([0.5, -0.5], prompt_width=5, completion_width=2, tag=2)
    merged = merge_groups([(a, [0]), (b, [0])], G)
    assert merged["prompt_ids"].shape == (4, 5) and merged["completion_ids"].shape == (4, 4)
    assert merged["prompt_mask"][:2, :2].sum() == 0  # the narrower prompts are padded on the left
    assert merged["completion_mask"][2:, 2:].sum() == 0  # the shorter completions on the right
    assert merged["prompt_ids"][2:, 0].tolist() == [200, 201]
    assert merged["advantages"].tolist() == [1.0, -1.0, 0.5, -0.5]
    assert int(merged["num_items_in_batch"]) == 2 * 4 + 2 * 2


def test_merge_groups_refuses_fields_it_cannot_merge():
    a = _batch([1.0, -1.0]) | {"pixel_values": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match="GroupFilter\\(mode='off'\\)"):
        merge_groups([(a, [0])], G)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="fix: use one of off, drop, resample"):
        GroupFilter(mode="filter")
    with pytest.raises(ValueError, match="max_rounds"):
        GroupFilter(max_rounds=-1)


class _FakeGRPO:
    """Stands in for TRL's GRPOTrainer: hands out prepared scored batches, one per call."""

    def __init__(self, batches, steps_per_generation=1):
        self.batches = list(batches)
        self.calls = []
        self.num_generations = G
        self.model = SimpleNamespace(training=True)
        self.accelerator = SimpleNamespace(num_processes=1)
        self.args = SimpleNamespace(steps_per_generation=steps_per_generation, seed=0)
        self.train_dataset = [{"prompt": f"p{i}", "answer": str(i)} for i in range(10)]
        self._metrics = {"train": defaultdict(list)}

    def _generate_and_score_completions(self, inputs):
        self.calls.append(inputs)
        return self.batches.pop(0)


def test_off_is_trl_itself():
    assert filtered_trainer_class(_FakeGRPO, GroupFilter(mode="off")) is _FakeGRPO


def test_resample_replaces_zero_spread_groups_and_logs_it():
    first = _batch([0.0, 0.0, 1.0, -1.0, 0.0, 0.0], tag=1)  # groups 0 and 2 have no spread
    second = _batch([0.5, -0.5, 0.0, 0.0], tag=2)  # one of the two new groups has a spread
    trainer = filtered_trainer_class(_FakeGRPO, GroupFilter(mode="resample", max_rounds=1))([first, second])
    out = trainer._generate_and_score_completions([{"prompt": "x"}] * 6)
    assert len(trainer.calls) == 2 and len(trainer.calls[1]) == 2 * G  # two groups' prompts, each G times
    assert trainer.calls[1][0] == trainer.calls[1][1]  # a group repeats one row
    assert out["prompt_ids"][:, 0].tolist() == [102, 103, 200, 201, 100, 101]  # kept, new, then a zero-spread filler
    assert out["advantages"].tolist() == [1.0, -1.0, 0.5, -0.5, 0.0, 0.0]
    m = trainer._metrics["train"]
    assert (m["group_filter/zero_spread"], m["group_filter/replaced"], m["group_filter/dropped"],
            m["group_filter/extra_rounds"]) == ([2.0], [1.0], [0.0], [1.0])


def test_resample_with_a_full_signal_samples_nothing_more():
    first = _batch([1.0, -1.0, 0.2, -0.2])
    trainer = filtered_trainer_class(_FakeGRPO, GroupFilter(mode="resample"))([first])
    assert trainer._generate_and_score_completions([{}] * 4) is first and len(trainer.calls) == 1


def test_drop_leaves_zero_spread_groups_out_of_the_loss():
    first = _batch([0.0, 0.0, 1.0, -1.0], tag=1)
    trainer = filtered_trainer_class(_FakeGRPO, GroupFilter(mode="drop"))([first])
    out = trainer._generate_and_score_completions([{}] * 4)
    assert out["advantages"].tolist() == [1.0, -1.0] and int(out["num_items_in_batch"]) == 2 * 4
    assert trainer._metrics["train"]["group_filter/dropped"] == [1.0] and len(trainer.calls) == 1
    nothing = _batch([0.0, 0.0, 0.0, 0.0])
    trainer = filtered_trainer_class(_FakeGRPO, GroupFilter(mode="drop"))([nothing])
    assert trainer._generate_and_score_completions([{}] * 4) is nothing  # kept whole: loss 0, no empty batch


def test_drop_refuses_split_generation_batches():
    trainer = filtered_trainer_class(_FakeGRPO, GroupFilter(mode="drop"))([_batch([0.0, 0.0, 1.0, -1.0])], 2)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=1"):
        trainer._generate_and_score_completions([{}] * 4)


HALF_CONSTANT = """
def half_constant(completions, answer, **kwargs):
    \"\"\"No spread for prompts whose answer is even (always 1), a length-based spread otherwise.\"\"\"
    return [1.0 if int(a) % 2 == 0 else len(str(c)) / 100 for c, a in zip(completions, answer, strict=True)]


reward_funcs = [half_constant]
reward_weights = [1.0]
"""


@pytest.mark.slow
def test_resample_in_a_real_grpo_run(tmp_path):
    """Two steps of real TRL GRPO (notebook 07's cells) with the filter on: zero-spread groups are seen, replaced
    and logged."""
    from stages import run_stage

    (tmp_path / "rewards.py").write_text(HALF_CONSTANT)  # notebook 05's hand-off, with this reward
    ns = run_stage(7, tmp_path, from_sft=False, grpo_steps=2, num_generations=2, max_completion_length=8,
                   grpo_train_problems=12, train_levels=1, group_filter="resample", seed=1)
    logged = [r for r in ns["history"] if "group_filter/zero_spread" in r]
    assert len(logged) == 2
    assert sum(r["group_filter/zero_spread"] for r in logged) > 0
    assert sum(r["group_filter/replaced"] for r in logged) > 0


def test_filter_report_reads_the_logged_steps():
    from helpers.train.group_filter import filter_report

    rows = [{"step": 1, "group_filter/zero_spread": 2.0, "group_filter/replaced": 1.0, "group_filter/dropped": 0.0,
             "group_filter/extra_rounds": 1.0},
            {"step": 2, "group_filter/zero_spread": 0.0, "group_filter/replaced": 0.0, "group_filter/dropped": 0.0,
             "group_filter/extra_rounds": 0.0}]
    text = filter_report(rows)
    assert text.splitlines()[1].split() == ["1", "2", "1", "0", "1"]
    assert "2 zero-spread groups, 1 replaced" in text
    assert "50% of the groups" in filter_report([{"frac_reward_zero_std": 0.5}, {"frac_reward_zero_std": 0.5}])


def test_replacements_follow_the_levels_that_had_a_spread():
    from datasets import Dataset

    trainer = filtered_trainer_class(_FakeGRPO, GroupFilter(mode="resample", seed=3))([])
    trainer.train_dataset = Dataset.from_list([{"prompt": f"p{i}", "difficulty": 1 + i % 3} for i in range(30)])
    level = {d: [{"difficulty": d}] * G for d in (1, 2, 3)}
    for _ in range(10):  # level 1 never had a spread, level 3 always, level 2 half the time
        trainer._record_spread(level[1] + level[2] + level[3] + level[2], [False, True, True, False], G)
    drawn = [row["difficulty"] for row in trainer._draw_rows(300, G)[::G]]
    share = {d: drawn.count(d) / len(drawn) for d in (1, 2, 3)}
    assert share[3] > share[2] > share[1] and share[1] < 0.15, share
    uniform = filtered_trainer_class(_FakeGRPO, GroupFilter(mode="resample", target_column=None))([])
    uniform.train_dataset = trainer.train_dataset
    assert len(uniform._draw_rows(5, G)) == 5 * G
