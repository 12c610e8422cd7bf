"""helpers.run.progress: the lines ``grpo-notebooks run`` prints while a notebook trains or evaluates."""

import io
import json
import os
import threading
import time

from helpers.run.progress import Follower, RunLog


def append(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def grpo_row(step, t):
    return {"step": step, "time": t, "elapsed_s": 2.0 * step, "reward": 0.5, "rewards/format_compliance/mean": 0.25,
            "rewards/accuracy/mean": 0.125}


def test_lines_appear_while_the_file_grows(tmp_path):
    metrics = tmp_path / "grpo" / "metrics.jsonl"
    metrics.parent.mkdir()
    append(metrics, grpo_row(1, 0.0))  # an earlier run's line: not reported again
    seen = []
    finished = {}

    def writer():
        for step in (2, 3, 4):
            time.sleep(0.3)
            append(metrics, grpo_row(step, time.time()))
            seen.append(("written", step, time.monotonic()))
        finished["at"] = time.monotonic()

    lines = []
    with Follower(tmp_path, lambda line: lines.append((line, time.monotonic())), {"grpo": 4}, interval=0.05):
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
    assert [line for line, _ in lines][0].startswith("  grpo step 2/4 | reward 0.5 | format 25% | accuracy 12% |")
    assert [line.split(" | ")[0] for line, _ in lines] == ["  grpo step 2/4", "  grpo step 3/4", "  grpo step 4/4"]
    for (_, step, written), (_line, shown) in zip(seen, lines, strict=True):
        assert shown - written < 0.5, f"step {step} was shown {shown - written:.2f} s after it was written"
    assert lines[0][1] < finished["at"], "the first line must appear before the writer finishes"
    assert lines[-1][0].endswith("| 0:00 left")  # the last step; too few steps for a rate (helpers.dashboard.pace)


def test_a_resumed_file_cut_back_is_followed_without_repeats(tmp_path):
    metrics = tmp_path / "grpo" / "metrics.jsonl"
    metrics.parent.mkdir()
    rows = [grpo_row(s, float(s)) for s in (1, 2, 3)]
    for r in rows:
        append(metrics, r)
    lines = []
    follower = Follower(tmp_path, lines.append, {"grpo": 4}, interval=60)
    tmp = metrics.with_name("cut")  # the dashboard cuts the killed run's step 3 (atomic replace)
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    os.replace(tmp, metrics)
    assert follower.poll() == 0
    append(metrics, grpo_row(3, 10.0))
    append(metrics, grpo_row(4, 12.0))
    follower.poll()
    assert [line.split(" | ")[0] for line in lines] == ["  grpo step 3/4", "  grpo step 4/4"]


def test_evaluation_and_sft_lines_and_the_log_file(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "sft").mkdir()
    stream = io.StringIO()
    log = RunLog(tmp_path / "run.log", stream)
    follower = Follower(tmp_path, log, {"sft": 2}, interval=60)
    append(tmp_path / "sft" / "metrics.jsonl", {"step": 1, "time": 5.0, "elapsed_s": 5.0, "loss": 1.25})
    append(tmp_path / "sft" / "metrics.jsonl", {"step": 2, "time": 6.0, "train_runtime": 6.0})  # summary: skipped
    append(tmp_path / "eval" / "progress.jsonl", {"time": 1.0, "model": "grpo", "index": 3, "models": 3, "done": 16,
                                                  "total": 64})
    (tmp_path / "eval" / "progress.jsonl").open("a").write('{"time": 2.0, "mod')  # being written: skipped
    assert follower.poll() == 2
    assert stream.getvalue().splitlines() == ["  sft step 1/2 | loss 1.25 | estimating time left",
                                              "  eval model 3/3 (grpo): 16/64 prompts"]
    logged = (tmp_path / "run.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in logged] == stream.getvalue().splitlines()  # each with date and time
    time.strptime(logged[0][:19], "%Y-%m-%d %H:%M:%S")
    log("table:\n  base 0%", echo=False)  # a block of lines: each gets its time; not printed
    assert [line[24:] for line in (tmp_path / "run.log").read_text().splitlines()[-2:]] == ["table:", "  base 0%"]
    assert "table" not in stream.getvalue()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_as_well(tmp_path):
    (tmp_path / "grpo").mkdir()
    stream = Terminal()
    log = RunLog(tmp_path / "run.log", stream)
    follower = Follower(tmp_path, log, {"grpo": 4}, interval=60)
    append(tmp_path / "grpo" / "metrics.jsonl", grpo_row(1, 2.0))
    follower.poll()
    assert log.bar is not None and log.bar.n == 1 and log.bar.total == 4
    log.close_bar()
    out = stream.getvalue()
    assert "grpo step 1/4 | reward 0.5" in out and "1/4 [" in out  # the line, and tqdm's bar "25%|██▌ | 1/4 [..."
    assert "\r" not in (tmp_path / "run.log").read_text()  # the log file gets the lines, never the bar
    plain = io.StringIO()  # not a terminal: the lines only
    follower = Follower(tmp_path, RunLog(None, plain), {"grpo": 4}, interval=60)
    append(tmp_path / "grpo" / "metrics.jsonl", grpo_row(2, 4.0))
    assert follower.poll() == 1 and plain.getvalue().startswith("  grpo step 2/4") and "[" not in plain.getvalue()
