"""How the tests read a refusal: one line that names the fix (the project's rule for bad input)."""

from __future__ import annotations


def one_line_fix(exc_info, *needles) -> str:
    """The message of ``pytest.raises``'s ``exc_info``, checked to be one line with ``fix:`` and every needle."""
    message = str(exc_info.value)
    assert "\n" not in message and "fix:" in message, message
    for needle in needles:
        assert needle in message, message
    return message
