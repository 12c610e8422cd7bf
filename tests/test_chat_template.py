"""The reasoning format, the system prompt, the rendered prompt and the prefill decision."""

import sys
import types

import pytest

from helpers.data import chat_template as ct
from helpers.data.chat_template import DEFAULT_FORMAT, PREFILL, ReasoningFormat

GOOD = "<reasoning>\nTom buys 4 more: 3 + 4 = 7.\n</reasoning>\n<answer>7</answer>"


def test_default_tags_and_canonical_layout():
    assert DEFAULT_FORMAT.tags == ("<reasoning>", "</reasoning>", "<answer>", "</answer>")
    assert DEFAULT_FORMAT.format("Tom buys 4 more: 3 + 4 = 7.", "7") == GOOD
    assert DEFAULT_FORMAT.prefill_text == "<reasoning>\n"


@pytest.mark.parametrize("text, strict", [
    (GOOD, True),
    ("<reasoning>a\nb\nc</reasoning><answer>7</answer>", True),  # multi-line, no newlines around tags
    ("  \n" + GOOD + "\n\n ", True),  # whitespace around is fine, no trailing newline needed
    (GOOD + " Hope this helps!", False),  # text after the closing tag
    ("Sure! " + GOOD, False),  # text before the opening tag
    ("<reasoning></reasoning><answer>7</answer>", False),  # empty reasoning
    ("<reasoning>r</reasoning><answer> </answer>", False),  # empty answer
    ("<reasoning>r</reasoning>so<answer>7</answer>", False),  # text between the blocks
    ("<reasoning>r<reasoning>r</reasoning></reasoning><answer>7</answer>", False),  # nested
    ("<answer>7</answer><reasoning>r</reasoning>", False),  # wrong order
    ("<reasoning>r</reasoning><answer>7", False),  # unclosed
])
def test_strict_parse(text, strict):
    assert DEFAULT_FORMAT.parse(text).strict is strict


def test_extract_answer_takes_the_last_complete_block():
    assert DEFAULT_FORMAT.extract_answer("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert DEFAULT_FORMAT.extract_answer("<answer>7") is None
    assert DEFAULT_FORMAT.extract_answer(None) is None
    assert DEFAULT_FORMAT.parse("<reasoning>r</reasoning><answer>7</answer>").reasoning == "r"


def test_custom_tags():
    fmt = ReasoningFormat("<think>", "</think>", "<final>", "</final>")
    text = fmt.format("2 + 2 = 4", "4")
    assert text == "<think>\n2 + 2 = 4\n</think>\n<final>4</final>"
    assert fmt.parse(text).strict and not DEFAULT_FORMAT.parse(text).strict
    assert all(tag in ct.system_prompt(fmt) for tag in fmt.tags)


@pytest.mark.parametrize("tags, message", [
    (("", "</r>", "<a>", "</a>"), "non-empty"),
    (("<a>", "</a>", "<a>", "</b>"), "inside"),
    (("<r>", "</r>", "<r", "</a>"), "inside"),
])
def test_bad_tags_are_refused_with_a_fix(tags, message):
    with pytest.raises(ValueError, match=message) as err:
        ReasoningFormat(*tags)
    assert "fix:" in str(err.value)


def test_system_prompt_states_the_format():
    prompt = ct.system_prompt()
    assert all(tag in prompt for tag in DEFAULT_FORMAT.tags)
    messages = ct.build_messages("  What is 3 + 4?  ")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == prompt and messages[1]["content"] == "What is 3 + 4?"
    assert ct.build_messages("q", system="Be brief.")[0]["content"] == "Be brief."


def test_restore_prefill():
    assert ct.restore_prefill("r\n</reasoning>\n<answer>7</answer>") == "<reasoning>\nr\n</reasoning>\n<answer>7</answer>"


# --- with the real tokenizer of the embedded model ------------------------------------------------


def test_the_decision_no_prefill(tokenizer):
    """The template does not open the reasoning block: the model writes the opening tag itself."""
    assert PREFILL is False
    prompt = ct.render_prompt(tokenizer, ct.build_messages("What is 3 + 4?"))
    assert prompt.endswith("<|im_start|>assistant\n")
    assert not ct.template_prefills(tokenizer)
    assert ct.system_prompt() in prompt


def test_prefill_on_request_appends_the_opening_tag_once(tokenizer):
    prompt = ct.render_prompt(tokenizer, ct.build_messages("What is 3 + 4?"), prefill=True)
    assert prompt.endswith("<|im_start|>assistant\n<reasoning>\n")
    assert prompt.count("<|im_start|>assistant\n<reasoning>") == 1


class TemplateTokenizer:
    """Wraps the real tokenizer, replacing only its chat template."""

    def __init__(self, tokenizer, template):
        self._tok, self.chat_template = tokenizer, template

    def apply_chat_template(self, messages, **kw):
        return self._tok.apply_chat_template(messages, chat_template=self.chat_template, **kw)

    def __call__(self, *a, **kw):
        return self._tok(*a, **kw)

    def decode(self, *a, **kw):
        return self._tok.decode(*a, **kw)


def test_a_template_that_prefills_is_detected(tokenizer):
    thinking = ct.CHATML_TEMPLATE.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<reasoning>\\n'")
    tok = TemplateTokenizer(tokenizer, thinking)
    assert ct.template_prefills(tok)
    # render_prompt does not open the block twice
    assert ct.render_prompt(tok, ct.build_messages("q"), prefill=True).count("<reasoning>") == 2  # system prompt + once
    check = ct.check_template(tok)
    assert check.prefilled and not check.ok and "prefilled=True" in " ".join(check.problems)
    assert ct.check_template(tok, prefill=True).prefilled


def test_check_template_shows_the_exact_text(tokenizer):
    check = ct.check_template(tokenizer)
    assert check.ok, check.problems
    assert not check.prefilled
    assert check.conversation.startswith(check.prompt)
    assert check.conversation.rstrip().endswith("<answer>7</answer><|im_end|>")
    assert 40 < check.prompt_tokens < 120 and 10 < check.completion_tokens < 60
    shown = str(check)
    assert check.prompt in shown and "check: OK" in shown
    prefilled = ct.check_template(tokenizer, prefill=True)
    assert prefilled.ok and prefilled.prefilled and prefilled.prompt.endswith("<reasoning>\n")
    assert prefilled.completion_tokens < check.completion_tokens


def test_check_template_flags_a_template_that_drops_the_system_prompt(tokenizer):
    no_system = ("{% for m in messages %}{% if m['role'] != 'system' %}{{ '<|im_start|>' + m['role'] + '\\n' + "
                 "m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    check = ct.check_template(TemplateTokenizer(tokenizer, no_system))
    assert not check.ok and "system prompt" in check.problems[0]


class FakeTokenizer:
    chat_template = None


def test_prepare_tokenizer_without_unsloth(monkeypatch):
    monkeypatch.setattr(ct, "importable", lambda name: False)
    tok = ct.prepare_tokenizer(FakeTokenizer())
    assert tok.chat_template == ct.CHATML_TEMPLATE  # no template: ChatML
    own = FakeTokenizer()
    own.chat_template = "{{ messages }}"
    assert ct.prepare_tokenizer(own).chat_template == "{{ messages }}"  # its own template is kept
    assert ct.prepare_tokenizer(FakeTokenizer(), "chatml").chat_template == ct.CHATML_TEMPLATE
    with pytest.raises(ValueError, match="needs unsloth.*fix:"):
        ct.prepare_tokenizer(FakeTokenizer(), "llama-3.1")


def test_prepare_tokenizer_uses_unsloths_get_chat_template(monkeypatch):
    calls = []

    def get_chat_template(tokenizer, chat_template="chatml", **kw):
        calls.append(chat_template)
        tokenizer.chat_template = f"unsloth:{chat_template}"
        return tokenizer

    module = types.ModuleType("unsloth.chat_templates")
    module.get_chat_template = get_chat_template
    monkeypatch.setitem(sys.modules, "unsloth", types.ModuleType("unsloth"))
    monkeypatch.setitem(sys.modules, "unsloth.chat_templates", module)
    monkeypatch.setattr(ct, "importable", lambda name: name == "unsloth")
    assert ct.prepare_tokenizer(FakeTokenizer(), "qwen-2.5").chat_template == "unsloth:qwen-2.5"
    assert calls == ["qwen-2.5"]
