"""Training metrics as the dashboard records them: canonical names and the ``metrics.jsonl`` history.

- ``canonical_key`` / ``canonical``: the metric keys of either TRL generation (≥ 0.17 / 1.x and the older
  one) under one canonical set (TRL 1.15's own keys), non-finite values as ``None``; ``reward_names`` and
  ``Panels`` pick reward functions out of those keys.
- ``read_metrics`` / ``merge_by_step``: a ``metrics.jsonl`` (or ``trainer.state.log_history``) as one
  canonical row per step, later records of a step winning; lines cut short by a kill are skipped.
- ``truncate_metrics``: cut a history back to a checkpoint's step (atomic rewrite, old file kept as ``.prev``).

Writing the file line by line is ``helpers.dashboard.callback.DashboardCallback``'s job; the PNG curves are drawn by
``helpers.dashboard.plots``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.files.atomic import atomic_write

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
    console line and header). With ``helpers.rewards.functions``' names the format panel shows
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


def read_records(path: Path) -> list[dict[str, Any]]:
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
    return merge_by_step(read_records(path / "metrics.jsonl" if path.is_dir() else path))


def truncate_metrics(path: str | os.PathLike, after_step: int) -> int:
    """Drop the records of ``path`` with a step above ``after_step`` (and unreadable lines); returns how many
    lines went. The file is rewritten atomically and its previous content kept as ``<name>.prev``."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [json.dumps(r) for r in read_records(path) if int(r["step"]) <= after_step]
    if len(kept) == len(lines):
        return 0
    shutil.copy2(path, path.with_name(path.name + ".prev"))
    atomic_write(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)
