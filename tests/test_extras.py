"""The `gpu` and `t4` extras resolve, for Linux x86-64 and Python 3.12, to exactly the versions that ran.

pip resolves each extra the way ``pip install ".[gpu]"`` would on the GPU machine (Python 3.12,
manylinux x86-64), but with ``--dry-run --report``: nothing is installed. The pins are the
combination that ran on the GPU machine (FACTS.md, issue 14); ``t4`` is the same without vLLM
(benchmarks/t4.md says why).

Slow on a cold cache: this machine's package index serves no PEP 658 metadata, so pip downloads
the large wheels (torch 531 MB, vLLM 304 MB) to read theirs: measured 106 s for ``gpu`` alone,
183 s for both extras at once (they run in parallel). The resolved versions are then cached for
a week in the project's cache folder, keyed by the project's dependencies, the pip flags and
pip's version: a warm run takes ~2 s. Skipped, with one reason, only where PyPI cannot be reached.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYTHON = "3.12"
# pip takes platform tags literally (manylinux_2_28 does not imply the older ones), so list them:
# manylinux 2.5 .. 2.35 covers Colab (Ubuntu 22.04, glibc 2.35) and the GPU machine.
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(35, 16, -1)] + [
    "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64",
    "manylinux_2_5_x86_64", "manylinux1_x86_64",
]
RAN = {  # what ran on the GPU machine (nvidia-h200, 2026-11-29)
    "torch": "2.11.0", "unsloth": "2026.10.9", "unsloth-zoo": "2026.10.9", "transformers": "5.17.0",
    "trl": "1.15.0", "datasets": "4.8.5", "peft": "0.21.0", "accelerate": "1.15.0",
}
PINS = {"gpu": {**RAN, "vllm": "0.26.0"}, "t4": RAN}
CACHE_DAYS = 7


def _cache_dir() -> Path:
    # the same folder as helpers.loading.cache_dir(), without importing torch for it
    root = Path(os.environ.get("GRPO_NOTEBOOKS_CACHE", Path.home() / ".cache" / "grpo-notebooks"))
    return root / "resolved-extras"


def _pip_args(extra: str, report: Path, target: Path) -> list[str]:
    platform_flags = [flag for tag in PLATFORMS for flag in ("--platform", tag)]
    return [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--progress-bar", "off",
            "--report", str(report), "--ignore-installed", "--only-binary=:all:",
            "--python-version", PYTHON, "--implementation", "cp", *platform_flags,
            "--target", str(target),  # pip < 24 refuses --platform without it; --dry-run writes nothing
            f"{REPO}[{extra}]"]


def _cache_key(extra: str) -> str:
    try:
        import tomllib

        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        inputs = [project["dependencies"], project["optional-dependencies"][extra]]
    except (ImportError, KeyError):  # Python 3.10, or no such extra: key on the whole file
        inputs = [(REPO / "pyproject.toml").read_text()]
    pip_version = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                                 text=True).stdout.split()[1]
    blob = json.dumps([inputs, extra, PYTHON, PLATFORMS, pip_version], sort_keys=True)
    return f"{extra}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def resolved() -> dict[str, dict]:
    """{extra: {"versions": {name: version}, "seconds": float, "cached": bool}} for every extra."""
    cache, out, running = _cache_dir(), {}, {}
    for extra in PINS:
        entry = cache / f"{_cache_key(extra)}.json"
        if entry.exists() and time.time() - entry.stat().st_mtime < CACHE_DAYS * 86400:
            out[extra] = {**json.loads(entry.read_text()), "cached": True}
    missing = [extra for extra in PINS if extra not in out]
    if missing and not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) is unreachable: the extras cannot be resolved here")
    with tempfile.TemporaryDirectory() as tmp:
        for extra in missing:  # both at once: the time goes into downloads
            report = Path(tmp) / f"{extra}.json"
            proc = subprocess.Popen(_pip_args(extra, report, Path(tmp) / f"target-{extra}"),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            running[extra] = (proc, report, time.monotonic())
        for extra, (proc, report, start) in running.items():
            log = proc.communicate(timeout=900)[0]
            seconds = round(time.monotonic() - start, 1)
            assert proc.returncode == 0, f"pip could not resolve .[{extra}]:\n{log[-3000:]}"
            versions = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                        for item in json.loads(report.read_text())["install"]}
            out[extra] = {"versions": versions, "seconds": seconds}
            cache.mkdir(parents=True, exist_ok=True)
            entry = cache / f"{_cache_key(extra)}.json"
            partial = entry.with_suffix(".tmp")
            partial.write_text(json.dumps(out[extra], indent=1, sort_keys=True))
            partial.replace(entry)
            out[extra]["cached"] = False
    return out


@pytest.mark.slow
@pytest.mark.parametrize("extra", sorted(PINS))
def test_extra_resolves_to_the_versions_that_ran(resolved, extra):
    got = resolved[extra]["versions"]
    assert {name: got.get(name) for name in PINS[extra]} == PINS[extra]
    print(f"\n.[{extra}]: {len(got)} packages, resolved in {resolved[extra]['seconds']} s"
          f"{' (cached)' if resolved[extra].get('cached') else ''}")


@pytest.mark.slow
def test_t4_extra_installs_no_vllm(resolved):
    assert "vllm" not in resolved["t4"]["versions"]
    assert resolved["gpu"]["versions"]["vllm"] == "0.26.0"
