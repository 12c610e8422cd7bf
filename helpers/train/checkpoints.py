"""Training checkpoints: which ``checkpoint-N`` folders are complete, the newest one, and setting damaged ones aside.

transformers writes ``checkpoint-N`` in place (adapter, optimizer, scheduler, RNG state) and
``trainer_state.json`` last. A kill while saving leaves a folder without it; a kill or a full disk
while writing can also leave a half-written ``trainer_state.json`` or truncated weights. A checkpoint
therefore counts as complete only if its files read back (:func:`checkpoint_problem`), and
:func:`newest_checkpoint` falls back to the next older one. Damaged folders are never deleted:
:func:`set_aside_damaged` renames them to ``damaged-checkpoint-N`` (kept for the user, invisible to
transformers' checkpoint rotation, which globs ``checkpoint-*``). :func:`resume_point` applies the policy before GRPO trains.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from helpers.files.atomic import retire_stale_adapter, unused_path
from helpers.files.integrity import file_problem
from helpers.runtime.distributed import is_main_process

log = logging.getLogger(__name__)


def _step(path: Path) -> int:
    try:
        return int(path.name.split("-")[-1])
    except ValueError:
        return -1


_CHECKPOINT_WEIGHTS = ("adapter_model.safetensors", "model.safetensors")


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """``None`` if the checkpoint folder ``path`` reads back, else what is wrong with it: its
    ``trainer_state.json`` (written last) must parse as JSON with a ``global_step``, its weights must open
    as safetensors (a truncated file does not; a pickle-only ``adapter_model.bin`` does not count), and its
    optimizer, scheduler and RNG files, where present, must be whole ``torch.save`` archives."""
    path = Path(path)
    state = path / "trainer_state.json"
    if (issue := file_problem(state)) is not None:
        return f"trainer_state.json {issue}"
    try:
        if not isinstance(json.loads(state.read_text(encoding="utf-8")).get("global_step"), int):
            return "trainer_state.json has no global_step"
    except (OSError, ValueError, AttributeError):
        return "trainer_state.json unreadable"
    weights = [path / name for name in _CHECKPOINT_WEIGHTS if (path / name).is_file()]
    if not weights:
        return "no adapter_model.safetensors"
    for file in weights + sorted(p for p in path.iterdir() if p.suffix in (".pt", ".pth")):
        if (issue := file_problem(file)) is not None:
            return f"{file.name} {issue}"
    return None


def _complete(path: Path) -> bool:
    return checkpoint_problem(path) is None


def complete_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The complete ``checkpoint-N`` folders in ``folder``, oldest first: those whose files read back
    (:func:`checkpoint_problem`; a half-written ``trainer_state.json`` or truncated weights do not)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and _step(p) >= 0 and _complete(p)]
    return sorted(found, key=_step)


def newest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``folder``, or ``None`` (transformers' ``get_last_checkpoint``,
    but a folder a kill left half-written, or whose files do not read back, does not count: the next
    older one is used). Nothing is changed on disk."""
    found = complete_checkpoints(folder)
    return found[-1] if found else None


DAMAGED_PREFIX = "damaged-"


def set_aside_damaged(folder: str | os.PathLike) -> list[Path]:
    """Move every ``checkpoint-N`` that does not read back aside, to ``damaged-checkpoint-N`` in the same
    folder (numbered if taken): nothing a user might want is deleted, and neither this module nor
    transformers' checkpoint rotation (``checkpoint-*``) sees it again. Returns the new paths."""
    folder, moved = Path(folder), []
    for p in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else ():
        if p.is_dir() and not _complete(p):
            target = unused_path(folder / f"{DAMAGED_PREFIX}{p.name}")
            os.replace(p, target)
            moved.append(target)
    return moved


# ---------------------------------------------------------------------------------------------
# Checkpoints: complete_checkpoints / newest_checkpoint live in helpers.train.checkpoints
# ---------------------------------------------------------------------------------------------


class CheckpointsExistError(RuntimeError):
    """Training would start over in a folder that holds an earlier run's checkpoints (message: cause and fix)."""


def check_checkpoints(folder: str | os.PathLike, resume: bool | None) -> None:
    """Refuse (:class:`CheckpointsExistError`) when ``folder`` holds ``checkpoint-*`` folders and ``resume`` is
    ``None``: the caller must say whether to continue (``True``) or start over (``False``)."""
    folder = Path(folder)
    if resume is not None or not folder.is_dir() or not any(p.is_dir() for p in folder.glob("checkpoint-*")):
        return
    newest = newest_checkpoint(folder)
    raise CheckpointsExistError(
        f"{folder} holds checkpoints of an earlier run (newest complete: {newest.name if newest else 'none'}); "
        "fix: resume=True (grpo-notebooks run --resume) to continue from it, or resume=False "
        "(grpo-notebooks run --fresh) to start over (the old checkpoints are moved aside, not deleted).")


def _set_aside(stage: Path) -> Path | None:
    """Move an earlier run's checkpoints, adapter and metrics in ``stage`` to ``stage/previous-<time>/``."""
    old = [stage / name for name in ("checkpoints", "adapter", "metrics.jsonl") if (stage / name).exists()]
    if not old:
        return None
    aside = unused_path(stage / f"previous-{time.strftime('%Y%m%d-%H%M%S')}")  # two fresh starts in one second
    aside.mkdir(parents=True)
    for path in old:
        os.replace(path, aside / path.name)
    return aside


def resume_point(folder: str | os.PathLike, resume: bool | None) -> Path | None:
    """GRPO's checkpoint policy, applied before the trainer is built; returns the checkpoint to resume from.

    ``resume=True``: checkpoints that do not read back are moved aside (``damaged-checkpoint-N``) and the
    newest complete one is returned (``None``, a fresh start, when there is none). ``resume=False``: the earlier
    run's checkpoints, adapter and metrics are moved to ``<stage>/previous-<time>/``. ``resume=None``: a folder
    that holds checkpoints is refused (:class:`CheckpointsExistError`). A fresh start also moves an older run's
    final adapter aside, so it never sits beside the new metrics. Only rank 0 moves anything; every process
    reads the same newest checkpoint."""
    folder = Path(folder)
    check_checkpoints(folder, resume)
    main = is_main_process()
    resumed_from = None
    if resume:
        for path in set_aside_damaged(folder) if main else ():
            log.warning("moved aside a checkpoint that does not read back (a kill while saving, or a damaged "
                        "file): %s", path)
        resumed_from = newest_checkpoint(folder)
        if main:
            print(f"resuming from {resumed_from}" if resumed_from else f"resume=True but no checkpoint in {folder}: "
                  "starting fresh", flush=True)
    elif resume is False and main and (aside := _set_aside(folder.parent)):
        print(f"resume=False: starting over; the earlier run's checkpoints, adapter and metrics are in {aside}",
              flush=True)
    if main:
        if resumed_from is None:
            retire_stale_adapter(folder.parent / "adapter")
        folder.mkdir(parents=True, exist_ok=True)
    return resumed_from
