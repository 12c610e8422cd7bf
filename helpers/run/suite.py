"""``grpo-notebooks run``: execute the notebooks in order with papermill into a run folder, follow their
progress, and end with the held-out table and the report's path (:func:`run_suite`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from helpers.files.runs import project_root
from helpers.run import checks as rc
from helpers.run.progress import LOG_NAME, Follower, RunLog
from helpers.run.report import summary, write_report
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
    ``params`` (``"name=value"``) to every one that declares ``name``; ``first``/``last`` default to 1 and 8.
    ``resume``: skip the notebooks this run folder completed, continue GRPO from its newest checkpoint, and
    reuse the options it ran with, its notebook range included (those given again win); ``fresh``: start
    over (earlier checkpoints moved aside). Neither, in a folder that holds checkpoints, is refused.
    Executed notebooks go to ``<out>/notebooks/``, the lines printed to ``<out>/run.log``, times to
    ``<out>/timings.json``, options and progress to ``<out>/state.json``, the report to ``<out>/report.md``.
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
    sizes = profile_settings(profile)
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
    write_report(run_dir)
    return summary(run_dir, seconds)
