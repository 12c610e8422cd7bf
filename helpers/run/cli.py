"""The ``grpo-notebooks`` command: run the notebook suite, rebuild a report, describe this machine,
list the notebooks' parameters, prepare the offline model.

``run`` executes the notebooks in order with papermill into a run folder. Everything it can check is
checked before the first notebook starts (``helpers.run.checks``); while a notebook trains or
evaluates, its progress is followed from the run folder's files (``helpers.run.progress``); at the end it
prints the evaluation table, what GRPO learned, the time and the report's path. Options follow
papermill (``-p name=value``, typed like the parameters cell) and TRL's CLI (``--model``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.data.rows import DataUnavailableError
from helpers.files.disk import DiskFullError, ReadOnlyError
from helpers.files.lock import FolderInUseError
from helpers.model.checks import ModelLoadError
from helpers.model.embedded import embedded_model_path
from helpers.run import checks as rc
from helpers.run.checks import RESERVED
from helpers.run.info import optional_parts
from helpers.run.params import PARAMS
from helpers.run.report import RunFolderError
from helpers.run.stage import stage_command
from helpers.run.state import read_timings
from helpers.run.suite import finish_summary, notebooks_dir, run_suite, select_notebooks
from helpers.runtime.hardware import describe
from helpers.runtime.profiles import PROFILES, ProfileError, pick_profile

EXAMPLES = """examples:
  grpo-notebooks run --profile cpu --out runs/default
  grpo-notebooks run --profile cpu --out runs/long -p grpo_steps=60 -p grpo_learning_rate=5e-5 --seed 1
  grpo-notebooks run --profile gpu --model Qwen/Qwen2.5-0.5B-Instruct --out runs/qwen
  grpo-notebooks run --out runs/default --resume     # after a crash or Ctrl-C: continue where it stopped
  grpo-notebooks params                               # every -p name, its default and what it does
"""


def report_command(run_dir: str) -> int:
    """``grpo-notebooks report RUN_DIR``: rebuild ``report.md`` from the run folder, print it and the summary."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise rc.UsageError(f"{run_dir} is not a folder; fix: pass a run folder (e.g. runs/default).")
    if not any((path / name).exists() for name in ("timings.json", "eval", "grpo", "sft")):
        raise rc.UsageError(f"{run_dir} holds no run (no timings.json, eval/, grpo/ or sft/); "
                            "fix: pass the --out folder of a grpo-notebooks run.")
    read_timings(path.resolve())
    text = finish_summary(path.resolve(), None)  # a file it cannot read or write: one line naming it (RunFolderError)
    print((path.resolve() / "report.md").read_text(encoding="utf-8"))
    print(text)
    return 0


def params_command() -> int:
    """``grpo-notebooks params``: each notebook's parameters with their defaults and help (papermill's --help-notebook)."""
    import papermill as pm

    for nb in select_notebooks(notebooks_dir(), 1, 99):
        specs = pm.inspect_notebook(str(nb))
        print(nb.name)
        for name, spec in specs.items():
            how = f"(set with {RESERVED[name].split()[0]})" if name in RESERVED else f"-p {name}=..."
            takes = f" [takes {PARAMS[name].range_text(None)}]" if name in PARAMS else ""
            print(f"  {name + ' = ' + spec['default']:<32} {how:<26} {spec.get('help', '')}{takes}".rstrip())
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
    stage = sub.add_parser("stage", help="run one notebook's code in this process, e.g. under `accelerate launch` "
                           "(one process per GPU): accelerate launch -m helpers.run.cli stage 7 --out RUN")
    stage.add_argument("notebook", help="the notebook's number (e.g. 7) or its path")
    stage.add_argument("--out", required=True, help="the run folder (as for run: earlier notebooks' outputs are read)")
    stage.add_argument("--profile", choices=PROFILES, help="default: detected from the hardware, or $GRPO_PROFILE")
    stage.add_argument("--model", metavar="NAME_OR_FOLDER", help="as for run")
    stage.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                       help="a parameter of that notebook, typed like its parameters cell (repeatable)")
    stage.add_argument("--seed", type=int, help="the notebook's seed (default: its own)")
    stage_again = stage.add_mutually_exclusive_group()
    stage_again.add_argument("--resume", action="store_true", help="continue GRPO from its newest complete checkpoint")
    stage_again.add_argument("--fresh", action="store_true", help="start over (earlier checkpoints are moved aside)")
    args = parser.parse_args(argv)

    if args.command == "info":
        print(describe(pick_profile()))
        print(optional_parts())
    elif args.command == "prepare-model":
        print(embedded_model_path(full_check=True))  # sizes, headers and SHA-256 against the build's manifest
    elif args.command == "report":
        return report_command(args.run_dir)
    elif args.command == "params":
        return params_command()
    elif args.command == "stage":
        stage_command(args.notebook, args.out, profile=args.profile, model=args.model, params=args.params,
                      seed=args.seed, resume=True if args.resume else False if args.fresh else None)
    elif args.command == "run":
        run_suite(args.profile, args.out, args.first, args.last, seed=args.seed, model=args.model,
                  params=args.params, resume=args.resume, fresh=args.fresh)
    return 0


def entry() -> int:
    """The console script: ``main``, with the suite's one-line errors printed as one line (no traceback)."""
    try:
        return main()
    except (ModelLoadError, DiskFullError, ReadOnlyError, ProfileError, DataUnavailableError, FolderInUseError,
            RunFolderError) as exc:
        raise SystemExit(f"grpo-notebooks: {exc}") from None


if __name__ == "__main__":
    sys.exit(entry())
