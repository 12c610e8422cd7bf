"""Install the GPU stack this suite was tested with, chosen for this machine: ``python -m helpers.runtime.install``.

Every notebook's first cell runs it on Colab, after installing the suite itself without dependencies. It reads the
GPU's compute capability and the NVIDIA driver with ``nvidia-smi``, and the installed torch's version from its
metadata (without importing it), picks an extra with :func:`choose_extra`, and pip-installs the requirements this
installed copy of the suite declares for it (its own metadata: the base dependencies plus the extra's pins, the
same set as ``pip install "grpo-notebooks[<extra>]"``, without fetching the suite a second time):

- ``gpu`` (Unsloth + vLLM 0.26.0) where vLLM 0.26 can run: compute capability >= 8.0, an NVIDIA driver >= 580,
  and a CUDA 13 torch (vLLM 0.26 is a CUDA 13 build; pip keeps an installed torch 2.11.0, e.g. Colab's
  ``2.11.0+cu128``, which satisfies ``torch==2.11.0``, and replaces any other by PyPI's 2.11.0, a CUDA 13 build);
- ``t4`` (the same stack without vLLM: rollouts from the suite's own sampler) on any other CUDA GPU: a T4 (7.5),
  or any GPU beside a CUDA 12 torch or driver (benchmarks/t4/vllm_on_t4.md has the sources);
- no extra without a GPU: the base dependencies, the CPU profile.

A torch that could not run after the install (pip would put PyPI's CUDA 13 build beside a driver older than 580,
or a CPU build of torch on a GPU machine) stops it with one line naming the fix, before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shlex
import subprocess
import sys
from pathlib import Path

DIST = "grpo-notebooks"
VLLM_MIN_CAPABILITY = (8, 0)  # vLLM 0.26 runs FlashAttention-class kernels from sm_80 (benchmarks/t4/vllm_on_t4.md)
CUDA13_MIN_DRIVER = 580  # CUDA 13.0 needs an NVIDIA driver >= 580 (580.65.06 on Linux)
SMI = ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]
CUDA12_TORCH_INDEX = "https://download.pytorch.org/whl/cu128"  # torch 2.11.0+cu128: Colab's build (2026-08)


def _capability(value) -> tuple[int, int] | None:
    """(major, minor) from "7.5", 7.5 or (7, 5); None for None."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return int(value[0]), int(value[1])
    major, _, minor = str(value).strip().partition(".")
    return int(major), int(minor or 0)


def _driver_major(driver_version: str | None) -> int | None:
    return int(str(driver_version).split(".")[0]) if driver_version else None


def torch_cuda(torch_version: str | None, pinned: str = "2.11.0") -> int | None:
    """The CUDA major version of the torch that runs after installing an extra that pins ``torch==pinned``: the
    installed one when pip keeps it (same release; its local label, e.g. ``+cu128`` -> 12, ``+cpu`` -> None, none
    -> 13, PyPI's build), else PyPI's ``pinned``, a CUDA 13 build.

    >>> torch_cuda("2.11.0+cu128"), torch_cuda("2.11.0"), torch_cuda("2.13.0+cu126"), torch_cuda(None)
    (12, 13, 13, 13)
    """
    release, _, local = (torch_version or "").partition("+")
    if release != pinned or not local:
        return 13
    if local.startswith("cu") and local[2:].isdigit():
        return int(local[2:-1])  # cu128 -> 12, cu130 -> 13, cu118 -> 11
    return None  # cpu, rocm, xpu: no CUDA


def _decide(compute_capability, driver_version, torch_version, pinned="2.11.0") -> tuple[str | None, str]:
    cap = _capability(compute_capability)
    if cap is None:
        return None, "no NVIDIA GPU: the base install, the CPU profile"
    driver, cuda = _driver_major(driver_version), torch_cuda(torch_version, pinned)
    missing = []
    if cap < VLLM_MIN_CAPABILITY:
        missing.append(f"compute capability {cap[0]}.{cap[1]} < {VLLM_MIN_CAPABILITY[0]}.{VLLM_MIN_CAPABILITY[1]}")
    if driver is None or driver < CUDA13_MIN_DRIVER:
        missing.append(f"NVIDIA driver {driver_version} < {CUDA13_MIN_DRIVER}")
    if cuda != 13:
        missing.append(f"torch {torch_version} is not a CUDA 13 build")
    if missing:
        return "t4", "Unsloth without vLLM (vLLM 0.26 cannot run here: " + ", ".join(missing) + ")"
    return "gpu", "Unsloth + vLLM 0.26"


def choose_extra(compute_capability, driver_version: str | None, torch_version: str | None) -> str | None:
    """The extra to install: ``"gpu"``, ``"t4"``, or None (no GPU). ``compute_capability`` as ``nvidia-smi``
    prints it ("7.5") or a tuple, None without a GPU; ``driver_version`` e.g. "570.124.06"; ``torch_version`` the
    installed torch (e.g. "2.11.0+cu128"), None if torch is not installed.

    >>> choose_extra("7.5", "570.124.06", "2.11.0+cu128"), choose_extra("9.0", "580.159.04", "2.11.0+cu130")
    ('t4', 'gpu')
    """
    return _decide(compute_capability, driver_version, torch_version)[0]


def torch_problem(compute_capability, driver_version: str | None, torch_version: str | None,
                  pinned: str = "2.11.0") -> str | None:
    """One line naming the fix where the torch after the install could not use the GPU; None where it can."""
    if _capability(compute_capability) is None:
        return None
    cuda, driver = torch_cuda(torch_version, pinned), _driver_major(driver_version)
    if cuda is None:
        return (f"torch {torch_version} has no CUDA, on a machine with an NVIDIA GPU; fix: pip install "
                f"torch=={pinned} (PyPI's, CUDA 13, driver >= {CUDA13_MIN_DRIVER}) or torch=={pinned} --index-url "
                f"{CUDA12_TORCH_INDEX}, then run this again.")
    if cuda == 13 and (driver is None or driver < CUDA13_MIN_DRIVER):
        now = f"torch {torch_version}" if torch_version else "no torch"
        return (f"{now} here, so pip would install PyPI's torch {pinned}, a CUDA 13 build that NVIDIA driver "
                f"{driver_version} (< {CUDA13_MIN_DRIVER}) cannot run; fix: pip install torch=={pinned} --index-url "
                f"{CUDA12_TORCH_INDEX}, then run this again.")
    return None


def declared_requirements() -> list[str]:
    """This suite's requirements as its installed metadata lists them (``Requires-Dist``, extras as markers), or
    as ``pyproject.toml`` beside the package says where it is not installed (a source checkout, Python >= 3.11)."""
    try:
        return list(importlib.metadata.requires(DIST) or [])
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        if not pyproject.exists() or sys.version_info < (3, 11):
            raise SystemExit(f"{DIST} is not installed here; fix: pip install --no-deps "
                             f"'{DIST} @ git+https://github.com/grpo-notebooks/grpo-notebooks' first.") from None
        return pyproject_requirements(pyproject)


def pyproject_requirements(pyproject: Path) -> list[str]:
    """``pyproject.toml``'s dependencies and optional dependencies written as ``Requires-Dist`` lines."""
    import tomllib

    project = tomllib.loads(Path(pyproject).read_text())["project"]
    out = list(project.get("dependencies", []))
    for extra, reqs in project.get("optional-dependencies", {}).items():
        for req in reqs:
            spec, _, marker = req.partition(";")
            out.append(f'{spec.strip()}; ({marker.strip()}) and extra == "{extra}"' if marker.strip()
                       else f'{spec.strip()}; extra == "{extra}"')
    return out


def requirements(extra: str | None, requires: list[str], environment: dict[str, str] | None = None) -> list[str]:
    """The requirement strings to install for ``extra`` (None: the base only): each of ``requires`` whose marker
    holds with ``extra`` (and ``environment``, default this interpreter's), written without its marker."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - pip always carries a copy
        from pip._vendor.packaging.requirements import Requirement

    env = dict(environment or {}, extra=extra or "")
    out = []
    for line in requires:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


def pinned_torch(reqs: list[str]) -> str:
    """The torch release ``reqs`` pin (``torch==X``): X.

    >>> pinned_torch(["torch>=2.6", "torch==2.11.0", "trl==1.15.0"])
    '2.11.0'
    """
    pins = [r.split("==", 1)[1].strip() for r in reqs if r.replace(" ", "").startswith("torch==")]
    if len(pins) != 1:
        raise ValueError(f"expected one torch==X pin among {reqs}; fix: pin torch in the t4 extra (pyproject.toml)")
    return pins[0]


def read_gpu(run=subprocess.run) -> tuple[str, str, str] | None:
    """(name, compute capability, driver version) of the GPU with the lowest compute capability, from
    ``nvidia-smi``; None where there is none (no ``nvidia-smi``, or it cannot reach a driver)."""
    try:
        out = run(SMI, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [[f.strip() for f in line.split(",")] for line in (out.stdout or "").splitlines() if line.count(",") == 2]
    if out.returncode != 0 or not rows:
        return None
    name, cap, driver = min(rows, key=lambda r: _capability(r[1]))
    return name, cap, driver


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None, run=subprocess.run) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.runtime.install", description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", choices=("gpu", "t4", "none"), help="install this extra instead of choosing one")
    parser.add_argument("--dry-run", action="store_true", help="print the pip command; install nothing")
    args = parser.parse_args(argv)
    gpu, torch_version, declared = read_gpu(run), installed("torch"), declared_requirements()
    name, cap, driver = gpu or (None, None, None)
    pinned = pinned_torch(requirements("t4", declared))
    extra, why = _decide(cap, driver, torch_version, pinned)
    if args.extra:
        extra, why = (None if args.extra == "none" else args.extra), "asked for with --extra"
    here = f"{name} (compute capability {cap}, NVIDIA driver {driver})" if gpu else "no NVIDIA GPU"
    problem = torch_problem(cap, driver, torch_version, pinned) if extra else None
    if problem:
        print(f"{here}: {problem}", file=sys.stderr, flush=True)
        return 1
    reqs = requirements(extra, declared)
    what = f"the `{extra}` extra" if extra else "the base requirements"
    print(f"{here}, torch {torch_version or 'not installed'}: installing {what} of {DIST}: {why}", flush=True)
    command = [sys.executable, "-m", "pip", "install", "-q", *reqs]
    if args.dry_run:
        print(shlex.join(command), flush=True)
        return 0
    return run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
