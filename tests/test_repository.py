"""The repository as a user receives it, checked on its tracked files: ``benchmarks/`` is a results shelf (one
folder per study, each with its README; every summary recomputed from the study's raw archive and every table in the
README as its summarizer prints it; under 1.5 MB in all), the paths the repository names inside ``benchmarks/``
exist."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
LIMIT_BYTES = 1_500_000
# What a study folder may hold: its README and other Markdown, scripts, configs and summaries, one raw archive,
# figures a README shows. Raw logs (.log, .jsonl, .txt) go into the archive.
SHELF_SUFFIXES = (".md", ".py", ".sh", ".json", ".csv", ".tar.xz", ".png")
BENCHMARK_PATH = re.compile(r"benchmarks/[A-Za-z0-9_./-]*")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _tracked(*paths: str) -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc}): these checks read the tracked files")
    return [p for p in out.stdout.decode().split("\0") if p]


def _text(path: str) -> str | None:
    try:
        return (REPO / path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None


def _studies() -> list[str]:
    return sorted({p.split("/")[1] for p in _tracked("benchmarks") if p.count("/") >= 2})


def test_benchmarks_stay_small():
    sizes = {p: (REPO / p).stat().st_size for p in _tracked("benchmarks")}
    largest = sorted(sizes, key=sizes.get, reverse=True)[:5]
    assert sum(sizes.values()) < LIMIT_BYTES, (
        f"benchmarks/ holds {sum(sizes.values()):,} bytes of tracked files (limit {LIMIT_BYTES:,}); largest: "
        + ", ".join(f"{p} {sizes[p]:,}" for p in largest) + "; fix: keep raw files in one raw.tar.xz per study")


def test_every_study_folder_has_a_readme():
    tracked = set(_tracked("benchmarks"))
    studies = _studies()
    assert studies, "no study folder under benchmarks/"
    missing = [s for s in studies if f"benchmarks/{s}/README.md" not in tracked]
    assert not missing, f"study folders without a README.md: {missing}"


def test_study_folders_hold_no_loose_raw_files():
    tracked = _tracked("benchmarks")
    loose = [p for p in tracked if p.count("/") >= 2 and not p.endswith(SHELF_SUFFIXES)]
    assert not loose, f"raw files outside a study's raw.tar.xz: {loose}"
    archives = [p for p in tracked if p.endswith(".tar.xz")]
    per_study = {s: [p for p in archives if p.split("/")[1] == s] for s in _studies()}
    assert all(len(a) <= 1 for a in per_study.values()), f"more than one archive in a study: {per_study}"
    markdown = "\n".join(_text(p) or "" for p in _tracked("*.md"))
    unshown = [p for p in tracked if p.endswith(".png") and Path(p).name not in markdown]
    assert not unshown, f"figures no README shows: {unshown}"


def test_paths_into_benchmarks_exist():
    tracked = _tracked()
    present = set(tracked) | {str(Path(p).parent) + "/" for p in tracked} | {"benchmarks/"}
    for p in tracked:  # every folder above a tracked file, with a trailing slash
        parts = p.split("/")[:-1]
        present |= {"/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)}
    found = set()
    for path in tracked:
        text = _text(path)
        if text is None or path == "tests/test_repository.py":
            continue
        for match in BENCHMARK_PATH.findall(text):
            name = match.rstrip(".")
            if name not in present and name + "/" not in present:
                found.add((path, name))
    assert not found, f"paths into benchmarks/ that do not exist: {sorted(found)}"


def test_links_of_the_benchmark_readmes_resolve():
    broken = []
    for path in _tracked("benchmarks/*.md", "benchmarks/**/*.md", "README.md"):
        for target in MARKDOWN_LINK.findall(_text(path) or ""):
            if "://" in target:
                continue
            if not (REPO / path).parent.joinpath(target).resolve().exists():
                broken.append((path, target))
    assert not broken, f"links to files that do not exist: {broken}"


def test_benchmark_scripts_compile(tmp_path):
    for path in _tracked("benchmarks/*.py", "benchmarks/**/*.py"):
        py_compile.compile(str(REPO / path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    for path in _tracked("benchmarks/*.sh", "benchmarks/**/*.sh"):
        result = subprocess.run(["bash", "-n", str(REPO / path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stderr}"


def _summarizer(study: str):
    spec = importlib.util.spec_from_file_location(f"summarize_{study}", BENCHMARKS / study / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("study", sorted(p.parent.name for p in BENCHMARKS.glob("*/raw.tar.xz")))
def test_study_summary_is_recomputed_from_its_raw_files(study):
    """summary.json's tables are what summarize.py computes from raw.tar.xz, and each table it prints stands in the
    study's README as printed: no number in them is typed by hand."""
    folder = BENCHMARKS / study
    assert (folder / "summarize.py").exists(), f"{study} has a raw.tar.xz but no summarize.py to compute its tables"
    module = _summarizer(study)
    sys.path.insert(0, str(BENCHMARKS))
    from shelf import raw_folder

    with raw_folder(folder / "raw.tar.xz") as raw:
        tables = json.loads(json.dumps(module.build(raw)))
    summary = json.loads((folder / "summary.json").read_text())
    assert {"question", "device", "date", "commit"} <= set(summary["about"]), f"{study}/summary.json: about"
    assert tables == summary["tables"], (
        f"{study}/summary.json differs from its raw files; fix: python benchmarks/{study}/summarize.py --write")
    readme = (folder / "README.md").read_text()
    for name, table in module.render(tables).items():
        assert table in readme, f"{study}/README.md lacks the table {name!r} as summarize.py prints it"


def test_readme_cpu_results_are_the_archived_default_runs():
    """The README's cpu Results table is learning_cpu's table of the default runs (drop14-*) as printed from its raw
    files: a re-measured row must bring its run folder into that archive."""
    module = _summarizer("learning_cpu")
    tables = json.loads((BENCHMARKS / "learning_cpu" / "summary.json").read_text())["tables"]
    assert module.render(tables)["drop14"] in (REPO / "README.md").read_text()


def test_a_missing_raw_archive_is_a_one_line_refusal(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    from shelf import raw_folder

    with pytest.raises(SystemExit) as refusal, raw_folder(tmp_path / "raw.tar.xz"):
        pass
    assert "fix:" in str(refusal.value) and "\n" not in str(refusal.value)


@pytest.mark.slow
@pytest.mark.parametrize("side", ["trl", "suite"])
def test_grpo_gpu_benchmark_runs_on_a_cpu(tmp_path, side):
    """grpo_speed_gpu/grpo_gpu.py, as its README runs it, on a tiny random-weight shape on the CPU: it builds the
    shape with the embedded model's tokenizer and times two GRPO steps through the package's current code path."""
    out = tmp_path / f"{side}.json"
    env = {**os.environ, "GRPO_GPU_MODELS": str(tmp_path / "models"), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    args = ["--profile", "cpu"] if side == "suite" else []
    result = subprocess.run(
        [sys.executable, "benchmarks/grpo_speed_gpu/grpo_gpu.py", "run", "--side", side, "--shape", "tiny",
         "--G", "2", "--L", "8", "--steps", "2", *args, "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(out.read_text())
    assert (row["side"], row["steps"], row["tokens"]) == (side, 2, [16, 16])
    assert row["median_step_s"] > 0 and row["rollout_tok_s"] > 0
    tokenizer = json.loads((tmp_path / "models" / "tiny" / "tokenizer_config.json").read_text())
    assert tokenizer["pad_token"] == "<|im_end|>"
