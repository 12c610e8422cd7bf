"""One-line notices from inside a notebook to the person running it.

A notebook executed by ``grpo-notebooks run`` runs in a kernel of its own: what it prints lands in the executed
notebook, not on the console. :func:`notice` prints its line (the notebook's output) and, inside such a run
(``$GRPO_RUN_DIR`` set), appends it to ``<run>/notices.jsonl``, which the command line follows
(``helpers.run.progress.Follower``) onto the console and into ``run.log``. For things a user must hear about
while the run goes on, e.g. a vLLM engine that started only on a second try (``helpers.model.vllm_engine``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from helpers.files.runs import RUN_DIR_ENV

NOTICES_NAME = "notices.jsonl"


def notice(line: str, run_dir: str | os.PathLike | None = None) -> None:
    """Print ``line`` and append ``{"time", "text"}`` to ``<run>/notices.jsonl`` of ``run_dir``, by default of a
    ``grpo-notebooks run`` (``$GRPO_RUN_DIR``; none: the line is only printed). One ``write`` of a whole line,
    flushed; a run folder that cannot be written to only loses the copy for the console: a notice never stops the
    work it reports on."""
    print(line, file=sys.stdout, flush=True)
    run_dir = run_dir or os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return
    record = json.dumps({"time": time.time(), "text": line}) + "\n"
    try:
        with open(Path(run_dir).expanduser() / NOTICES_NAME, "a", encoding="utf-8") as f:
            f.write(record)
    except OSError as exc:
        print(f"(this notice was not written to {run_dir}/{NOTICES_NAME}: {exc})", file=sys.stderr, flush=True)
