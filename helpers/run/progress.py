"""Live progress of ``grpo-notebooks run``: follow what a running notebook appends to its run folder.

Notebooks are executed by papermill in a kernel of their own, so the command line cannot see their
output while a cell runs. It does not need to: the dashboard (``helpers.dashboard.callback``) appends every
logged training step to ``<run>/<stage>/metrics.jsonl`` and the evaluation appends a line per batch to
``<run>/eval/progress.jsonl``; a notebook's one-line notices (``helpers.runtime.notices``: e.g. a vLLM engine
that started only on a second try) go to ``<run>/notices.jsonl``. :class:`Follower` polls those files from a
thread and turns each new record into one line (step i/N, reward, format compliance, accuracy, seconds per
step, time left; the evaluation's model and problems done; the notice as it is), printed and appended to
the run's log (``<run>/run.log``, every line with its time). Where stdout is a terminal a tqdm bar shows
the current stage as well. Records already in a file when the follower starts are not shown again; a file
replaced by a shorter one (a resumed run cuts its metrics back to the checkpoint) is read from its new
beginning.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from helpers.dashboard.pace import StepPace
from helpers.dashboard.text import short_number
from helpers.runtime.notices import NOTICES_NAME

LOG_NAME = "run.log"


class RunLog:
    """Prints lines to ``stream`` and appends them, each with its local time, to ``path`` (``<run>/run.log``).

    While a tqdm bar is open, lines go through ``tqdm.write`` so the bar stays below them."""

    def __init__(self, path: str | os.PathLike | None, stream: TextIO | None = None):
        self.path = Path(path) if path is not None else None
        self.stream = stream or sys.stdout
        self.bar: Any = None
        self._lock = threading.Lock()

    def __call__(self, line: str, echo: bool = True) -> None:
        """Print ``line`` (unless not ``echo``) and append it to the log file."""
        with self._lock:
            if not echo:
                pass
            elif self.bar is not None:
                self.bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)
            if self.path is not None:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
                try:
                    with open(self.path, "a", encoding="utf-8") as f:
                        f.writelines(f"{stamp} {part}\n" for part in line.splitlines())
                except OSError as exc:  # a full disk: the terminal still gets every line
                    self.path = None
                    print(f"(the lines that follow are not in the log: writing it failed: {exc})", file=self.stream,
                          flush=True)

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def progress(self, desc: str, done: int, total: int | None, unit: str) -> None:
        """Show a bar for ``desc`` at ``done``/``total`` (terminals only; a new ``desc`` starts a new bar)."""
        if not self.tty or not total:
            return
        from tqdm.auto import tqdm

        with self._lock:
            if self.bar is None or self.bar.desc != desc or self.bar.total != total:
                self.close_bar()
                self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=False, dynamic_ncols=True)
            self.bar.n = done
            self.bar.refresh()

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def training_line(stage: str, row: Mapping[str, Any], total: int | None, pace: StepPace) -> str:
    """One line for a logged training step (GRPO: reward, format compliance, accuracy; SFT: loss), with the
    pace of :class:`helpers.dashboard.pace.StepPace` (fed the record's ``elapsed_s``, else its ``time``).

    >>> training_line("grpo", {"step": 1, "time": 10.0, "elapsed_s": 10.0, "reward": 0.5,
    ...     "rewards/format_compliance/mean": 0.25, "rewards/accuracy/mean": 0.0}, 4, StepPace())
    'grpo step 1/4 | reward 0.5 | format 25% | accuracy 0% | estimating time left'
    """
    step = int(row["step"])
    parts = [f"{stage} step {step}/{total}" if total else f"{stage} step {step}"]
    if stage == "grpo":
        parts += [f"reward {short_number(row.get('reward'))}", f"format {_pct(row.get('rewards/format_compliance/mean'))}",
                  f"accuracy {_pct(row.get('rewards/accuracy/mean'))}"]
    elif row.get("loss") is not None:
        parts.append(f"loss {short_number(row['loss'])}")
    clock = row.get("elapsed_s")
    pace.update(step, float(clock if clock is not None else row.get("time", time.time())))
    parts.append(pace.text(total))
    return " | ".join(parts)


def eval_line(row: Mapping[str, Any]) -> str:
    """One line for an evaluation progress record.

    >>> eval_line({"model": "sft", "index": 2, "models": 3, "done": 32, "total": 72})
    'eval model 2/3 (sft): 32/72 prompts'
    """
    return f"eval model {row['index']}/{row['models']} ({row['model']}): {row['done']}/{row['total']} prompts"


@dataclass
class _Watched:
    path: Path
    kind: str  # "sft", "grpo", "eval" or "notice"
    total: int | None = None
    seen: set = field(default_factory=set)
    stamp: tuple | None = None
    pace: StepPace = field(default_factory=StepPace)


def _records(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line being written right now, or cut by a kill
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _key(row: Mapping[str, Any]) -> tuple:
    return row.get("step"), row.get("time"), row.get("model"), row.get("done"), row.get("text")


class Follower:
    """Follow ``<run>/sft/metrics.jsonl``, ``<run>/grpo/metrics.jsonl``, ``<run>/eval/progress.jsonl`` and
    ``<run>/notices.jsonl`` from a thread (``with Follower(...):``) and report each new record through ``log``
    (a :class:`RunLog`).

    ``totals``: the number of steps of each training stage (``{"sft": 8, "grpo": 24}``), for i/N and time left.
    """

    def __init__(self, run_dir: str | os.PathLike, log: RunLog | Callable[[str], None],
                 totals: Mapping[str, int | None] | None = None, interval: float = 0.5, prefix: str = "  "):
        run_dir, totals = Path(run_dir), totals or {}
        self.log, self.interval, self.prefix = log, interval, prefix
        self.watched = [_Watched(run_dir / stage / "metrics.jsonl", stage, totals.get(stage)) for stage in ("sft", "grpo")]
        self.watched.append(_Watched(run_dir / "eval" / "progress.jsonl", "eval"))
        self.watched.append(_Watched(run_dir / NOTICES_NAME, "notice"))
        for w in self.watched:  # what is there already was reported by an earlier run
            w.seen = {_key(r) for r in _records(w.path)}
            w.stamp = self._stamp(w.path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _stamp(path: Path) -> tuple | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def poll(self) -> int:
        """Report the records added since the last poll; returns how many lines were reported."""
        reported = 0
        for w in self.watched:
            stamp = self._stamp(w.path)
            if stamp is None or stamp == w.stamp:
                continue
            w.stamp = stamp
            for row in _records(w.path):
                key = _key(row)
                if key in w.seen or ("step" not in row and w.kind not in ("eval", "notice")):
                    continue
                w.seen.add(key)
                if w.kind == "notice":
                    if not isinstance(row.get("text"), str):
                        continue
                    line = row["text"]
                elif w.kind == "eval":
                    if "model" not in row:
                        continue
                    line = eval_line(row)
                    self._bar(f"eval {row['model']}", int(row["done"]), int(row["total"]), "prompt")
                elif "train_runtime" in row:  # the trainer's closing summary
                    continue
                else:
                    line = training_line(w.kind, row, w.total, w.pace)
                    self._bar(w.kind, int(row["step"]), w.total, "step")
                self.log(self.prefix + line)
                reported += 1
        return reported

    def _bar(self, desc: str, done: int, total: int | None, unit: str) -> None:
        if isinstance(self.log, RunLog):
            self.log.progress(desc, done, total, unit)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # never let progress reporting stop a run
                self.log(f"{self.prefix}(progress reporting stopped: {type(exc).__name__}: {exc})")
                return

    def __enter__(self) -> Follower:
        self._thread = threading.Thread(target=self._run, name="grpo-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()  # whatever the last moments wrote
        if isinstance(self.log, RunLog):
            self.log.close_bar()
