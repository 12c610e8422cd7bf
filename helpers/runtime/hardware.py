"""What this machine offers, read without importing the optional packages: the GPU (name, compute
capability, memory, bf16), the front end (Colab, a Jupyter kernel), whether unsloth and vLLM are usable,
and whether the Hugging Face hub answers. ``helpers.runtime.profiles`` picks a profile from it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import socket
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache


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


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(profile: str) -> str:
    """One line: the ``profile``, this machine and the library versions (printed at the end of every notebook)."""
    hw = detect()
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


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers on 443 (False at once under ``HF_HUB_OFFLINE=1``)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False
