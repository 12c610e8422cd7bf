"""What ``grpo-notebooks run`` checks before any notebook runs.

Each check fails with :class:`UsageError`, one line naming the cause and the fix: the run folder
(``--out`` empty, a file, not writable, or where the executed notebooks would overwrite the suite's own
``notebooks/``), ``--seed`` out of range, ``-p name=value`` for a name no selected notebook declares (the
message lists the names that exist) or a value its parameter does not take, ``--model`` that is neither a
model folder nor reachable on the hub, ``$GRPO_GSM8K_DIR`` set to a folder without the split a selected notebook
reads (04: train, 08: test where the profile evaluates on GSM8K). ``-p`` values are typed as papermill's own ``-p`` types them (``True``/``False``/
``None``, int, float, else text), then checked against the type of the parameter's default in the notebook
(a float parameter takes ``1`` as ``1.0``; a text parameter keeps ``16`` as text); a parameter in
``helpers.run.params.PARAMS`` (every one whose default is ``None``, and those with a range) is checked
against its entry instead: type, range or choices, an existing path.
The run folder's own files (``state.json``, ``timings.json``) are read and written by ``helpers.run.state``.
"""

from __future__ import annotations

import ast
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from helpers.data.gsm8k import GSM8K_DIR_ENV, check_gsm8k_path, default_gsm8k_dir
from helpers.data.rows import DataUnavailableError
from helpers.model.checks import ModelLoadError
from helpers.model.embedded import EMBEDDED_MODEL
from helpers.model.folder import check_model_folder
from helpers.model.names import resolve_name
from helpers.run.params import PARAMS, ParamError, check_together, check_value
from helpers.runtime.hardware import hub_reachable
from helpers.runtime.profiles import profile_settings

SEED_MAX = 2**32 - 1  # numpy's and torch's seed range
# Parameters the command sets itself: give them with the option instead of -p.
RESERVED = {"profile": "--profile", "run_dir": "--out", "model_name": "--model", "seed": "--seed",
            "resume": "--resume (continue) or --fresh (start over)"}


class UsageError(SystemExit):
    """A bad option, found before anything runs; the message is one line with the cause and the fix."""

    def __init__(self, message: str):
        super().__init__(f"grpo-notebooks: {message}")


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


def check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise UsageError(f"--seed {seed} is out of range (seeds are 0..{SEED_MAX}: numpy and torch refuse others); "
                         "fix: e.g. --seed 1.")


def check_gsm8k_env(notebooks: list[str], profile: str) -> None:
    """``$GRPO_GSM8K_DIR``, where set, holds what the selected notebooks will read: train.jsonl for 04, test.jsonl
    for 08 when the profile evaluates on GSM8K (refused here, not after the notebooks before them have run)."""
    splits = ["train"] * any(n.startswith("04_") for n in notebooks)
    if any(n.startswith("08_") for n in notebooks) and profile_settings(profile).eval_gsm8k_problems != 0:
        splits.append("test")
    try:
        folder = default_gsm8k_dir()
        for split in splits if folder else ():
            check_gsm8k_path(folder, split)
    except DataUnavailableError as exc:
        raise UsageError(f"${GSM8K_DIR_ENV}: {exc}") from None


def check_out(out: str | os.PathLike) -> Path:
    """The run folder's absolute path, refused when it is empty, a file or cannot be written; not created here
    (the caller creates it once every check passed)."""
    if not str(out).strip():
        raise UsageError("--out is empty; fix: pass a run folder, e.g. --out runs/default (or leave --out out: "
                         "runs/<profile>-<time>).")
    path = Path(out).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; fix: pass a folder path (it is created if missing).")
    existing = next(p for p in (path, *path.parents) if p.exists())
    problem = None if existing.is_dir() else f"{existing} is a file"
    if problem is None and existing == path:
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
    elif problem is None and not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    if problem:
        raise UsageError(f"--out {out} cannot be written ({problem}); fix: pass a folder you can write to.")
    return path.resolve()


def check_apart_from_source(run_dir: Path, source: Path, out: str | os.PathLike) -> None:
    """Refuse a run folder whose ``notebooks/`` (where the executed notebooks go) would be the suite's own notebooks
    folder ``source``, or inside it, or hold it: papermill would overwrite the source notebooks."""
    executed, source = (Path(run_dir) / "notebooks").resolve(), Path(source).resolve()
    if executed == source or source in executed.parents or executed in source.parents:
        how = "is" if executed == source else "is inside" if source in executed.parents else "holds"
        raise UsageError(f"--out {out}: the executed notebooks would go to {executed}, which {how} the suite's own "
                         f"notebooks folder {source} (they would be overwritten); fix: pass a run folder outside it, "
                         "e.g. --out runs/default.")


def resolve_type(raw: str) -> Any:
    """A ``-p`` value as papermill's command line types it.

    >>> [resolve_type(v) for v in ("True", "None", "3", "1e-4", "q8_0")]
    [True, None, 3, 0.0001, 'q8_0']
    """
    if raw in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[raw]
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _default(spec: dict) -> Any:
    try:
        return ast.literal_eval(spec.get("default", "None"))
    except (ValueError, SyntaxError):
        return None


def typed(name: str, raw: str, default: Any, where: str) -> Any:
    """``raw`` converted for a parameter whose default is ``default`` (``where`` names the notebook)."""
    value = resolve_type(raw)
    if default is None or value is None:
        return value
    kind = type(default).__name__
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        return raw
    else:
        return value
    if not ok:
        example = "True or False" if kind == "bool" else f"a {kind} like {default!r}"
        raise UsageError(f"-p {name}={raw}: {where} declares {name} as a {kind} (default {default!r}); "
                         f"fix: -p {name}=<{example}>.")
    return value


def parse_parameters(pairs: list[str], declared: dict[str, dict], profile: str, *,
                     replayed: Mapping[str, Path] | None = None) -> dict[str, dict[str, Any]]:
    """``{notebook: {name: value}}`` for ``-p name=value`` pairs, checked against ``declared``
    (``{notebook: papermill.inspect_notebook(notebook)}`` of the notebooks that will run): the name must be declared,
    the value must have the type of the parameter's default, and a parameter of ``helpers.run.params.PARAMS`` must
    be in its range for ``profile`` (a path must exist). ``replayed``: the names whose pair ``--resume`` took from the
    run's ``state.json``, and that file (named in a refusal)."""
    replayed = replayed or {}
    out: dict[str, dict[str, Any]] = {nb: {} for nb in declared}
    known = sorted({name for specs in declared.values() for name in specs} - set(RESERVED))
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"-p {pair}: expected name=value; fix: e.g. -p grpo_steps=40." + _replayed(replayed.get(name), name))
        if name in RESERVED:
            raise UsageError(f"-p {name}=... is set by the command itself; fix: use {RESERVED[name]}.")
        holders = [nb for nb, specs in declared.items() if name in specs]
        if not holders:
            raise UsageError(f"-p {name}: no notebook in this run declares a parameter {name!r}; "
                             f"fix: use one of {', '.join(known)} (grpo-notebooks params lists them with help).")
        for nb in holders:
            try:
                if name in PARAMS:
                    out[nb][name] = check_value(name, raw, profile, where=nb)
                else:
                    out[nb][name] = typed(name, raw, _default(declared[nb][name]), nb)
            except (ParamError, UsageError) as exc:
                message = str(exc).removeprefix("grpo-notebooks: ")
                raise UsageError(message + _replayed(replayed.get(name), name)) from None
    for nb, specs in declared.items():
        try:
            check_together(out[nb], {name: _default(spec) for name, spec in specs.items()})
        except ParamError as exc:
            where = replayed.get("samples_per_problem") or replayed.get("eval_temperature")
            raise UsageError(str(exc) + _replayed(where, "samples_per_problem")) from None
    return out


def _replayed(stored: Path | None, name: str) -> str:
    if stored is None:
        return ""
    return (f" (this value is replayed from {stored} by --resume: give -p {name}=<a good value> with --resume to "
            "replace it)")


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def model_plan(model: str | None, profile: str) -> tuple[str | None, str]:
    """``(model_name for the notebooks, the line that says what will load)``; refuses a model that cannot load.

    ``model``: ``--model`` (a hub id, a local folder, or ``embedded``); ``None``: the profile's model. Which model
    a name means is :func:`helpers.model.names.resolve_name`'s rule, the one the notebooks' loader applies.
    """
    embedded = f"embedded {EMBEDDED_MODEL} (offline)"
    resolved = resolve_name(model, profile)
    default = profile_settings(profile).model_name
    if resolved is None:
        if model:
            return model, f"{embedded}, as --model asked"
        if default is None:
            return None, f"{embedded}, the {profile} profile's model"
        return None, (f"!!! {default} (the {profile} profile model) was asked for, but the Hugging Face hub is not "
                      f"reachable: the {embedded} will load INSTEAD !!! (fix: connect to the internet, or "
                      "--model <a local model folder>)")
    if model is None:
        return None, f"{resolved} (the {profile} profile model, from the Hugging Face hub)"
    path = Path(model).expanduser()
    if path.exists():
        try:  # the folder check load_model makes: headers, shards, tokenizer, shapes (helpers.model.folder)
            check_model_folder(str(path))
        except ModelLoadError as exc:
            raise UsageError(f"--model {model}: {exc}") from None
        return str(path.absolute()), f"{path.absolute()} (local folder)"
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise UsageError(f"--model {model}: no such folder; fix: check the path, or pass a hub id like "
                         "'unsloth/Qwen2.5-1.5B-Instruct'.")
    if not hub_reachable():
        raise UsageError(f"--model {model}: not a local folder, and the Hugging Face hub is not reachable to "
                         "download it; fix: connect to the internet, pass a local model folder, or leave --model out "
                         f"for the {embedded}.")
    return model, f"{model} (from the Hugging Face hub)"
