"""The ``grpo-notebooks`` command: run the notebook suite, describe this machine, prepare the offline model."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .runtime import PROFILES


def notebooks_dir() -> Path:
    """The suite's notebooks/ folder (the command runs from a checkout of the repository)."""
    from .runs import project_root

    root = project_root() or project_root(Path(__file__).parent)
    if root is None or not (root / "notebooks").is_dir():
        raise SystemExit("grpo-notebooks: no notebooks/ folder found; fix: run this inside a clone of the repository.")
    return root / "notebooks"


def select_notebooks(folder: Path, first: int, last: int) -> list[Path]:
    """The ``NN_*.ipynb`` notebooks numbered ``first``..``last``, in order."""
    chosen = [p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb")) if first <= int(p.name[:2]) <= last]
    if not chosen:
        raise SystemExit(f"grpo-notebooks: no notebook numbered {first}..{last} in {folder}.")
    return chosen


def _failure_line(nb: Path, exc: Exception) -> str:
    cell = getattr(exc, "exec_count", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"{nb.name} failed in {where}: {ename}: {str(evalue).strip().splitlines()[-1] if evalue else ''}"


def run_suite(profile: str | None, out: str | None, first: int = 1, last: int = 8, seed: int | None = None) -> Path:
    """Execute the notebooks in order with papermill into ``out``; return the run folder.

    ``seed`` (when given) goes to every notebook that declares a ``seed`` parameter (SFT and GRPO:
    data, LoRA initialisation and sampling); the held-out evaluation set stays the same.
    Each executed notebook is kept in ``<out>/notebooks/`` (also the failing one, with its error),
    timings go to ``<out>/timings.json``, and ``<out>/report.md`` is written at the end.
    """
    import papermill as pm

    from .runs import run_folder
    from .runtime import use_profile

    profile = use_profile(profile)
    run_dir = run_folder(out or f"runs/{profile}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.environ["GRPO_RUN_DIR"] = str(run_dir)  # kernels inherit it: every notebook uses this folder
    executed_dir = run_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    timings_path = run_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    source = notebooks_dir()
    chosen = select_notebooks(source, first, last)
    print(f"grpo-notebooks: profile {profile}, {len(chosen)} notebooks -> {run_dir}", flush=True)
    for i, nb in enumerate(chosen, 1):
        start = time.perf_counter()
        print(f"[{i}/{len(chosen)}] {nb.name} ...", flush=True)
        try:
            declared = pm.inspect_notebook(str(nb))  # pass only the parameters a notebook declares
            given = {"profile": profile, "run_dir": str(run_dir), "seed": seed}
            parameters = {k: v for k, v in given.items() if k in declared and v is not None}
            pm.execute_notebook(
                str(nb), str(executed_dir / nb.name), parameters=parameters,
                cwd=str(source), kernel_name="python3", progress_bar=False, log_output=False,
            )
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell and error
            timings[nb.name] = round(time.perf_counter() - start, 1)
            timings_path.write_text(json.dumps(timings, indent=2))
            raise SystemExit(
                f"grpo-notebooks: {_failure_line(nb, exc)}; the executed notebook is {executed_dir / nb.name}"
            ) from None
        timings[nb.name] = round(time.perf_counter() - start, 1)
        timings_path.write_text(json.dumps(timings, indent=2))
        print(f"[{i}/{len(chosen)}] {nb.name} done in {timings[nb.name]:.1f} s", flush=True)
    try:
        from .report import write_report
    except ImportError:  # the report module arrives with the main job
        pass
    else:
        print(f"report: {write_report(run_dir)}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="grpo-notebooks",
        description="GRPO fine-tuning for step-by-step reasoning, as a notebook suite. "
        "`run` executes the notebooks in order into a run folder; `info` prints this machine's "
        "profile and versions; `prepare-model` fetches and converts the embedded offline model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks 01-08 in order (papermill) into a run folder")
    run.add_argument("--profile", choices=PROFILES, help="default: detected from the hardware, or $GRPO_PROFILE")
    run.add_argument("--out", help="run folder (default: runs/<profile>-<time>)")
    run.add_argument("--from", dest="first", type=int, default=1, help="first notebook number (default 1)")
    run.add_argument("--to", dest="last", type=int, default=8, help="last notebook number (default 8)")
    run.add_argument("--seed", type=int, help="training seed for the notebooks that declare one (default: theirs)")
    sub.add_parser("info", help="print the profile, hardware and versions (one line)")
    sub.add_parser("prepare-model", help="download and convert the embedded offline model into the cache")
    args = parser.parse_args(argv)

    if args.command == "info":
        from .runtime import describe

        print(describe())
    elif args.command == "prepare-model":
        from .loading import embedded_model_path

        print(embedded_model_path())
    elif args.command == "run":
        if not 1 <= args.first <= args.last <= 99:
            parser.error("--from and --to must satisfy 1 <= FROM <= TO")
        run_suite(args.profile, args.out, args.first, args.last, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
