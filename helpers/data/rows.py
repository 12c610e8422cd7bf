"""One dataset row in the suite's columns (``prompt``, ``completion``, ``answer``, ``question``,
``reasoning``, ``difficulty``, ``source``) and the errors of reading datasets."""

from __future__ import annotations

from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat, build_messages


class DataUnavailableError(RuntimeError):
    """A dataset could not be read; the message names the cause and the fix on one line."""


class NoUsableRowsError(DataUnavailableError):
    """A dataset was found but not one row of it is usable; :func:`load_problems` refuses it rather
    than fall back to other problems without the user noticing."""


def make_row(question: str, reasoning: str, answer: str, *, difficulty: int, source: str,
             fmt: ReasoningFormat = DEFAULT_FORMAT, system: str | None = None) -> dict:
    """One dataset row in the suite's columns (see the module docstring)."""
    return {
        "prompt": build_messages(question, fmt, system),
        "completion": [{"role": "assistant", "content": fmt.format(reasoning, answer)}],
        "answer": answer,
        "question": question.strip(),
        "reasoning": reasoning.strip(),
        "difficulty": int(difficulty),
        "source": source,
    }


def rows_dataset(rows: list[dict], description: str):
    from datasets import Dataset

    ds = Dataset.from_list(rows)
    ds.info.description = description
    return ds
