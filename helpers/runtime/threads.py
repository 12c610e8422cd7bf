"""CPU threads for a stage (training, evaluation) on a machine other processes may keep busy, and a
wall-clock limit for a block (:func:`time_limit`)."""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# CPU threads for a stage (training, evaluation) on a machine others may keep busy
# ---------------------------------------------------------------------------------------------


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from ``/proc/stat``; ``None`` off Linux."""
    try:
        with open("/proc/stat") as fh:
            values = [float(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return (sum(values) - idle) / tick, sum(values) / tick


def others_busy_cores(window: float = 0.3) -> float | None:
    """Cores that *other* processes keep busy right now: machine-wide busy time over ``window``
    seconds minus this process's own (``/proc/stat``); ``None`` where that cannot be read."""
    first, own = _cpu_seconds(), sum(os.times()[:2])
    if first is None:
        return None
    time.sleep(window)
    second, own_after = _cpu_seconds(), sum(os.times()[:2])
    elapsed = second[1] - first[1]
    if elapsed <= 0:
        return None
    cores = os.cpu_count() or 1
    return max(0.0, (second[0] - first[0] - (own_after - own)) / elapsed * cores)


def free_cores() -> int:
    """CPU cores not already busy with other processes' work (at least 1): measured over 0.3 s from
    ``/proc/stat`` (:func:`others_busy_cores`), else from the 1-minute load average. Why: on a busy
    2-core machine two torch threads ran 7-10× slower than one, while on an idle one a single thread
    costs up to ~1.5×. (The load average alone remembers this process's own previous stage and so
    chose one thread on an idle machine.)"""
    cores = os.cpu_count() or 1
    busy = others_busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (OSError, AttributeError):
            return cores
        busy = float(int(busy))
    return max(1, min(cores, cores - round(busy)))


@contextmanager
def cpu_threads(threads: int | None = None):
    """Run torch on ``threads`` CPU threads inside the block, then restore the previous count.

    ``None`` picks :func:`free_cores` (capped at torch's current count); ``0`` leaves torch alone;
    on a GPU nothing changes. Why: torch's OpenMP workers wait for each other at every operation,
    so two threads on a 2-core machine that is already busy ran 7-10× *slower* than one thread
    (measured here: 8 greedy tokens × 4 sequences of the embedded model, 2.2 s with 1 thread,
    15-19 s with 2, load average ~4).
    """
    import torch

    before = torch.get_num_threads()
    wanted = before if threads == 0 or torch.cuda.is_available() else (
        min(before, free_cores()) if threads is None else threads)
    if wanted != before:
        log.info("torch CPU threads: %d -> %d for this stage", before, wanted)
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def time_limit(seconds: float, error):
    """Raise ``error()`` inside the block once it has run ``seconds`` (0: no limit). Uses ``SIGALRM``, so it
    only acts in the main thread on POSIX (elsewhere the block runs unlimited); the signal reaches Python
    code between bytecodes, including regex matching and loops that wait on sockets.

    >>> with time_limit(0, TimeoutError): pass
    """
    import signal
    import threading

    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _expired(signum, frame):
        raise error()

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
