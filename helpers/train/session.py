"""The block that runs ``trainer.train()`` (:func:`training_session`): torch's CPU threads chosen for a machine
that other processes may keep busy, and a full or read-only disk turned into one line."""

from __future__ import annotations

import os
from contextlib import contextmanager

from helpers.files.disk import on_full_disk
from helpers.runtime.threads import cpu_threads
from helpers.save.adapter import model_bytes


def checkpoint_bytes(model) -> int:
    """About the size of one checkpoint of ``model``: its trainable weights, twice that for Adam's moments
    (fp32), and room for the tokenizer files and states saved beside them (0 without a model or trainable weights)."""
    weights = model_bytes(model, trainable_only=True, bytes_per_param=4)
    return 3 * weights + 16 * 2**20 if weights else 0


@contextmanager
def training_session(folder: str | os.PathLike, model=None, *, threads: int | None = None):
    """Inside the block torch runs on ``threads`` CPU threads (``None``: the cores other processes leave free;
    on a GPU nothing changes: ``helpers.runtime.threads.cpu_threads``), and an ``OSError`` of a full or
    read-only disk under ``folder`` becomes ``helpers.files.disk.DiskFullError`` / ``ReadOnlyError``: one line
    naming the folder, the space free and what a checkpoint of ``model`` needs."""
    with cpu_threads(threads) as count, on_full_disk(folder, needed=checkpoint_bytes(model) or None,
                                                     what="a checkpoint (or the metrics)"):
        yield count
