"""Training checkpoints: which ``checkpoint-N`` folders are complete, the newest one, and setting damaged ones aside.

transformers writes ``checkpoint-N`` in place (adapter, optimizer, scheduler, RNG state) and
``trainer_state.json`` last. A kill while saving leaves a folder without it; a kill or a full disk
while writing can also leave a half-written ``trainer_state.json`` or truncated weights. A checkpoint
therefore counts as complete only if its files read back (:func:`checkpoint_problem`), and
:func:`newest_checkpoint` falls back to the next older one. Damaged folders are never deleted:
:func:`set_aside_damaged` renames them to ``damaged-checkpoint-N`` (kept for the user, invisible to
transformers' checkpoint rotation, which globs ``checkpoint-*``). :func:`choose_resume` makes GRPO's whole
start-or-resume decision and says it where the person running the command sees it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.files.atomic import retire_stale_adapter, unused_path
from helpers.files.integrity import file_problem
from helpers.files.runs import RunLayout
from helpers.runtime.distributed import is_main_process
from helpers.runtime.notices import notice


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


def set_aside_folder(stage: Path) -> Path | None:
    """Move an earlier run's checkpoints, adapter and metrics in ``stage`` to ``stage/previous-<time>/``."""
    old = [stage / name for name in ("checkpoints", "adapter", "metrics.jsonl") if (stage / name).exists()]
    if not old:
        return None
    aside = unused_path(stage / f"previous-{time.strftime('%Y%m%d-%H%M%S')}")  # two fresh starts in one second
    aside.mkdir(parents=True)
    for path in old:
        os.replace(path, aside / path.name)
    return aside


@dataclass
class ResumePlan:
    """Where GRPO starts (:func:`choose_resume`): the checkpoint to resume from (``None``: step 1), the damaged
    checkpoints set aside, the earlier run moved aside by a fresh start, the highest step the run had reached, the
    steps that will be done again, and the one-line message (``None`` when there is nothing to say, and in the
    processes other than the main one)."""

    checkpoint: Path | None
    set_aside: list[Path] = field(default_factory=list)
    earlier_run: Path | None = None
    reached: int = 0
    steps_lost: int = 0
    message: str | None = None


def _reached(stage: Path) -> int:
    """The highest step in ``<stage>/metrics.jsonl`` and in the names of its ``checkpoint-N`` folders (whole or not)."""
    steps = [_step(p) for p in (stage / "checkpoints").glob("checkpoint-*")]
    try:
        lines = (stage / "metrics.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by a kill
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and not isinstance(row["step"], bool):
            steps.append(row["step"])
    return max([0, *steps])


def _resume_message(folder: Path, moved: list[Path], problems: dict[str, str], checkpoint: Path | None,
                    reached: int, lost: int) -> str:
    redo = f"{lost} step{'s' if lost != 1 else ''}"
    if moved:
        damaged = ", ".join(f"{name} ({problem})" for name, problem in sorted(problems.items(), key=lambda kv: kv[0]))
        head = (f"!!! GRPO resume: {damaged} in {folder} did not read back, moved aside to "
                f"{', '.join(p.name for p in moved)}; ")
        if checkpoint is not None:
            return head + f"resuming from {checkpoint.name} instead: {redo} lost (step {reached} had been reached) !!!"
        return head + (f"no complete checkpoint is left: GRPO starts again at step 1: {redo} lost (step {reached} "
                       "had been reached) !!!")
    if checkpoint is not None:
        return f"GRPO resumes from {checkpoint.name}" + (f" (step {reached} had been reached: {redo} after it are done "
                                                         "again)" if lost else "")
    if lost:
        return (f"!!! GRPO resume: no checkpoint in {folder} (the run stopped before its first one): GRPO starts again "
                f"at step 1: {redo} lost !!!")
    return f"GRPO resume: no checkpoint in {folder}: GRPO starts at step 1"


def choose_resume(run_dir: str | os.PathLike | None, resume: bool | None, *, main: bool = True) -> ResumePlan:
    """Decide where GRPO starts in ``<run>/grpo`` (``run_dir``: as :class:`~helpers.files.runs.RunLayout` takes it).

    ``resume=None`` refuses (:class:`CheckpointsExistError`) if there are checkpoints; ``False`` moves an earlier
    run's checkpoints, adapter and metrics to ``<run>/grpo/previous-<time>/``; ``True`` moves the checkpoints that do
    not read back to ``damaged-checkpoint-N`` and resumes from the newest complete one (none: step 1). The steps lost
    are the highest step reached (metrics or checkpoint names) minus the resumed one. The message is printed and
    posted to ``<run>/notices.jsonl`` (``helpers.runtime.notices.notice``), which ``grpo-notebooks run`` shows on
    the terminal and in ``run.log``. ``main``: whether this process is the one that touches the run folder (several
    processes: only rank 0 moves folders and speaks; the others get the same checkpoint, since
    :func:`newest_checkpoint` skips damaged folders wherever they are)."""
    layout = RunLayout(run_dir)
    folder, stage = layout.grpo_checkpoints, layout.root / "grpo"
    check_checkpoints(folder, resume)
    plan = ResumePlan(checkpoint=None)
    if resume:
        problems = {p.name: checkpoint_problem(p) for p in folder.glob("checkpoint-*") if p.is_dir()}
        plan.reached = _reached(stage)
        plan.set_aside = set_aside_damaged(folder) if main else []
        plan.checkpoint = newest_checkpoint(folder)
        plan.steps_lost = max(0, plan.reached - (_step(plan.checkpoint) if plan.checkpoint else 0))
        damaged = {name: problem for name, problem in problems.items() if problem} if plan.set_aside else {}
        if main:
            plan.message = _resume_message(folder, plan.set_aside, damaged, plan.checkpoint, plan.reached,
                                           plan.steps_lost)
    elif resume is False and main and (aside := set_aside_folder(stage)):
        plan.earlier_run = aside
        plan.message = f"GRPO starts over (resume=False): the earlier run's checkpoints, adapter and metrics are in {aside}"
    if plan.message and main:
        notice(plan.message, run_dir=layout.root)
    return plan


def resume_point(run_dir: str | os.PathLike | None, resume: bool | None) -> Path | None:
    """GRPO's checkpoint policy before the trainer is built (notebook 07): :func:`choose_resume`'s decision for this
    process, then, on a fresh start, an older run's final adapter moved aside (``retire_stale_adapter``: it must
    never sit beside the new metrics) and the checkpoint folder made. Returns the checkpoint to resume from."""
    main = is_main_process()
    plan = choose_resume(run_dir, resume, main=main)
    layout = RunLayout(run_dir)
    if main:
        if plan.checkpoint is None:
            retire_stale_adapter(layout.grpo_adapter)
        layout.grpo_checkpoints.mkdir(parents=True, exist_ok=True)
    return plan.checkpoint


