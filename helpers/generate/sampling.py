"""What a generation request asks for and returns: :class:`Generation` (completions and their token counts)
and the checks of its sampling settings."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Generation:
    """Completions per problem (``texts[i]`` has ``samples_per_problem`` entries) and their token
    counts and truncation flags, shaped the same."""

    texts: list[list[str]]
    lengths: list[list[int]]
    truncated: list[list[bool]]
    backend: str
    seconds: float
    token_ids: list[list[list[int]]] | None = None  # the completions' ids (model.generate paths), cut at the stop token


def check_sampling(temperature: float, samples_per_problem: int, max_new_tokens: int) -> None:
    if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature={temperature!r} must be a number >= 0; fix: 0 for greedy, e.g. 0.8 to sample.")
    if samples_per_problem < 1:
        raise ValueError(f"samples_per_problem={samples_per_problem} must be >= 1.")
    if samples_per_problem > 1 and temperature == 0:
        raise ValueError("several samples per problem with greedy decoding would all be the same; "
                         "fix: pass a temperature (e.g. 0.8) for pass@k, or samples_per_problem=1.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1.")
