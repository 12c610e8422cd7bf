"""``grpo-notebooks run``: execute the notebooks in order with papermill into a run folder, follow their
progress, and end with the held-out table and the report's path (:func:`run_suite`)."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path

from helpers.files.disk import DiskFullError, ReadOnlyError, disk_error
from helpers.files.lock import FolderInUseError, FolderLock, folder_lock
from helpers.files.runs import project_root
from helpers.run import checks as rc
from helpers.run.executed import atomic_notebook_saves
from helpers.run.params import PARAMS
from helpers.run.progress import LOG_NAME, Follower, RunLog
from helpers.run.report import RunFolderError, summary, write_report
from helpers.run.state import STATE_NAME, TIMINGS_NAME, read_state, read_timings, write_json
from helpers.runtime.hardware import detect
from helpers.runtime.profiles import profile_settings, use_profile
from helpers.train.checkpoints import CheckpointsExistError, check_checkpoints


def notebooks_dir() -> Path:
    """The suite's notebooks/ folder (the command runs from a checkout of the repository)."""
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
    ``params`` (``"name=value"``, checked against ``helpers.run.params.PARAMS``) to every one that declares ``name``;
    ``first``/``last`` default to 1 and 8. ``resume``: skip the notebooks this run folder completed, continue GRPO from
    its newest checkpoint, and reuse the options it ran with, its notebook range included (those given again win);
    ``fresh``: start over (earlier checkpoints moved aside). Neither, in a folder that holds checkpoints, is refused.
    Executed notebooks go to ``<out>/notebooks/`` (each save atomic: ``helpers.run.executed``), the lines printed to
    ``<out>/run.log``, times to ``<out>/timings.json``, options and progress to ``<out>/state.json``, the report to
    ``<out>/report.md``. One run at a time in a folder (``helpers.files.lock``: a second is refused naming the first).
    A full or read-only disk stops the run with one line that names the folder and says to continue with ``--resume``.
    """
    import papermill as pm

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
    source = notebooks_dir()
    rc.check_apart_from_source(run_dir, source, out)
    if resume and not run_dir.is_dir():
        raise rc.UsageError(f"--resume: {run_dir} does not exist; fix: pass the --out folder of the run to continue.")
    with ExitStack() as held:
        lock = _lock(run_dir, out, held) if run_dir.is_dir() else None  # before reading what another run writes
        timings, state = read_timings(run_dir), read_state(run_dir)
        replayed: dict[str, Path] = {}
        if resume:
            if not state:
                raise rc.UsageError(f"{run_dir} has no {STATE_NAME} (or an empty one): no run of this command to "
                                    "resume there; fix: leave out --resume (and use --from N to skip notebooks that "
                                    "finished).")
            profile = profile or state.get("profile")
            model = model if model is not None else state.get("model")
            seed = seed if seed is not None else state.get("seed")
            first = first if first is not None else state.get("first")
            last = last if last is not None else state.get("last")
            given = {p.partition("=")[0].strip() for p in params}
            kept = [p for p in state.get("params", []) if p.partition("=")[0].strip() not in given]
            replayed = {p.partition("=")[0].strip(): run_dir / STATE_NAME for p in kept}
            params = kept + list(params)
        try:
            profile = use_profile(profile)
        except ValueError as exc:  # GRPO_PROFILE set to an unknown name
            raise rc.UsageError(str(exc)) from None
        first, last = first or 1, last or 8
        if not 1 <= first <= last <= 99:
            raise rc.UsageError(f"--from {first} --to {last}: fix: 1 <= FROM <= TO.")
        chosen = select_notebooks(source, first, last)
        completed = [] if fresh else list(state.get("completed", []))
        log = RunLog(run_dir / LOG_NAME, stream)
        if resume:
            skipped = []
            while chosen and chosen[0].name in completed:
                skipped.append(chosen.pop(0).name)
            if not chosen:
                log(f"grpo-notebooks: every notebook {first:02d}..{last:02d} already completed in {run_dir}; nothing "
                    "to resume (--fresh starts over, --from N reruns from notebook N)")
                log(finish_summary(run_dir, None))
                return run_dir
        declared = {nb.name: pm.inspect_notebook(str(nb)) for nb in chosen}
        values = rc.parse_parameters(list(params), declared, profile, replayed=replayed)
        params = [_stored(p, values) for p in params]  # a path as the notebooks get it (absolute)
        model_name, model_line = rc.model_plan(model, profile)
        rc.check_gsm8k_env([nb.name for nb in chosen], profile)
        mode = True if resume else False if fresh else None
        if any("resume" in specs for specs in declared.values()):
            try:
                check_checkpoints(run_dir / "grpo" / "checkpoints", mode)  # RunLayout would create the folder
            except CheckpointsExistError as exc:
                raise rc.UsageError(str(exc)) from None

        # -- everything checked: say what will be used, then run ------------------------------------------
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = lock or _lock(run_dir, out, held)
            log(f"grpo-notebooks run: profile {profile}")
            if lock.takeover_line:
                log(lock.takeover_line)
            log(f"model: {model_line}")
            log(f"device: {device_line()}")
            log(f"run folder: {run_dir} (log: {LOG_NAME})")
            if resume:
                log(f"resuming: {', '.join(skipped) or 'no notebook'} already completed; continuing at "
                    f"{chosen[0].name}" + (f" with {' '.join('-p ' + p for p in params)}" if params else ""))
            state = {"profile": profile, "model": model, "seed": seed, "params": list(params), "first": first,
                     "last": last, "completed": completed, "running": None, "failed": None}
            write_json(run_dir / STATE_NAME, state)
            given_values = {"profile": profile, "run_dir": str(run_dir), "seed": seed, "model_name": model_name,
                            "resume": mode}
            _execute(pm, chosen, declared, values, given_values, run_dir, out, source, log, timings, state, profile)
            log(finish_summary(run_dir, time.perf_counter() - began))
        except OSError as exc:  # the command's own files (state, timings, log, report) on a full or read-only disk
            raise SystemExit(_stopped_line(exc, run_dir, out, "the run's files")) from None
    return run_dir


def _execute(pm, chosen: list[Path], declared: dict, values: dict, given: dict, run_dir: Path, out, source: Path,
             log: RunLog, timings: dict, state: dict, profile: str) -> None:
    """Run each notebook of ``chosen`` with papermill, following its progress and recording times and state."""
    os.environ["GRPO_RUN_DIR"] = str(run_dir)  # kernels inherit it: every notebook uses this folder
    executed_dir = run_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    atomic_notebook_saves(executed_dir)
    sizes = profile_settings(profile)
    totals = {"sft": _given(values, "sft_steps") or sizes.sft_steps,
              "grpo": _given(values, "grpo_steps") or sizes.grpo_steps}
    config = kernel_config()
    for i, nb in enumerate(chosen, 1):
        start = time.perf_counter()
        log(f"[{i}/{len(chosen)}] {nb.name} ...")
        state["completed"] = [c for c in state["completed"] if c[:2] < nb.name[:2]]  # later ones are stale now
        state["running"], state["failed"] = nb.name, None
        write_json(run_dir / STATE_NAME, state)
        parameters = {k: v for k, v in given.items() if k in declared[nb.name] and v is not None}
        parameters.update(values[nb.name])
        try:
            with Follower(run_dir, log, totals):
                pm.execute_notebook(str(nb), str(executed_dir / nb.name), parameters=parameters, cwd=str(source),
                                    kernel_name="python3", progress_bar=False, log_output=False, config=config)
        except (Exception, KeyboardInterrupt) as exc:  # papermill raises PapermillExecutionError (cell, error)
            timings[nb.name] = round(time.perf_counter() - start, 1)
            state["running"], state["failed"] = None, nb.name
            for name, data in ((TIMINGS_NAME, timings), (STATE_NAME, state)):
                try:  # best effort: on a full disk these fail too, and must not hide why the run stopped
                    write_json(run_dir / name, data)
                except OSError:
                    pass
            log.close_bar()
            if isinstance(exc, KeyboardInterrupt):
                line = f"grpo-notebooks: interrupted; the executed notebook is {executed_dir / nb.name}; " + _again(out)
            elif getattr(exc, "ename", None) is None and disk_error(exc, executed_dir) is not None:
                cell = exc.__context__ if getattr(exc.__context__, "ename", None) else None  # papermill saves after
                prefix = f"{_failure_line(nb, cell)}, then " if cell is not None else f"{nb.name} stopped: "
                line = _stopped_line(exc, executed_dir, out, f"the executed notebook {nb.name}", prefix=prefix)
            else:
                line = (f"grpo-notebooks: {_failure_line(nb, exc)}; the executed notebook is {executed_dir / nb.name}; "
                        + _again(out))
            log(line, echo=False)
            raise SystemExit(line) from None
        timings[nb.name] = round(time.perf_counter() - start, 1)
        write_json(run_dir / TIMINGS_NAME, timings)
        state["completed"].append(nb.name)
        state["running"] = None
        write_json(run_dir / STATE_NAME, state)
        log(f"[{i}/{len(chosen)}] {nb.name} done in {timings[nb.name]:.1f} s")


def _again(out) -> str:
    return f"continue with: grpo-notebooks run --out {out} --resume"


def _stopped_line(exc: BaseException, folder: Path, out, what: str, prefix: str = "") -> str:
    """One line for a write that failed on a full or read-only disk (else the error's own first line), ending with how
    to continue."""
    err = exc if isinstance(exc, DiskFullError | ReadOnlyError) else disk_error(
        exc, folder, what=what, fix=f"free space on that disk (or make it writable), then {_again(out)}")
    if err is None:
        raise exc
    text = str(err) if _again(out) in str(err) else f"{err}; {_again(out)}"
    return f"grpo-notebooks: {prefix}{text}"


def _lock(run_dir: Path, out, held: ExitStack) -> FolderLock:
    try:
        return held.enter_context(folder_lock(run_dir, fix="wait for it to finish or stop it (Ctrl-C in its "
                                              "terminal, or kill its pid), or use another --out"))
    except FolderInUseError as exc:
        raise rc.UsageError(f"--out {out}: {exc}") from None


def _stored(pair: str, values: dict[str, dict]) -> str:
    """``pair`` as state.json keeps it: a path parameter with the absolute path the notebooks were given."""
    name = pair.partition("=")[0].strip()
    if name in PARAMS and PARAMS[name].kind == "path":
        value = _given(values, name)
        return f"{name}={value}" if value is not None else pair
    return pair


def _given(values: dict[str, dict], name: str):
    return next((v[name] for v in values.values() if v.get(name) is not None), None)


def finish_summary(run_dir: Path, seconds: float | None) -> str:
    try:
        write_report(run_dir)
        return summary(run_dir, seconds)
    except RunFolderError as exc:
        raise rc.UsageError(f"the report: {exc}") from None
