"""The `gpu` and `t4` extras resolve, for Linux x86-64 and Python 3.12, to exactly the versions that ran.

Each extra is resolved the way ``pip install ".[gpu]"`` would on the GPU machine (Python 3.12, manylinux
x86-64), without installing anything: ``uv pip compile`` with ``--python-platform``. uv, which the README's
test command installs, reads wheel metadata with range requests: 15 s for ``gpu`` from an empty cache here,
where ``pip install --dry-run --report`` took 106 s (this machine's index serves no PEP 658 metadata, so pip
downloads torch's 531 MB and vLLM's 304 MB wheels to read theirs). Both resolved to the same pins (helper
"pins", 2026-11-30). The pins are the combination that ran on the GPU machine (benchmarks/learning_gpu/README.md);
``t4`` is the same without vLLM (benchmarks/t4/vllm_on_t4.md says why). And what the notebooks' first cell installs on a
Colab T4 (``helpers.runtime.install``) resolves with pip itself beside Colab's torch 2.11.0+cu128. Skipped, with
one reason, only where PyPI cannot be reached or uv is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYTHON = "3.12"
PLATFORM = "x86_64-manylinux_2_28"  # the GPU machine and Colab (glibc 2.35) both accept manylinux_2_28 wheels
RAN = {  # what ran on the GPU machine (nvidia-h200, 2026-11-29/30)
    "torch": "2.11.0", "unsloth": "2026.10.9", "unsloth-zoo": "2026.10.9", "transformers": "5.17.0",
    "trl": "1.15.0", "datasets": "4.8.5", "peft": "0.21.0", "accelerate": "1.15.0",
}
PINS = {"gpu": {**RAN, "vllm": "0.26.0"}, "t4": RAN}


def _uv() -> str | None:
    near = Path(sys.executable).with_name("uv")
    return str(near) if near.exists() else shutil.which("uv")


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[str, dict]:
    """{extra: {"versions": {name: version}, "seconds": float}} for every extra."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed (the README's test command installs it): cannot resolve the extras")
    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) is unreachable: the extras cannot be resolved here")
    out = {}
    for extra in PINS:
        lock = tmp_path_factory.mktemp("extras") / f"{extra}.txt"
        start = time.monotonic()
        proc = subprocess.run([uv, "pip", "compile", str(REPO / "pyproject.toml"), "--extra", extra,
                               "--python-version", PYTHON, "--python-platform", PLATFORM, "--no-header",
                               "--no-annotate", "--quiet", "-o", str(lock)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"uv could not resolve .[{extra}]:\n{proc.stderr[-3000:]}"
        versions = {}
        for line in lock.read_text().splitlines():
            if "==" in line and not line.startswith(("#", " ")):
                name, version = line.split(";")[0].strip().split("==")
                versions[canonicalize_name(name)] = version
        out[extra] = {"versions": versions, "seconds": round(time.monotonic() - start, 1)}
    return out


@pytest.mark.parametrize("extra", sorted(PINS))
def test_extra_resolves_to_the_versions_that_ran(resolved, extra):
    got = resolved[extra]["versions"]
    assert {name: got.get(name) for name in PINS[extra]} == PINS[extra]
    print(f"\n.[{extra}]: {len(got)} packages, resolved in {resolved[extra]['seconds']} s")


def test_t4_extra_installs_no_vllm(resolved):
    assert "vllm" not in resolved["t4"]["versions"]
    assert resolved["gpu"]["versions"]["vllm"] == "0.26.0"


# Colab's torch (googlecolab/backend-info, 2026-08: torch 2.11.0+cu128, triton 3.6.0). Its wheel lives on
# download.pytorch.org, which this machine cannot reach; a stub distribution stands in for it: same name and
# version, the requirements of torch 2.11.0's wheels except the NVIDIA CUDA 12 libraries (Colab has them; their
# exact pins are not readable here), so pip's resolver sees what it sees on Colab, where this torch is installed.
COLAB_TORCH = "2.11.0+cu128"
COLAB_TORCH_REQUIRES = ["filelock", "typing-extensions", "setuptools; python_version >= '3.12'", "sympy",
                        "networkx", "jinja2", "fsspec", "triton==3.6.0; platform_system == 'Linux'"]
TARGET_ENV = {"python_version": PYTHON, "python_full_version": f"{PYTHON}.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def _stub_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A minimal valid wheel of ``name`` ``version`` (one empty module) that declares ``requires``."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"",
        f"{info}/METADATA": ("Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
                             + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests/test_extras.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()] + [f"{info}/RECORD,,"]
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_t4_extra_installs_beside_colabs_torch(tmp_path):
    """What Colab's pip does with what the first cell installs on a T4: ``pip install --dry-run`` (pip's own
    resolver, CPython 3.12, manylinux x86-64 wheels only) of the requirements ``helpers.runtime.install`` installs
    for the `t4` extra, with Colab's torch 2.11.0+cu128 as the only torch on offer, resolves; it keeps that torch,
    brings no CUDA 13 library, and gives the pinned stack. It proves the pins and their dependency trees admit
    Colab's torch; not that the wheels import there (no Colab here)."""
    from helpers.runtime.install import choose_extra, pyproject_requirements, requirements

    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) is unreachable: the extra cannot be resolved here")
    extra = choose_extra("7.5", "550.54.15", COLAB_TORCH)
    assert extra == "t4"
    reqs = requirements(extra, pyproject_requirements(REPO / "pyproject.toml"), TARGET_ENV)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    _stub_wheel(stubs, "torch", COLAB_TORCH, COLAB_TORCH_REQUIRES)
    platforms = [a for v in range(35, 4, -1) for a in ("--platform", f"manylinux_2_{v}_x86_64")]
    report = tmp_path / "report.json"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                           "--target", str(tmp_path / "target"), "--report", str(report),
                           "--python-version", PYTHON, "--implementation", "cp", *platforms, "--only-binary=:all:",
                           "--find-links", str(stubs), f"torch=={COLAB_TORCH}", *reqs],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"pip could not resolve the t4 extra beside torch {COLAB_TORCH}:\n{proc.stderr[-3000:]}"
    import json

    chosen = {canonicalize_name(i["metadata"]["name"]): (i["metadata"]["version"], i["download_info"]["url"])
              for i in json.loads(report.read_text())["install"]}
    assert chosen["torch"][0] == COLAB_TORCH and chosen["torch"][1].startswith("file:")
    assert {name: chosen.get(name, (None,))[0] for name in PINS["t4"] if name != "torch"} == {
        name: version for name, version in PINS["t4"].items() if name != "torch"}
    assert "vllm" not in chosen and chosen["triton"][0] == "3.6.0"
    cuda13 = sorted(n for n in chosen if n.startswith(("nvidia-", "cuda-")))
    assert cuda13 == [], cuda13  # PyPI's torch 2.11.0 would bring cuda-toolkit 13 and nvidia-*-cu13
    print(f"\nt4 extra beside torch {COLAB_TORCH}: {len(chosen)} packages, pip resolved in "
          f"{time.monotonic() - start:.0f} s")
