"""Offline synthetic word problems with worked solutions: one to three arithmetic steps, in the
generator's wording or a paraphrased one (evaluation only), split into disjoint train and test parts."""

from __future__ import annotations

import hashlib
import random

from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat
from helpers.data.rows import make_row, rows_dataset
from helpers.runtime.settings import LEVELS

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
    return rows_dataset(rows, f"synthetic arithmetic problems{part}: {n} rows, difficulty {levels}, seed {seed}")
