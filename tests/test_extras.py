"""The `gpu` and `t4` extras resolve, for Linux x86-64 and Python 3.12, to exactly the versions that ran.

Each extra is resolved the way ``pip install ".[gpu]"`` would on the GPU machine (Python 3.12, manylinux
x86-64), without installing anything: ``uv pip compile`` with ``--python-platform``. uv, which the README's
test command installs, reads wheel metadata with range requests: 15 s for ``gpu`` from an empty cache here,
where ``pip install --dry-run --report`` took 106 s (this machine's index serves no PEP 658 metadata, so pip
downloads torch's 531 MB and vLLM's 304 MB wheels to read theirs). Both resolved to the same pins (helper
"pins", 2026-11-30). The pins are the combination that ran on the GPU machine (benchmarks/gpu_e2e/README.md);
``t4`` is the same without vLLM (benchmarks/t4.md says why). Skipped, with one reason, only where PyPI cannot
be reached or uv is missing.
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
