"""The reasoning format and the chat template: what the model is asked to write, and the exact text it sees.

The format is a reasoning block, then an answer block::

    <reasoning>
    Tom buys 4 more: 3 + 4 = 7.
    </reasoning>
    <answer>7</answer>

The four tags are configurable (:class:`ReasoningFormat`); the system prompt states the format.

**Where the opening tag lives (the prefill decision).** The prompt ends with the chat template's
generation prompt and nothing else: the template does *not* prefill ``<reasoning>``, so the model
writes the opening tag itself and the strict format reward requires it. This is the default
(``PREFILL = False``) because every reward then scores exactly the text the model produced.
Templates that open a reasoning block themselves exist (some "thinking" models append ``<think>``
after the generation prompt); :func:`template_prefills` detects that, ``render_prompt(..., prefill=True)``
does it on purpose, and then every reward must be built with ``prefilled=True``: it puts the prefilled
text back in front of the completion (:func:`restore_prefill`) before scoring, so both cases score the
same full text. ``tests/test_rewards.py`` pins both.

The chat template itself is the tokenizer's own (the one the model was trained with). Where a named
template is asked for, Unsloth's ``get_chat_template`` supplies it when unsloth is installed; without
unsloth only ``"chatml"`` is built in. A tokenizer with no template at all gets ChatML.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from helpers.runtime.hardware import importable

PREFILL = False  # the decision: the opening reasoning tag is written by the model, not by the template

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class ParsedCompletion:
    """What a completion contains, read by :meth:`ReasoningFormat.parse` (counts of each tag, blocks)."""

    counts: tuple[int, int, int, int]  # occurrences of reasoning_start, reasoning_end, answer_start, answer_end
    ordered: bool  # each tag exactly once, in the order reasoning_start < reasoning_end < answer_start < answer_end
    reasoning: str | None  # the reasoning block's text (stripped) when ordered
    answer: str | None  # the text of the last complete answer block (stripped), wherever it is
    before: str  # text before the first tag (all of it if there is no tag)
    between: str  # text between reasoning_end and answer_start (when ordered)
    after: str  # text after the last answer_end ('' if there is none)

    @property
    def strict(self) -> bool:
        """The exact format: nothing but whitespace outside and between the two blocks, both non-empty."""
        return (self.ordered and not self.before.strip() and not self.between.strip() and not self.after.strip()
                and bool(self.reasoning) and bool(self.answer))


@dataclass(frozen=True)
class ReasoningFormat:
    """The tags of the reasoning format. Tags must be non-empty and distinct, and none may contain another."""

    reasoning_start: str = field(default="<reasoning>", metadata={"help": "opens the step-by-step reasoning"})
    reasoning_end: str = field(default="</reasoning>", metadata={"help": "closes the reasoning"})
    answer_start: str = field(default="<answer>", metadata={"help": "opens the final answer"})
    answer_end: str = field(default="</answer>", metadata={"help": "closes the final answer"})

    def __post_init__(self):
        tags = self.tags
        if not all(isinstance(t, str) and t.strip() for t in tags):
            raise ValueError(f"every tag must be a non-empty string, got {tags!r}; fix: pass four tags such as '<reasoning>'.")
        for i, a in enumerate(tags):
            for j, b in enumerate(tags):
                if i != j and a in b:
                    raise ValueError(f"tag {a!r} occurs inside tag {b!r}, so completions could not be parsed; "
                                     "fix: choose tags where no tag is part of another.")

    @property
    def tags(self) -> tuple[str, str, str, str]:
        return (self.reasoning_start, self.reasoning_end, self.answer_start, self.answer_end)

    @property
    def prefill_text(self) -> str:
        """What a prefilling prompt appends after the generation prompt: the opening tag and a newline."""
        return self.reasoning_start + "\n"

    def format(self, reasoning: str, answer: str) -> str:
        """The canonical completion for ``reasoning`` and ``answer`` (the layout SFT teaches).

        >>> print(DEFAULT_FORMAT.format("3 + 4 = 7.", "7"))
        <reasoning>
        3 + 4 = 7.
        </reasoning>
        <answer>7</answer>
        """
        return (f"{self.reasoning_start}\n{reasoning.strip()}\n{self.reasoning_end}\n"
                f"{self.answer_start}{answer.strip()}{self.answer_end}")

    def parse(self, text: str) -> ParsedCompletion:
        """Read ``text``'s tags in one linear pass (no regex backtracking, multi-line blocks are fine).

        >>> parsed = DEFAULT_FORMAT.parse("<reasoning>\\na\\nb\\n</reasoning><answer> 7 </answer>\\n")
        >>> parsed.strict, parsed.reasoning, parsed.answer
        (True, 'a\\nb', '7')
        """
        rs, re_, as_, ae = self.tags
        counts = (text.count(rs), text.count(re_), text.count(as_), text.count(ae))
        firsts = [i for i in (text.find(t) for t in self.tags) if i >= 0]
        before = text[: min(firsts)] if firsts else text
        answer, after = None, ""
        close = text.rfind(ae)
        if close >= 0:
            after = text[close + len(ae):]
            open_ = text.rfind(as_, 0, close)
            if open_ >= 0:
                answer = text[open_ + len(as_): close].strip()
        i_rs, i_re, i_as, i_ae = (text.find(t) for t in self.tags)
        ordered = counts == (1, 1, 1, 1) and 0 <= i_rs < i_re < i_as < i_ae
        reasoning = text[i_rs + len(rs): i_re].strip() if ordered else None
        between = text[i_re + len(re_): i_as] if ordered else ""
        return ParsedCompletion(counts, ordered, reasoning, answer, before, between, after)

    def extract_answer(self, text) -> str | None:
        """The text of the last complete answer block, or ``None``; non-strings have none.

        >>> DEFAULT_FORMAT.extract_answer("<reasoning>7? 8?</reasoning>\\n<answer>8</answer>")
        '8'
        """
        if not isinstance(text, str):
            return None
        return self.parse(text).answer


DEFAULT_FORMAT = ReasoningFormat()


def system_prompt(fmt: ReasoningFormat = DEFAULT_FORMAT) -> str:
    """The system prompt: solve step by step and answer in ``fmt``'s format, the final number alone."""
    return (
        "Solve the math problem step by step. Respond in exactly this format:\n"
        f"{fmt.reasoning_start}\nthe steps, one calculation per line\n{fmt.reasoning_end}\n"
        f"{fmt.answer_start}the final number only{fmt.answer_end}"
    )


def build_messages(question: str, fmt: ReasoningFormat = DEFAULT_FORMAT, system: str | None = None) -> list[dict]:
    """The chat messages for one problem: the system prompt (``system`` or the default), then the question."""
    return [{"role": "system", "content": system if system is not None else system_prompt(fmt)},
            {"role": "user", "content": question.strip()}]


def restore_prefill(completion: str, fmt: ReasoningFormat = DEFAULT_FORMAT) -> str:
    """Put the prefilled opening text back in front of a completion generated after a prefilled prompt.

    >>> restore_prefill("3 + 4 = 7\\n</reasoning>\\n<answer>7</answer>")
    '<reasoning>\\n3 + 4 = 7\\n</reasoning>\\n<answer>7</answer>'
    """
    return fmt.prefill_text + completion


def prepare_tokenizer(tokenizer, chat_template: str | None = None):
    """The tokenizer with the chat template to use, set in place and returned.

    ``chat_template=None`` keeps the tokenizer's own template (ChatML if it has none). A name
    (``"chatml"``, ``"qwen-2.5"``, ``"llama-3.1"``, ...) uses Unsloth's ``get_chat_template`` where
    unsloth is installed; without unsloth only ``"chatml"`` is available.
    """
    if chat_template is None:
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = CHATML_TEMPLATE
        return tokenizer
    if importable("unsloth"):
        from unsloth.chat_templates import get_chat_template

        return get_chat_template(tokenizer, chat_template=chat_template)
    if chat_template == "chatml":
        tokenizer.chat_template = CHATML_TEMPLATE
        return tokenizer
    raise ValueError(f"chat template {chat_template!r} needs unsloth (not installed); "
                     "fix: install unsloth, pass chat_template='chatml', or None for the tokenizer's own.")


def render_prompt(tokenizer, messages: list[dict], *, prefill: bool = PREFILL,
                  fmt: ReasoningFormat = DEFAULT_FORMAT) -> str:
    """The exact prompt text the model continues: the chat template with the generation prompt, and
    with ``prefill`` the opening tag after it (unless the template wrote it already). A prefilled
    prompt needs rewards built with ``prefilled=True``."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if prefill and not text.rstrip().endswith(fmt.reasoning_start):
        text += fmt.prefill_text
    return text


def template_prefills(tokenizer, fmt: ReasoningFormat = DEFAULT_FORMAT) -> bool:
    """Whether the tokenizer's generation prompt already opens the reasoning block by itself."""
    prompt = render_prompt(tokenizer, build_messages("1 + 1?", fmt), prefill=False, fmt=fmt)
    return prompt.rstrip().endswith(fmt.reasoning_start)


@dataclass
class TemplateCheck:
    """The rendered conversation and what was verified about it (``ok`` when ``problems`` is empty)."""

    prompt: str  # the exact text the model sees before it writes
    conversation: str  # the prompt's conversation with a model-written answer in the format
    prefilled: bool  # the template (or the caller) opened the reasoning block already
    prompt_tokens: int
    completion_tokens: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "PROBLEMS:\n  - " + "\n  - ".join(self.problems)
        return (f"--- the prompt the model sees ({self.prompt_tokens} tokens) ---\n{self.prompt}\n"
                f"--- a full conversation in the format (answer: {self.completion_tokens} tokens) ---\n"
                f"{self.conversation}\n--- prefilled: {self.prefilled}; check: {verdict}")


def check_template(tokenizer, fmt: ReasoningFormat = DEFAULT_FORMAT, *, prefill: bool = PREFILL,
                   question: str = "Tom has 3 apples and buys 4 more. How many apples does Tom have now?",
                   reasoning: str = "Tom buys 4 more: 3 + 4 = 7.", answer: str = "7") -> TemplateCheck:
    """Render a conversation with ``tokenizer``'s chat template and check the model can use the format.

    Verified: the system prompt reaches the model verbatim; the prompt is a prefix of the full
    conversation (training and generation see the same tokens); each tag survives tokenization
    (encode then decode gives it back); the formatted answer parses as strict; and whether the
    template prefills the opening tag, which the rewards must be told.
    """
    messages = build_messages(question, fmt)
    completion = fmt.format(reasoning, answer)
    prompt = render_prompt(tokenizer, messages, prefill=prefill, fmt=fmt)
    shown = completion[len(fmt.prefill_text):] if prefill else completion
    conversation = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": completion}], tokenize=False)
    problems = []
    if messages[0]["content"] not in prompt:
        problems.append("the system prompt does not reach the model verbatim (the template drops or rewrites it)")
    if not conversation.startswith(prompt):
        problems.append("the generation prompt is not a prefix of the rendered conversation")
    for tag in fmt.tags:
        ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
        if tokenizer.decode(ids) != tag:
            problems.append(f"tag {tag!r} does not survive tokenization (decodes to {tokenizer.decode(ids)!r})")
    if not fmt.parse(completion).strict:
        problems.append("the example answer does not parse as the strict format")
    template_opens = template_prefills(tokenizer, fmt)
    if template_opens and not prefill:
        problems.append("the template opens the reasoning block itself: build the rewards with prefilled=True")
    count = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    completion_tokens = len(tokenizer(shown, add_special_tokens=False)["input_ids"])
    return TemplateCheck(prompt, conversation, prefill or template_opens, count, completion_tokens, problems)
