"""The run folder's own files: ``<run>/state.json`` records the options of a ``grpo-notebooks run`` and which
notebooks completed (``--resume`` reads it to skip what finished and to reuse the options, checked again), and
``<run>/timings.json`` the seconds per notebook. Both are written atomically; a damaged one is refused in one line
(:class:`helpers.run.checks.UsageError`) that names the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.files.atomic import atomic_write
from helpers.run.checks import UsageError

STATE_NAME, TIMINGS_NAME = "state.json", "timings.json"


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


def seconds_per_notebook(data: Any) -> bool:
    """Whether ``data`` is what ``timings.json`` holds: an object of numbers (``true`` is not a number)."""
    return isinstance(data, dict) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in data.values())


def read_timings(run_dir: Path) -> dict[str, float]:
    data = read_json(run_dir / TIMINGS_NAME, "it holds only the seconds per notebook")
    if not seconds_per_notebook(data):
        raise UsageError(f"{run_dir / TIMINGS_NAME} holds something other than seconds per notebook; "
                         "fix: move it away or use another --out.")
    return data


_STATE_FIELDS = {  # field: (check, what it must be)
    "profile": (lambda v: v is None or isinstance(v, str), "a profile name or null"),
    "model": (lambda v: v is None or isinstance(v, str), "a model name or folder, or null"),
    "seed": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "an integer or null"),
    "first": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "a notebook number or null"),
    "last": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "a notebook number or null"),
    "params": (lambda v: isinstance(v, list) and all(isinstance(p, str) and "=" in p for p in v),
               'a list of "name=value" texts'),
    "completed": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of notebook names"),
    "running": (lambda v: v is None or isinstance(v, str), "a notebook name or null"),
    "failed": (lambda v: v is None or isinstance(v, str), "a notebook name or null"),
}


def read_state(run_dir: Path) -> dict:
    """``<run>/state.json`` (``{}`` if there is none), each field checked: a damaged one is refused in one line."""
    path = run_dir / STATE_NAME
    state = read_json(path, "it records the options and the completed notebooks, for --resume")
    for name, (ok, expected) in _STATE_FIELDS.items():
        if name in state and not ok(state[name]):
            raise UsageError(f"{path} is damaged: {name} is {json.dumps(state[name])[:60]}, not {expected}; fix: "
                             "correct or move away that file, then run without --resume (--from N skips the notebooks "
                             "that finished), or use another --out.")
    return state
