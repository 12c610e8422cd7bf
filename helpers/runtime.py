"""Where are we running? Hardware, front end, optional packages, and the profile that sizes every stage.

One code path serves every machine; a *profile* only sizes it:

- ``colab-t4``: a T4-class GPU (compute capability 7.5, ~15 GB, fp16 only), Unsloth without vLLM
  (the ``t4`` extra; benchmarks/t4.md)
- ``gpu``: any other CUDA GPU (bf16 where supported), Unsloth (+ vLLM when installed)
- ``cpu``: no GPU; the embedded offline model, short completions, minutes not hours
- ``ci``: ``cpu`` shrunk to seconds per notebook

The environment variable ``GRPO_PROFILE`` overrides the choice (CI and Binder set it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache

log = logging.getLogger(__name__)

PROFILES = ("colab-t4", "gpu", "cpu", "ci")
PROFILE_ENV = "GRPO_PROFILE"


@dataclass(frozen=True)
class Hardware:
    """What this machine offers, read once (``detect()``)."""

    cuda: bool
    gpu_name: str | None
    cuda_capability: tuple[int, int] | None
    vram_gib: float | None
    bf16: bool
    cpu_threads: int
    colab: bool
    notebook: bool
    unsloth: bool
    vllm: bool  # vLLM installed and usable: a GPU of compute capability >= 8.0 (not a T4), $GRPO_NO_VLLM unset

    @property
    def t4_class(self) -> bool:
        """A Turing-class GPU (capability 7.5, e.g. Colab's free T4): fp16 only, ~15 GB."""
        return self.cuda_capability == (7, 5)

    @property
    def headless(self) -> bool:
        return not self.notebook

    def as_dict(self) -> dict:
        return asdict(self) | {"t4_class": self.t4_class, "headless": self.headless}


NO_VLLM_ENV = "GRPO_NO_VLLM"  # 1: generate without vLLM even where it is installed


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def importable(module: str) -> bool:
    """True if ``module`` can be found, without importing it (importing unsloth patches other libraries)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def in_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def in_notebook() -> bool:
    """True inside a Jupyter kernel (ipykernel's ZMQ shell or a subclass, e.g. Colab's), where widgets render."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if shell is None:
        return False
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__) or in_colab()


@lru_cache(maxsize=1)
def detect() -> Hardware:
    """Read the hardware and the optional GPU packages (cached: the answer does not change in a process)."""
    import torch

    cuda = torch.cuda.is_available()
    name = capability = vram = None
    bf16 = False
    if cuda:
        props = torch.cuda.get_device_properties(0)
        name = props.name
        capability = (props.major, props.minor)
        vram = round(props.total_memory / 2**30, 1)
        bf16 = bool(torch.cuda.is_bf16_supported())
    return Hardware(
        cuda=cuda,
        gpu_name=name,
        cuda_capability=capability,
        vram_gib=vram,
        bf16=bf16,
        cpu_threads=torch.get_num_threads(),
        colab=in_colab(),
        notebook=in_notebook(),
        unsloth=cuda and importable("unsloth"),
        vllm=cuda and importable("vllm") and capability >= (8, 0) and not _env_flag(NO_VLLM_ENV),
    )


class ProfileError(ValueError):
    """An unknown profile name; the message names where it came from and the fix, on one line."""


def check_profile(name: str, source: str = "profile") -> str:
    """``name`` as a known profile (case and surrounding spaces ignored), else :class:`ProfileError`.

    >>> check_profile(" CPU ")
    'cpu'
    """
    value = str(name).strip().lower()
    if value not in PROFILES:
        raise ProfileError(f"{source}={name!r} is not a profile; fix: use one of {', '.join(PROFILES)} "
                           f"(or leave {PROFILE_ENV} unset to pick one from the hardware).")
    return value


def pick_profile(hw: Hardware | None = None, env: dict | None = None) -> str:
    """The profile for this machine, or ``GRPO_PROFILE`` when set (refused with :class:`ProfileError`,
    one line, if it is not a known profile)."""
    env = os.environ if env is None else env
    forced = env.get(PROFILE_ENV, "").strip()
    if forced:
        return check_profile(forced, PROFILE_ENV)
    hw = detect() if hw is None else hw
    if not hw.cuda:
        return "cpu"
    return "colab-t4" if hw.t4_class or (hw.vram_gib or 0) < 20 else "gpu"


def use_profile(profile: str | None = None) -> str:
    """Resolve the profile (a notebook's parameter, else ``GRPO_PROFILE``, else the hardware) and
    export it as ``GRPO_PROFILE`` so every helper called afterwards sizes itself the same way."""
    if profile:
        os.environ[PROFILE_ENV] = check_profile(profile)
    resolved = pick_profile()
    os.environ[PROFILE_ENV] = resolved
    return resolved


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(profile: str | None = None) -> str:
    """One line of versions and hardware, printed at the end of every notebook."""
    hw = detect()
    profile = profile or pick_profile(hw)
    versions = " ".join(
        f"{d}={v}"
        for d in ("torch", "transformers", "trl", "peft", "datasets", "unsloth", "vllm")
        if (v := _version(d))
    )
    if hw.cuda:
        dev = f"{hw.gpu_name} (cc {hw.cuda_capability[0]}.{hw.cuda_capability[1]}, {hw.vram_gib} GiB, bf16={'yes' if hw.bf16 else 'no'})"
    else:
        dev = f"CPU ({platform.machine()}, {hw.cpu_threads} threads)"
    where = "colab" if hw.colab else ("notebook" if hw.notebook else "headless")
    return f"profile={profile} | {dev} | {where} | python={platform.python_version()} {versions}"


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
