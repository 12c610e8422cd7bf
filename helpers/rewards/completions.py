"""Reading a completion as TRL hands it to a reward (a string, chat messages or anything else), reading its
parts once for all the rewards that grade it (:class:`Graded`), and keeping scores finite."""

from __future__ import annotations

import math
from collections.abc import Mapping

from helpers.data.answers import parse_number
from helpers.data.chat_template import DEFAULT_FORMAT, ParsedCompletion, ReasoningFormat, restore_prefill


def completion_text(completion) -> str:
    """The text of one completion: a string as is, chat messages' last ``content`` (text parts joined),
    anything else ``''``.

    >>> completion_text([{"role": "assistant", "content": "hi"}]), completion_text(None)
    ('hi', '')
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, bytes):
        return completion.decode("utf-8", "replace")
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, (list, tuple)):  # multimodal parts: [{"type": "text", "text": ...}, ...]
            return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""


def parse_completion(completion, *, prefilled: bool = False, fmt: ReasoningFormat = DEFAULT_FORMAT) -> ParsedCompletion:
    """The tags and blocks of one completion (``ReasoningFormat.parse``) whatever TRL hands over (see
    :func:`completion_text`); ``prefilled=True`` puts the prompt's opening tag back first. Never raises.

    >>> parsed = parse_completion([{"role": "assistant", "content": "<reasoning>3+4</reasoning><answer>7</answer>"}])
    >>> parsed.strict, parsed.answer, parse_completion(None).counts
    (True, '7', (0, 0, 0, 0))
    """
    text = completion_text(completion)
    return fmt.parse(restore_prefill(text, fmt) if prefilled else text)


def finite_score(value, low: float, high: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return low
    return min(max(value, low), high) if math.isfinite(value) else low


def as_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_UNREAD = object()


class Graded:
    """One completion's text and its gold answer, each read at most once, when first asked for: the tags
    (``parsed``), the answer block's number (``predicted``) and the gold number (``gold``). The rewards grade
    this, so ``combined_reward`` reads a completion once for its four parts, not four times."""

    __slots__ = ("fmt", "text", "answer", "_parsed", "_predicted", "_gold")

    def __init__(self, fmt: ReasoningFormat, text: str, answer):
        self.fmt, self.text, self.answer = fmt, text, answer
        self._parsed = self._predicted = self._gold = _UNREAD

    @property
    def parsed(self) -> ParsedCompletion:
        if self._parsed is _UNREAD:
            self._parsed = self.fmt.parse(self.text)
        return self._parsed

    @property
    def predicted(self):
        """The number in the (last complete) answer block, or ``None``."""
        if self._predicted is _UNREAD:
            answer = self.parsed.answer
            self._predicted = None if answer is None else parse_number(answer)
        return self._predicted

    @property
    def gold(self):
        """The gold answer's number, or ``None`` (no answer, or a non-numeric one)."""
        if self._gold is _UNREAD:
            self._gold = parse_number(self.answer)
        return self._gold
