"""Datasets of reasoning problems: GSM8K (hub or local JSONL) and offline synthetic word problems.

Every dataset here has the same columns, ready for TRL:

- ``prompt``: chat messages, the system prompt (it states the format) then the question
- ``completion``: one assistant message, a worked solution in the format (for SFT; GRPO ignores it)
- ``answer``: the gold answer, normalised by ``helpers.answers`` (``"1234"``, ``"0.75"``); rewards read it
- ``question``, ``reasoning`` (the worked steps as plain text), ``difficulty`` (number of arithmetic
  steps), ``source`` (``"gsm8k"`` or ``"synthetic"``)

``prompt`` and ``completion`` are both conversational, as TRL expects when it checks the format of
a row. Rows whose answer cannot be read are dropped and counted (logged, and written in
``dataset.info.description``); a bad row never stops a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from pathlib import Path

from .answers import normalize_answer
from .chat_template import DEFAULT_FORMAT, ReasoningFormat, build_messages, render_prompt

log = logging.getLogger(__name__)

__all__ = [
    "DataUnavailableError", "NoUsableRowsError", "STYLES", "default_gsm8k_dir", "extract_gsm8k_answer",
    "filter_prompt_length", "grpo_problems", "gsm8k_rows", "held_out_question", "load_gsm8k", "load_problems", "make_row",
    "prompt_lengths", "split_held_out", "synthetic_dataset",
    "synthetic_problem",
]

GSM8K_HUB = ("openai/gsm8k", "main")
GSM8K_DIR_ENV = "GRPO_GSM8K_DIR"
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: 2+1=<<2+1=3>>3


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


def _dataset(rows: list[dict], description: str):
    from datasets import Dataset

    ds = Dataset.from_list(rows)
    ds.info.description = description
    return ds


# ---------------------------------------------------------------------------------------------
# GSM8K
# ---------------------------------------------------------------------------------------------


def extract_gsm8k_answer(text) -> str | None:
    """The gold answer of a GSM8K solution: the text after the last ``####``, normalised; else ``None``
    (also when it cannot be read exactly: the row is then dropped and counted, never kept as ``0``).

    >>> extract_gsm8k_answer("He pays 2*3=<<2*3=6>>6 dollars.\\n#### 6"), extract_gsm8k_answer("#### 1,600")
    ('6', '1600')
    >>> extract_gsm8k_answer("no marker"), extract_gsm8k_answer("#### 0x7"), extract_gsm8k_answer("#### 2e3")
    (None, None, '2000')
    """
    if not isinstance(text, str) or "####" not in text:
        return None
    return normalize_answer(text.rsplit("####", 1)[1])


def _gsm8k_reasoning(solution: str) -> str:
    steps = _CALCULATOR.sub("", solution.rsplit("####", 1)[0])
    return "\n".join(line.strip() for line in steps.splitlines() if line.strip())


def gsm8k_rows(records, fmt: ReasoningFormat = DEFAULT_FORMAT, system: str | None = None) -> tuple[list[dict], int]:
    """GSM8K records (``{"question", "answer"}``) as rows; returns ``(rows, dropped)``, where dropped
    counts records that are not a mapping, lack a question, or have no readable answer after ``####``."""
    rows, dropped = [], 0
    for record in records:
        try:
            question, solution = record["question"], record["answer"]
            gold = extract_gsm8k_answer(solution)
            if not isinstance(question, str) or not question.strip() or gold is None:
                raise ValueError("unusable")
            rows.append(make_row(question, _gsm8k_reasoning(solution), gold, fmt=fmt, system=system,
                                 difficulty=max(1, solution.count("<<")), source="gsm8k"))
        except (KeyError, TypeError, ValueError, AttributeError):
            dropped += 1
    return rows, dropped


def _read_jsonl(path: Path):
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield None  # counted as dropped by gsm8k_rows


def default_gsm8k_dir() -> Path | None:
    """A local GSM8K folder (``train.jsonl``, ``test.jsonl``): ``$GRPO_GSM8K_DIR``, else the project's
    ``../shared/data/gsm8k`` beside the checkout, if it exists."""
    from .runs import project_root

    candidates = [os.environ.get(GSM8K_DIR_ENV)]
    root = project_root() or project_root(Path(__file__).parent)
    if root is not None:
        candidates.append(root.parent / "shared" / "data" / "gsm8k")
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def load_gsm8k(split: str = "train", path: str | os.PathLike | None = None, *,
               fmt: ReasoningFormat = DEFAULT_FORMAT, system: str | None = None, limit: int | None = None):
    """GSM8K ``split`` as a ``datasets.Dataset`` in the suite's columns.

    ``path=None`` downloads ``openai/gsm8k`` (config ``main``) from the hub; otherwise ``path`` is a
    JSONL file in GSM8K's format or a folder holding ``<split>.jsonl``. Rows without a usable
    answer (or unreadable lines) are dropped and counted; a gold answer that cannot be read exactly
    (``#### 0x7``, an exponent past 4,000 digits) is such a row. No usable row at all raises
    :class:`NoUsableRowsError`. ``limit`` keeps the first rows only.
    """
    if split not in ("train", "test"):
        raise ValueError(f"GSM8K has splits 'train' and 'test', not {split!r}; fix: pass split='train' or 'test'.")
    if path is None:
        from .loading import hub_reachable

        if not hub_reachable():
            raise DataUnavailableError("GSM8K cannot be downloaded: the Hugging Face hub is not reachable; "
                                       "fix: pass path= a local GSM8K folder or JSONL, or use synthetic_dataset().")
        from datasets import load_dataset

        records, where = load_dataset(*GSM8K_HUB, split=split), f"hub {GSM8K_HUB[0]}"
    else:
        file = Path(path) / f"{split}.jsonl" if Path(path).is_dir() else Path(path)
        if not file.is_file():
            raise DataUnavailableError(f"no GSM8K file at {file}; fix: pass a folder with {split}.jsonl or a .jsonl file.")
        records, where = _read_jsonl(file), str(file)
    rows, dropped = gsm8k_rows(records, fmt, system)
    if not rows:
        raise NoUsableRowsError(
            f"GSM8K {split} from {where} has no usable row ({dropped} dropped: each line needs a 'question' and an "
            "'answer' ending in '#### <number>'); fix: check that file, or pass another path (None: the hub, else "
            "synthetic problems).")
    if limit is not None:
        rows = rows[:limit]
    if dropped:
        log.warning("GSM8K %s: dropped %d rows without a usable answer", split, dropped)
    return _dataset(rows, f"GSM8K {split} from {where}: {len(rows)} rows, {dropped} dropped (no usable answer)")


# ---------------------------------------------------------------------------------------------
# Synthetic problems
# ---------------------------------------------------------------------------------------------

_PEOPLE = [("Tom", "he"), ("Mia", "she"), ("Sam", "he"), ("Ana", "she"), ("Ben", "he"), ("Lea", "she"),
           ("Max", "he"), ("Zoe", "she"), ("Leo", "he"), ("Ivy", "she"), ("Raj", "he"), ("Eva", "she"),
           ("Omar", "he"), ("Nina", "she"), ("Jack", "he"), ("Lily", "she")]
_ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells", "coins",
          "balloons", "eggs", "stamps"]
_CONTAINERS = ["boxes", "bags", "packs", "jars", "baskets"]
_GAIN = ["buys {x} more", "finds {x} more", "gets {x} more from {friend}", "picks up {x} more"]
_LOSS = ["gives {x} to {friend}", "loses {x}", "sells {x}", "uses {x}"]
LEVELS = (1, 2, 3)

# The generator's own wording ("generator") and a second wording for evaluation only ("paraphrased"):
# other names, items, containers and sentence templates around the same arithmetic, so a held-out
# score on it shows whether training taught the arithmetic or the templates' surface.
_STYLES = {
    "generator": dict(
        people=_PEOPLE, items=_ITEMS, containers=_CONTAINERS, gain=_GAIN, loss=_LOSS,
        start=["{name} has {value} {item}."], groups=["{name} has {k} {container} with {m} {item} in each."],
        subject=("{Pron}", "Then {pron}"), share="{subject} shares them equally among {k} friends.",
        ask_now="How many {item} does {name} have now?", ask="How many {item} does {name} have?",
        ask_share="How many {item} does each friend get?"),
    "paraphrased": dict(
        people=[("Kai", "he"), ("Rosa", "she"), ("Hugo", "he"), ("Mila", "she"), ("Theo", "he"), ("Nora", "she"),
                ("Finn", "he"), ("Ada", "she"), ("Ravi", "he"), ("Elsa", "she")],
        items=["oranges", "crayons", "buttons", "beads", "postcards", "candles", "keys", "ribbons"],
        containers=["crates", "trays", "envelopes", "bowls"],
        gain=["receives {x} more", "collects another {x}", "is given {x} more by {friend}", "wins {x} more"],
        loss=["hands {x} to {friend}", "drops {x}", "trades away {x}", "throws away {x}"],
        start=["{name} starts with {value} {item}.", "There are {value} {item} in {name}'s room.",
               "{name} owns {value} {item}."],
        groups=["{name} owns {k} {container}, and each one holds {m} {item}.",
                "There are {k} {container} in {name}'s room, each holding {m} {item}."],
        subject=("{Pron}", "After that, {pron}"), share="{subject} splits them evenly between {k} friends.",
        ask_now="What is the number of {item} {name} has at the end?", ask="How many {item} are there in all?",
        ask_share="How many {item} does each of the friends receive?"),
}
STYLES = tuple(_STYLES)


def synthetic_problem(rng: random.Random, difficulty: int, style: str = "generator") -> tuple[str, str, str]:
    """One word problem with ``difficulty`` arithmetic steps: ``(question, reasoning, answer)``.

    Level 1 is one operation on small numbers ("Tom has 3 apples. He buys 4 more. ..."); levels 2
    and 3 chain two and three steps (groups of items, gains, losses, a fair share at the end). The
    reasoning has one line per step, each with its arithmetic, ``3 + 4 = 7``. ``style="paraphrased"``
    words the same arithmetic differently (other names, items and sentences; evaluation only).
    """
    if difficulty not in LEVELS:
        raise ValueError(f"difficulty {difficulty!r} is not a level; fix: use one of {LEVELS}.")
    if style not in _STYLES:
        raise ValueError(f"style={style!r}; fix: use one of {STYLES}.")
    w = _STYLES[style]
    name, pron = rng.choice(w["people"])
    friend = rng.choice([p for p, _ in w["people"] if p != name])
    item = rng.choice(w["items"])
    Pron = pron.capitalize()
    sentences, steps = [], []
    ops = difficulty
    if rng.random() < 0.3:  # start with groups: one multiplication
        k, m = rng.randint(2, 6), rng.randint(2, 10)
        value = k * m
        container = rng.choice(w["containers"])
        template = w["groups"][0] if len(w["groups"]) == 1 else rng.choice(w["groups"])
        sentences.append(template.format(name=name, k=k, container=container, m=m, item=item))
        steps.append(f"{k} {container} of {m}: {k} * {m} = {value}.")
        ops -= 1
    else:
        value = rng.randint(2, 20) if difficulty == 1 else rng.randint(5, 30)
        template = w["start"][0] if len(w["start"]) == 1 else rng.choice(w["start"])
        sentences.append(template.format(name=name, value=value, item=item))
    ending = (w["ask_now"] if ops else w["ask"]).format(item=item, name=name)
    for i in range(ops):
        last, subject = i == ops - 1, w["subject"][1 if i else 0].format(Pron=Pron, pron=pron)
        divisors = [k for k in range(2, 10) if value % k == 0 and value // k > 1]
        kind = rng.choice(["gain", "loss", "share", "share"] if last and divisors else ["gain", "loss"])
        if kind == "loss" and value < 3:
            kind = "gain"
        if kind == "share":
            k = rng.choice(divisors)
            sentences.append(w["share"].format(subject=subject, k=k))
            steps.append(f"Each friend gets {value} / {k} = {value // k}.")
            value //= k
            ending = w["ask_share"].format(item=item)
            continue
        x = rng.randint(2, 15) if kind == "gain" else rng.randint(1, min(15, value - 1))
        verb = rng.choice(w["gain"] if kind == "gain" else w["loss"]).format(x=x, friend=friend)
        new = value + x if kind == "gain" else value - x
        sentences.append(f"{subject} {verb}.")
        steps.append(f"{Pron} {verb}: {value} {'+' if kind == 'gain' else '-'} {x} = {new}.")
        value = new
    return " ".join(sentences + [ending]), "\n".join(steps), str(value)


def held_out_question(question: str) -> bool:
    """Whether a synthetic question belongs to the held-out part (a fixed tenth of all questions, by
    hash), so ``split="train"`` and ``split="test"`` never share a problem, whatever the sizes and seeds."""
    return int(hashlib.sha256(question.encode("utf-8")).hexdigest()[:8], 16) % 10 == 0


def synthetic_dataset(n: int, *, difficulty: int | tuple[int, ...] = LEVELS, seed: int = 0, split: str | None = None,
                      fmt: ReasoningFormat = DEFAULT_FORMAT, system: str | None = None, style: str = "generator"):
    """``n`` distinct synthetic problems (no two share a question), the same for the same arguments.

    ``difficulty`` is a level or a tuple of levels, taken in turn (an equal mix). ``split="train"``
    or ``"test"`` draws from disjoint parts of the problem space (:func:`held_out_question`);
    ``None`` from all of it. ``style="paraphrased"``: the same arithmetic in other words, never trained
    on (see :func:`synthetic_problem`). Offline, instant, and every answer is right by construction.

    >>> row = synthetic_dataset(3, difficulty=1, seed=0)[1]
    >>> row["question"], row["reasoning"], row["answer"]
    ('Ivy has 8 books. She loses 3. How many books does Ivy have now?', 'She loses 3: 8 - 3 = 5.', '5')
    """
    levels = (difficulty,) if isinstance(difficulty, int) else tuple(difficulty)
    if n < 0 or not levels:
        raise ValueError("n must be >= 0 and at least one difficulty level given; fix: e.g. n=200, difficulty=(1, 2, 3).")
    if split not in (None, "train", "test"):
        raise ValueError(f"split={split!r}; fix: use 'train', 'test' or None.")
    rng = random.Random(seed)
    rows, seen = [], set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise ValueError(f"could not make {n} distinct problems at difficulty {levels}; fix: ask for fewer.")
        level = levels[len(rows) % len(levels)]
        question, reasoning, answer = synthetic_problem(rng, level, style)
        if question in seen or (split is not None and held_out_question(question) != (split == "test")):
            continue
        seen.add(question)
        rows.append(make_row(question, reasoning, answer, difficulty=level, source="synthetic", fmt=fmt, system=system))
    part = (f", {split} part" if split else "") + (f", {style} wording" if style != "generator" else "")
    return _dataset(rows, f"synthetic arithmetic problems{part}: {n} rows, difficulty {levels}, seed {seed}")


# ---------------------------------------------------------------------------------------------
# Choosing a source, filtering, splitting
# ---------------------------------------------------------------------------------------------


def load_problems(split: str = "train", *, path: str | os.PathLike | None = None, n: int = 1000, seed: int = 0,
                  difficulty: int | tuple[int, ...] = LEVELS, fmt: ReasoningFormat = DEFAULT_FORMAT,
                  system: str | None = None, limit: int | None = None):
    """GSM8K from ``path`` (default: :func:`default_gsm8k_dir`), else from the hub, else ``n``
    synthetic problems; returns ``(dataset, source)`` where ``source`` says which one was used.

    A missing local file or an unreachable hub falls back to the next source (logged); a GSM8K file
    that exists but has no usable row is refused (:class:`NoUsableRowsError`, one line): broken data
    is not silently replaced by other problems."""
    folder = path or default_gsm8k_dir()
    reasons = []
    for where in ([folder] if folder else []) + [None]:
        try:
            ds = load_gsm8k(split, where, fmt=fmt, system=system, limit=limit)
            return ds, ds.info.description
        except NoUsableRowsError:
            raise
        except DataUnavailableError as exc:
            reasons.append(str(exc).split(";")[0])
        except Exception as exc:  # the hub or a file can fail in many ways; fall back, say why
            reasons.append(f"{type(exc).__name__}: {exc}")
    log.warning("GSM8K unavailable (%s); using synthetic problems", "; ".join(reasons))
    ds = synthetic_dataset(n, difficulty=difficulty, seed=seed, split=split, fmt=fmt, system=system)
    return ds, ds.info.description


def grpo_problems(profile: str, *, embedded: bool, n: int | None = None, prompts_drawn: int = 0, seed: int = 0,
                  difficulty: int | tuple[int, ...] | None = None, path: str | os.PathLike | None = None):
    """GRPO's training problems, ``(dataset, source)``: GSM8K's train split (:func:`load_problems`) for a
    hub model on a GPU profile; the synthetic train part on the CPU profiles and for the embedded
    SmolLM2-135M on any profile, which solves about 1 GSM8K problem in 250: its groups would score
    all-zero and GRPO would learn nothing (README "Results"). ``n`` synthetic problems (default: one per
    prompt GRPO draws, ``prompts_drawn``, at least 200) at ``difficulty`` (default: the profile's
    ``grpo_levels``).

    >>> grpo_problems("gpu", embedded=True, n=3)[1]
    'synthetic arithmetic problems, train part: 3 rows, difficulty (1, 2, 3), seed 0'
    >>> len(grpo_problems("ci", embedded=True, prompts_drawn=250)[0]), len(grpo_problems("ci", embedded=True)[0])
    (250, 200)
    """
    n = n or max(200, prompts_drawn)
    if profile in ("colab-t4", "gpu") and not embedded:
        return load_problems("train", path=path, n=n, seed=seed)
    if difficulty is None:
        from .profiles import settings

        difficulty = settings(profile).grpo_levels
    levels = difficulty if isinstance(difficulty, int) else tuple(difficulty)
    ds = synthetic_dataset(n, split="train", seed=seed, difficulty=levels)
    return ds, ds.info.description


def prompt_lengths(dataset, tokenizer, *, prefill: bool = False, fmt: ReasoningFormat = DEFAULT_FORMAT) -> list[int]:
    """Tokens of each row's rendered prompt (chat template and generation prompt included)."""
    texts = [render_prompt(tokenizer, p, prefill=prefill, fmt=fmt) for p in dataset["prompt"]]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def filter_prompt_length(dataset, tokenizer, max_tokens: int, **kwargs):
    """The rows whose rendered prompt has at most ``max_tokens`` tokens (TRL 1.x has no
    ``max_prompt_length``: long prompts are best dropped before training); the count is logged."""
    keep = [i for i, length in enumerate(prompt_lengths(dataset, tokenizer, **kwargs)) if length <= max_tokens]
    if len(keep) < len(dataset):
        log.warning("dropped %d of %d rows with prompts over %d tokens", len(dataset) - len(keep), len(dataset), max_tokens)
    return dataset.select(keep)


def split_held_out(dataset, held_out: int | float, *, seed: int = 0, key: str = "question"):
    """A deterministic ``DatasetDict`` with ``train`` and ``test`` (the held-out rows).

    Rows repeating an earlier row's ``key`` are dropped first, so no problem is in both parts.
    ``held_out`` is a row count, or a fraction of the distinct rows. Both parts keep the original order.
    """
    from datasets import DatasetDict

    first, seen = [], set()
    for i, value in enumerate(dataset[key]):
        if value not in seen:
            seen.add(value)
            first.append(i)
    count = round(held_out * len(first)) if isinstance(held_out, float) else int(held_out)
    if not 0 <= count <= len(first):
        raise ValueError(f"held_out={held_out} does not fit {len(first)} distinct rows; fix: ask for fewer.")
    order = first[:]
    random.Random(seed).shuffle(order)
    test = sorted(order[:count])
    train = sorted(order[count:])
    return DatasetDict(train=dataset.select(train), test=dataset.select(test))
