"""The ``grpo-notebooks`` command: run the notebook suite, rebuild a report, describe this machine,
list the notebooks' parameters, prepare the offline model.

``run`` executes the notebooks in order with papermill into a run folder. Everything it can check is
checked before the first notebook starts (``helpers.run_checks``); while a notebook trains or
evaluates, its progress is followed from the run folder's files (``helpers.progress``); at the end it
prints the evaluation table, what GRPO learned, the time and the report's path. Options follow
papermill (``-p name=value``, typed like the parameters cell) and TRL's CLI (``--model``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .runtime import PROFILES

EXAMPLES = """examples:
  grpo-notebooks run --profile cpu --out runs/default
  grpo-notebooks run --profile cpu --out runs/long -p grpo_steps=60 -p grpo_learning_rate=5e-5 --seed 1
  grpo-notebooks run --profile gpu --model Qwen/Qwen2.5-0.5B-Instruct --out runs/qwen
  grpo-notebooks run --out runs/default --resume     # after a crash or Ctrl-C: continue where it stopped
  grpo-notebooks params                               # every -p name, its default and what it does
"""


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


def _failure_line(nb: Path, exc: BaseException) -> str:
    cell = getattr(exc, "exec_count", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"{nb.name} failed in {where}: {ename}: {str(evalue).strip().splitlines()[-1] if evalue else ''}"


def kernel_config():
    """papermill's kernel settings: CurveZMQ transport encryption where the kernel supports it (ipykernel
    otherwise warns "Kernel is running over TCP without encryption" at every start)."""
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    config = Config()
    if KernelManager.class_traits().get("transport_encryption") is not None:  # jupyter_client >= 8.7
        config.KernelManager.transport_encryption = "auto"
    return config


def device_line() -> str:
    from .runtime import detect

    hw = detect()
    if hw.cuda:
        return f"{hw.gpu_name} ({hw.vram_gib} GiB, bf16 {'yes' if hw.bf16 else 'no'})"
    return f"CPU ({os.cpu_count()} cores), no GPU"


def run_suite(profile: str | None, out: str | None, first: int | None = None, last: int | None = None,
              seed: int | None = None, *,
              model: str | None = None, params: list[str] | tuple = (), resume: bool = False,
              fresh: bool = False, stream=None) -> Path:
    """Execute notebooks ``first``..``last`` in order with papermill into the run folder ``out``; return it.

    ``seed`` goes to every notebook that declares ``seed``, ``model`` to every one that declares ``model_name``,
    ``params`` (``"name=value"``) to every one that declares ``name``; ``first``/``last`` default to 1 and 8.
    ``resume``: skip the notebooks this run folder completed, continue GRPO from its newest checkpoint, and
    reuse the options it ran with, its notebook range included (those given again win); ``fresh``: start
    over (earlier checkpoints moved aside). Neither, in a folder that holds checkpoints, is refused.
    Executed notebooks go to ``<out>/notebooks/``, the lines printed to ``<out>/run.log``, times to
    ``<out>/timings.json``, options and progress to ``<out>/state.json``, the report to ``<out>/report.md``.
    """
    import papermill as pm

    from . import run_checks as rc
    from .grpo import CheckpointsExistError, check_checkpoints
    from .profiles import settings
    from .progress import LOG_NAME, Follower, RunLog
    from .runtime import use_profile

    began = time.perf_counter()
    rc.check_seed(seed)
    if resume and not out:
        raise rc.UsageError("--resume continues a run folder; fix: add --out <the run folder to continue>.")
    if out is None:
        try:
            out = f"runs/{use_profile(profile)}-{time.strftime('%Y%m%d-%H%M%S')}"
        except ValueError as exc:
            raise rc.UsageError(str(exc)) from None
    run_dir = rc.check_out(out)
    if resume and not run_dir.is_dir():
        raise rc.UsageError(f"--resume: {run_dir} does not exist; fix: pass the --out folder of the run to continue.")
    timings, state = rc.read_timings(run_dir), rc.read_state(run_dir)
    if resume:
        if not state:
            raise rc.UsageError(f"{run_dir} has no {rc.STATE_NAME}: no run of this command to resume there; fix: "
                                "leave out --resume (and use --from N to skip notebooks that finished).")
        profile = profile or state.get("profile")
        model = model if model is not None else state.get("model")
        seed = seed if seed is not None else state.get("seed")
        first = first if first is not None else state.get("first")
        last = last if last is not None else state.get("last")
        given = {p.partition("=")[0] for p in params}
        params = [p for p in state.get("params", []) if p.partition("=")[0] not in given] + list(params)
    try:
        profile = use_profile(profile)
    except ValueError as exc:  # GRPO_PROFILE set to an unknown name
        raise rc.UsageError(str(exc)) from None
    first, last = first or 1, last or 8
    if not 1 <= first <= last <= 99:
        raise rc.UsageError(f"--from {first} --to {last}: fix: 1 <= FROM <= TO.")
    source = notebooks_dir()
    chosen = select_notebooks(source, first, last)
    completed = [] if fresh else list(state.get("completed", []))
    log = RunLog(run_dir / LOG_NAME, stream)
    if resume:
        skipped = []
        while chosen and chosen[0].name in completed:
            skipped.append(chosen.pop(0).name)
        if not chosen:
            log(f"grpo-notebooks: every notebook {first:02d}..{last:02d} already completed in {run_dir}; nothing to "
                "resume (--fresh starts over, --from N reruns from notebook N)")
            log(_summary(run_dir, None))
            return run_dir
    declared = {nb.name: pm.inspect_notebook(str(nb)) for nb in chosen}
    values = rc.parse_parameters(list(params), declared)
    model_name, model_line = rc.model_plan(model, profile)
    mode = True if resume else False if fresh else None
    if any("resume" in specs for specs in declared.values()):
        try:
            check_checkpoints(run_dir / "grpo" / "checkpoints", mode)  # RunLayout would create the folder
        except CheckpointsExistError as exc:
            raise rc.UsageError(str(exc)) from None

    # -- everything checked: say what will be used, then run -------------------------------------------
    run_dir.mkdir(parents=True, exist_ok=True)
    log(f"grpo-notebooks run: profile {profile}")
    log(f"model: {model_line}")
    log(f"device: {device_line()}")
    log(f"run folder: {run_dir} (log: {LOG_NAME})")
    if resume:
        log(f"resuming: {', '.join(skipped) or 'no notebook'} already completed; continuing at {chosen[0].name}"
            + (f" with {' '.join('-p ' + p for p in params)}" if params else ""))
    state = {"profile": profile, "model": model, "seed": seed, "params": list(params), "first": first, "last": last,
             "completed": completed, "running": None, "failed": None}
    rc.write_json(run_dir / rc.STATE_NAME, state)
    os.environ["GRPO_RUN_DIR"] = str(run_dir)  # kernels inherit it: every notebook uses this folder
    executed_dir = run_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    sizes = settings(profile)
    totals = {"sft": _given(values, "sft_steps") or sizes.sft_steps,
              "grpo": _given(values, "grpo_steps") or sizes.grpo_steps}
    config = kernel_config()
    for i, nb in enumerate(chosen, 1):
        start = time.perf_counter()
        log(f"[{i}/{len(chosen)}] {nb.name} ...")
        state["completed"] = [c for c in state["completed"] if c[:2] < nb.name[:2]]  # later ones are stale now
        state["running"], state["failed"] = nb.name, None
        rc.write_json(run_dir / rc.STATE_NAME, state)
        given = {"profile": profile, "run_dir": str(run_dir), "seed": seed, "model_name": model_name, "resume": mode}
        parameters = {k: v for k, v in given.items() if k in declared[nb.name] and v is not None}
        parameters.update(values[nb.name])
        try:
            with Follower(run_dir, log, totals):
                pm.execute_notebook(str(nb), str(executed_dir / nb.name), parameters=parameters, cwd=str(source),
                                    kernel_name="python3", progress_bar=False, log_output=False, config=config)
        except (Exception, KeyboardInterrupt) as exc:  # papermill raises PapermillExecutionError (cell, error)
            timings[nb.name] = round(time.perf_counter() - start, 1)
            rc.write_json(run_dir / rc.TIMINGS_NAME, timings)
            state["running"], state["failed"] = None, nb.name
            rc.write_json(run_dir / rc.STATE_NAME, state)
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else _failure_line(nb, exc)
            line = (f"grpo-notebooks: {why}; the executed notebook is {executed_dir / nb.name}; "
                    f"continue with: grpo-notebooks run --out {out} --resume")
            log.close_bar()
            log(line, echo=False)
            raise SystemExit(line) from None
        timings[nb.name] = round(time.perf_counter() - start, 1)
        rc.write_json(run_dir / rc.TIMINGS_NAME, timings)
        state["completed"].append(nb.name)
        state["running"] = None
        rc.write_json(run_dir / rc.STATE_NAME, state)
        log(f"[{i}/{len(chosen)}] {nb.name} done in {timings[nb.name]:.1f} s")
    log(_summary(run_dir, time.perf_counter() - began))
    return run_dir


def _given(values: dict[str, dict], name: str):
    return next((v[name] for v in values.values() if v.get(name) is not None), None)


def _summary(run_dir: Path, seconds: float | None) -> str:
    from .report import summary, write_report

    write_report(run_dir)
    return summary(run_dir, seconds)


def report_command(run_dir: str) -> int:
    """``grpo-notebooks report RUN_DIR``: rebuild ``report.md`` from the run folder, print it and the summary."""
    from . import run_checks as rc

    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise rc.UsageError(f"{run_dir} is not a folder; fix: pass a run folder (e.g. runs/default).")
    if not any((path / name).exists() for name in ("timings.json", "eval", "grpo", "sft")):
        raise rc.UsageError(f"{run_dir} holds no run (no timings.json, eval/, grpo/ or sft/); "
                            "fix: pass the --out folder of a grpo-notebooks run.")
    rc.read_timings(path.resolve())
    text = _summary(path.resolve(), None)
    print((path.resolve() / "report.md").read_text(encoding="utf-8"))
    print(text)
    return 0


def params_command() -> int:
    """``grpo-notebooks params``: each notebook's parameters with their defaults and help (papermill's --help-notebook)."""
    import papermill as pm

    from .run_checks import RESERVED

    for nb in select_notebooks(notebooks_dir(), 1, 99):
        specs = pm.inspect_notebook(str(nb))
        print(nb.name)
        for name, spec in specs.items():
            how = f"(set with {RESERVED[name].split()[0]})" if name in RESERVED else f"-p {name}=..."
            print(f"  {name + ' = ' + spec['default']:<32} {how:<26} {spec.get('help', '')}".rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="grpo-notebooks", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="GRPO fine-tuning for step-by-step reasoning, as a notebook suite. `run` executes the "
        "notebooks in order into a run folder; `report` rebuilds a run's report; `info` describes this machine "
        "and its optional parts; `params` lists the notebooks' parameters; `prepare-model` fetches and converts "
        "the embedded offline model.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks 01-08 in order (papermill) into a run folder",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    run.add_argument("--profile", choices=PROFILES, help="default: detected from the hardware, or $GRPO_PROFILE")
    run.add_argument("--out", help="run folder (default: runs/<profile>-<time>)")
    run.add_argument("--model", metavar="NAME_OR_FOLDER", help="the model every notebook loads: a hub id "
                     "(e.g. Qwen/Qwen2.5-0.5B-Instruct), a local model folder, or 'embedded' (default: the profile's)")
    run.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                     help="set a notebook parameter (repeatable), typed like its parameters cell, e.g. "
                     "-p grpo_steps=60 -p grpo_learning_rate=5e-5; `grpo-notebooks params` lists them")
    run.add_argument("--from", dest="first", type=int, help="first notebook number (default 1)")
    run.add_argument("--to", dest="last", type=int, help="last notebook number (default 8)")
    run.add_argument("--seed", type=int, help="training seed for the notebooks that declare one (default: theirs)")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue a stopped run in --out: skip the notebooks "
                       "it completed, continue GRPO from its newest complete checkpoint, reuse its options")
    again.add_argument("--fresh", action="store_true", help="start over in --out (GRPO's earlier checkpoints are "
                       "moved aside); without --resume or --fresh a folder holding checkpoints is refused")
    report = sub.add_parser("report", help="rebuild and print the report of a run folder")
    report.add_argument("run_dir", metavar="RUN_DIR")
    sub.add_parser("info", help="this machine: profile, hardware, versions, and which optional parts are usable")
    sub.add_parser("params", help="list every notebook parameter -p can set, with its default and help")
    sub.add_parser("prepare-model", help="download and convert the embedded offline model into the cache")
    args = parser.parse_args(argv)

    if args.command == "info":
        from .machine import optional_parts
        from .runtime import describe

        print(describe())
        print(optional_parts())
    elif args.command == "prepare-model":
        from .loading import embedded_model_path

        print(embedded_model_path(full_check=True))  # sizes, headers and SHA-256 against the build's manifest
    elif args.command == "report":
        return report_command(args.run_dir)
    elif args.command == "params":
        return params_command()
    elif args.command == "run":
        run_suite(args.profile, args.out, args.first, args.last, seed=args.seed, model=args.model,
                  params=args.params, resume=args.resume, fresh=args.fresh)
    return 0


def entry() -> int:
    """The console script: ``main``, with the suite's one-line errors printed as one line (no traceback)."""
    from .data import DataUnavailableError
    from .model_checks import ModelLoadError
    from .runtime import ProfileError
    from .safety import DiskFullError, ReadOnlyError

    try:
        return main()
    except (ModelLoadError, DiskFullError, ReadOnlyError, ProfileError, DataUnavailableError) as exc:
        raise SystemExit(f"grpo-notebooks: {exc}") from None


if __name__ == "__main__":
    sys.exit(entry())
