"""Count the warnings of a ``grpo-notebooks run`` by kind (issue 31), in one run folder or two side by side.

    python benchmarks/gpu_warnings/count.py RUN_DIR [AFTER_RUN_DIR] [--console FILE [--console FILE]]

Reads every executed notebook in ``RUN_DIR/notebooks/`` (their stream outputs, stdout and stderr: vLLM logs to
stdout, Python warnings and transformers to stderr) and the run's console: ``--console FILE`` (the command's
terminal output, e.g. ``... 2>&1 | tee FILE``; it holds what the kernels wrote outside the notebooks, such as
torch's C++ warnings), else ``RUN_DIR/run.log``. With two run folders, give ``--console`` once per folder, in
the same order. Prints a markdown table: kind, count per run folder, and where it was seen (notebook numbers,
``console``). Known kinds are named; other Python warnings, vLLM WARNING/ERROR lines and torch C++ warnings are
grouped by their message with digits blanked.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

# (kind, pattern): the first that matches a line names it; a line counts once.
KNOWN = [
    ("Unsloth: should be imported before [{0}]", re.compile(r"Unsloth should be imported before \[([^\]]*)\]")),
    ("vLLM: unknown environment variable {0}", re.compile(r"Unknown vLLM environment variable detected: (\w+)")),
    ("transformers: `torch_dtype` is deprecated", re.compile(r"`torch_dtype` is deprecated")),
    ("transformers: both max_new_tokens and max_length", re.compile(r"Both `max_new_tokens` .*`max_length`")),
    ("c10d: hostname of the client socket", re.compile(r"hostname of the client socket cannot be retrieved")),
    ("{0}: invalid escape sequence", re.compile(r":\d+: (SyntaxWarning|DeprecationWarning): invalid escape sequence")),
    ("Unsloth: engine start retried", re.compile(r"Unsloth: Retrying vLLM to process|Retrying the load unchanged")),
    ("suite: engine start retried (its one line)", re.compile(r"vLLM engine: the first (?:\d+ )?starts? failed")),
    ("ipykernel: kernel over TCP without encryption", re.compile(r"Kernel is running over TCP without encryption")),
]
GENERIC = [
    ("{0}: {1}", re.compile(r"\b(\w*Warning): (.+)")),
    ("vLLM {0}: {1}", re.compile(r"^(WARNING|ERROR) \d\d-\d\d [\d:]+ \[[^\]]+\] (.+)")),
    ("torch C++ warning: {0}", re.compile(r"^(?:\[rank\d+\]:)?\[W\d{4} [\d:.]+ [\w.]+:\d+\] (.+)")),
]


def _package(line: str) -> str:
    """The package of the file a warning line names: the folder after ``site-packages``/``dist-packages`` or after
    an install folder named ``*site`` (``pip --target``), else the file's folder."""
    parts = [p for p in re.split(r"[/\\]", line.split(": ")[0].rsplit(":", 1)[0]) if p]
    for i, part in enumerate(parts[:-1]):
        if part in ("site-packages", "dist-packages") or part.endswith("site"):
            return parts[i + 1]
    return parts[-2] if len(parts) > 1 else "?"


def kind_of(line: str) -> str | None:
    """The kind of a warning line, or None for an ordinary line.

    >>> kind_of("/tmp/gsite/torchao/quantization/quant_api.py:1731: SyntaxWarning: invalid escape sequence '\\\\.'")
    'SyntaxWarning: invalid escape sequence (torchao)'
    >>> kind_of("WARNING 11-30 05:06:08 [envs.py:2096] Unknown vLLM environment variable detected: VLLM_ATTENTION_BACKEND")
    'vLLM: unknown environment variable VLLM_ATTENTION_BACKEND'
    >>> kind_of("[rank0]:[W1206 22:44:13.763765140 ProcessGroupNCCL.cpp:5188] Guessing device ID based on global rank.")
    'torch C++ warning: Guessing device ID based on global rank.'
    >>> kind_of("step 3/10 | reward 0.5") is None
    True
    """
    for name, pattern in KNOWN:
        if found := pattern.search(line):
            kind = name.format(*found.groups())
            return f"{kind} ({_package(line)})" if "invalid escape" in kind else kind
    for name, pattern in GENERIC:
        if found := pattern.search(line):
            return name.format(*(re.sub(r"\d+", "#", g.strip())[:70] for g in found.groups()))
    return None


def notebook_lines(path: Path) -> list[str]:
    """The lines of an executed notebook's stream outputs (stdout and stderr)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    lines = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = output.get("text", "")
                lines.extend(("".join(text) if isinstance(text, list) else text).splitlines())
    return lines


def sources(run_dir: Path, console: Path | None = None) -> list[tuple[str, list[str]]]:
    """``(label, lines)`` of one run folder: each executed notebook (labelled by its number) and the console
    (``console``), else ``run.log`` when there is one."""
    found = [(nb.name[:2], notebook_lines(nb)) for nb in sorted((run_dir / "notebooks").glob("*.ipynb"))]
    log = console if console is not None else run_dir / "run.log"
    if log.exists():
        found.append(("console" if console is not None else "run.log",
                      log.read_text(encoding="utf-8", errors="replace").splitlines()))
    return found


def tally(labelled: list[tuple[str, list[str]]]) -> tuple[Counter, dict[str, set[str]]]:
    """Counts per kind over ``(label, lines)`` sources, and the labels each kind was seen in."""
    counts: Counter = Counter()
    where: dict[str, set[str]] = defaultdict(set)
    for label, lines in labelled:
        for line in lines:
            kind = kind_of(line)
            if kind is not None:
                counts[kind] += 1
                where[kind].add(label)
    return counts, where


def count(run_dir: Path, console: Path | None = None) -> tuple[Counter, dict[str, set[str]]]:
    """Counts per kind in one run folder, and where each kind was seen."""
    return tally(sources(run_dir, console))


def table(runs: list[tuple[str, Counter, dict[str, set[str]]]]) -> str:
    kinds = sorted({k for _, counts, _ in runs for k in counts}, key=lambda k: (-sum(c[k] for _, c, _ in runs), k))
    head = "| kind | " + " | ".join(name for name, _, _ in runs) + " | seen in |"
    rows = [head, "|" + "---|" * (len(runs) + 2)]
    for kind in kinds:
        seen = sorted(set().union(*(w.get(kind, set()) for _, _, w in runs)))
        rows.append(f"| {kind.replace('|', '/')} | " + " | ".join(str(c[kind]) for _, c, _ in runs)
                    + f" | {' '.join(seen)} |")
    rows.append("| **all** | " + " | ".join(str(sum(c.values())) for _, c, _ in runs) + " | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run folder, or two (before, after)")
    parser.add_argument("--console", action="append", default=[], metavar="FILE",
                        help="the command's terminal output for each run folder, in order (else RUN_DIR/run.log)")
    args = parser.parse_args(argv)
    if args.console and len(args.console) != len(args.run_dirs):
        parser.error(f"{len(args.run_dirs)} run folder(s) but {len(args.console)} --console file(s); fix: one "
                     "--console per run folder, in the same order, or none.")
    runs = []
    for i, folder in enumerate(args.run_dirs):
        run_dir = Path(folder)
        if not (run_dir / "notebooks").is_dir():
            parser.error(f"{run_dir} has no notebooks/ folder: not a grpo-notebooks run folder; fix: pass the --out "
                         "folder of the run.")
        console = Path(args.console[i]) if args.console else None
        if console is not None and not console.is_file():
            parser.error(f"--console {console} does not exist; fix: the file the run's output was tee'd to.")
        runs.append((run_dir.name, *count(run_dir, console)))
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
