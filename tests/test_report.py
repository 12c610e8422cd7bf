import json

from helpers.run.report import write_report
from helpers.train.curves import fifths, learning_summary


def test_fifths_needs_two_values():
    assert fifths([]) is None and fifths([1.0]) is None
    assert fifths([1.0, 3.0]) == (1.0, 3.0)
    assert fifths([1.0, None, 3.0]) == (1.0, 3.0)


def test_report_from_a_run_folder(tmp_path):
    (tmp_path / "grpo").mkdir()
    with open(tmp_path / "grpo" / "metrics.jsonl", "w") as fh:
        for step in range(1, 11):
            fh.write(json.dumps({"step": step, "reward": step / 10, "reward_std": 0.1,
                                 "rewards/format_compliance/mean": 0.5 + step / 40,
                                 "rewards/accuracy/mean": step / 20, "completions/mean_length": 30}) + "\n")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.md").write_text("| model | strict accuracy |\n|---|---|\n| base | 0.10 |\n| grpo | 0.40 |\n")
    (tmp_path / "timings.json").write_text(json.dumps({"01_model_loading.ipynb": 12.5, "07_grpo_training.ipynb": 60.0}))
    report = write_report(tmp_path).read_text()
    assert "| grpo | 0.40 |" in report
    assert "| reward | 0.150 | 0.950 | +0.800 |" in report
    assert "format_compliance" in report and "accuracy" in report
    assert "![GRPO curves](plots/grpo_dashboard.png)" in report
    assert (tmp_path / "plots" / "grpo_dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 01_model_loading.ipynb | 12.5 |\n| 07_grpo_training.ipynb | 60.0 |\n| **total** | **72.5** |" in report
    assert "profile=" in report
    learning = json.loads((tmp_path / "learning.json").read_text())
    assert learning["steps"] == 10 and learning["reward"]["last_fifth"] > learning["reward"]["first_fifth"]
    assert learning_summary([])["steps"] == 0


def test_report_of_an_empty_run(tmp_path):
    report = write_report(tmp_path).read_text()
    assert "no evaluation" in report and "no GRPO metrics" in report


def test_summary_reads_grpos_change_against_the_noise(tmp_path):
    from helpers.evaluate.evaluation import EvalTable
    from helpers.evaluate.results import write_results
    from helpers.evaluate.scoring import score_completions
    from helpers.run.report import summary

    good = "<reasoning>\nr\n</reasoning>\n<answer>1</answer>"
    scores = [score_completions(c, ["1"] * 4, name=n)
              for n, c in (("sft", [good, "no", "no", good]), ("grpo", [good, good, good, "no"]))]
    write_results(EvalTable("synthetic", "s", {"problems": 4}, scores), tmp_path / "eval")
    text = summary(tmp_path)
    assert "  grpo vs sft: +25.0 points (2 problems gained, 1 lost of 4; standard error 47.9)" in text


def test_summary_shows_every_held_out_set_with_its_change(tmp_path):
    """Every set of the run's results (SVAMP's human-written problems too) gets its table, what it is, and each
    model's paired change against the one before it with its standard error."""
    from helpers.evaluate.evaluation import EvalTable
    from helpers.evaluate.results import write_results
    from helpers.evaluate.scoring import score_completions
    from helpers.run.report import summary

    good = "<reasoning>\nr\n</reasoning>\n<answer>1</answer>"
    for name, right in (("synthetic", ([0, 1], [1, 1], [1, 1])), ("paraphrased", ([0, 0], [0, 1], [1, 1])),
                        ("svamp", ([0, 0, 0], [1, 0, 0], [1, 1, 0]))):
        scores = [score_completions([good if r else "no" for r in rs], ["1"] * len(rs), name=model)
                  for model, rs in zip(("base", "sft", "grpo"), right, strict=True)]
        write_results(EvalTable(name, name, {"problems": len(right[0])}, scores), tmp_path / "eval")
    text = summary(tmp_path)
    assert "evaluation on svamp (SVAMP, human-written public benchmark; 3 held-out problems):" in text
    assert "evaluation on synthetic (the generator's held-out problems; 2 held-out problems):" in text
    svamp = text[text.index("evaluation on svamp"):]
    assert "  grpo   " in svamp and "66.7% (2/3)" in svamp
    assert "  sft vs base: +33.3 points (1 problem gained, 0 lost of 3; standard error 33.3)" in svamp
    assert "  grpo vs sft: +33.3 points (1 problem gained, 0 lost of 3; standard error 33.3)" in svamp
    order = [text.index(f"evaluation on {n} ") for n in ("synthetic", "paraphrased", "svamp")]
    assert order == sorted(order)


def test_a_short_grpo_run_says_it_is_a_tour_and_where_the_gains_are(tmp_path):
    """The first command's 14 GRPO steps (the cpu default) must not read as a measurement of GRPO: the summary says
    so in plain words and points at the GPU runs; a long run's summary does not."""
    from helpers.run.report import TOUR_STEPS, summary

    def run_with(steps: int):
        folder = tmp_path / f"run-{steps}"
        (folder / "grpo").mkdir(parents=True)
        rows = [{"step": i, "reward": 1.0 + i / steps, "rewards/accuracy/mean": 0.5, "loss": 0.0} for i in range(1, steps + 1)]
        (folder / "grpo" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return summary(folder)

    short, long = run_with(14), run_with(TOUR_STEPS)
    assert "14 GRPO steps are a tour of the loop, not a measurement" in short and "+9.8 to +15.0 points" in short
    assert "tour of the loop" not in long
