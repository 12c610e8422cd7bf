"""What ``grpo-notebooks run`` checks before any notebook runs, and the run folder's state.

Each check fails with :class:`UsageError`, one line naming the cause and the fix: the run folder
(``--out`` a file, or not writable), ``--seed`` out of range, ``-p name=value`` for a name no selected
notebook declares (the message lists the names that exist) or a value the parameters cell's type
refuses, ``--model`` that is neither a model folder nor reachable on the hub, an unreadable
``timings.json``/``state.json``. ``-p`` values are typed as papermill's own ``-p`` types them
(``True``/``False``/``None``, int, float, else text), then checked against the type of the
parameter's default in the notebook (a float parameter takes ``1`` as ``1.0``; a text parameter keeps
``16`` as text).

``<run>/state.json`` records the options of the run and which notebooks completed; ``--resume`` reads
it to skip what finished and to reuse the options. It and ``timings.json`` are written atomically.
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from helpers.files.atomic import atomic_write
from helpers.model.checks import ModelLoadError
from helpers.model.embedded import EMBEDDED_MODEL
from helpers.model.folder import check_model_folder
from helpers.model.names import resolve_name
from helpers.runtime.hardware import hub_reachable
from helpers.runtime.profiles import profile_settings

STATE_NAME, TIMINGS_NAME = "state.json", "timings.json"
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


def check_out(out: str | os.PathLike) -> Path:
    """The run folder's absolute path, refused when it is a file or cannot be written; not created here
    (the caller creates it once every check passed)."""
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


def parse_parameters(pairs: list[str], declared: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """``{notebook: {name: value}}`` for ``-p name=value`` pairs, checked against ``declared``
    (``{notebook: papermill.inspect_notebook(notebook)}`` of the notebooks that will run)."""
    out: dict[str, dict[str, Any]] = {nb: {} for nb in declared}
    known = sorted({name for specs in declared.values() for name in specs} - set(RESERVED))
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"-p {pair}: expected name=value; fix: e.g. -p grpo_steps=40.")
        if name in RESERVED:
            raise UsageError(f"-p {name}=... is set by the command itself; fix: use {RESERVED[name]}.")
        holders = [nb for nb, specs in declared.items() if name in specs]
        if not holders:
            raise UsageError(f"-p {name}: no notebook in this run declares a parameter {name!r}; "
                             f"fix: use one of {', '.join(known)} (grpo-notebooks params lists them with help).")
        for nb in holders:
            out[nb][name] = typed(name, raw, _default(declared[nb][name]), nb)
    return out


# ---------------------------------------------------------------------------------------------
# Files of the run folder
# ---------------------------------------------------------------------------------------------


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (``helpers.files.atomic.atomic_write``); nothing is written if
    it does not serialise."""
    atomic_write(path, json.dumps(data, indent=2))

def read_json(path: Path, what: str) -> dict:
    """``path``'s JSON object, ``{}`` if there is none; refused with the fix when it cannot be read."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
    except (OSError, ValueError) as exc:
        cause = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise UsageError(f"{path} is not readable JSON ({cause}); fix: move it away ({what}; the run can "
                         "go on without it) or use another --out.") from None
    return data


def read_timings(run_dir: Path) -> dict[str, float]:
    data = read_json(run_dir / TIMINGS_NAME, "it holds only the seconds per notebook")
    if not all(isinstance(v, int | float) for v in data.values()):
        raise UsageError(f"{run_dir / TIMINGS_NAME} holds something other than seconds per notebook; "
                         "fix: move it away or use another --out.")
    return data


def read_state(run_dir: Path) -> dict:
    return read_json(run_dir / STATE_NAME, "it records the options and the completed notebooks, for --resume")


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
