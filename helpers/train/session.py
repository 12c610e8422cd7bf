"""The block that runs ``trainer.train()`` (:func:`training_session`): torch's CPU threads chosen for a machine
that other processes may keep busy, and a full or read-only disk turned into one line."""

from __future__ import annotations

import os
from contextlib import contextmanager

from helpers.files.disk import on_full_disk
from helpers.runtime.threads import cpu_threads


def checkpoint_bytes(model) -> int:
    """About the size of one checkpoint of ``model``: its trainable weights, twice that for Adam's moments
    (fp32), and room for the tokenizer files and states saved beside them (0 without a model)."""
    try:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    except Exception:
        return 0
    return trainable * 4 * 3 + 16 * 2**20


@contextmanager
def training_session(folder: str | os.PathLike, model=None, *, threads: int | None = None):
    """Inside the block torch runs on ``threads`` CPU threads (``None``: the cores other processes leave free;
    on a GPU nothing changes: ``helpers.runtime.threads.cpu_threads``), and an ``OSError`` of a full or
    read-only disk under ``folder`` becomes ``helpers.files.disk.DiskFullError`` / ``ReadOnlyError``: one line
    naming the folder, the space free and what a checkpoint of ``model`` needs."""
    with cpu_threads(threads) as count, on_full_disk(folder, needed=checkpoint_bytes(model) or None,
                                                     what="a checkpoint (or the metrics)"):
        yield count
