"""Which model a name means: the embedded offline SmolLM2-135M-Instruct, a profile's default hub model, or
what the user named (:func:`resolve_name`)."""

from __future__ import annotations

import logging

from helpers.model.embedded import EMBEDDED_MODEL
from helpers.runtime.hardware import hub_reachable
from helpers.runtime.profiles import settings

log = logging.getLogger(__name__)

_EMBEDDED_ALIASES = {None, "", "embedded", EMBEDDED_MODEL, f"HuggingFaceTB/{EMBEDDED_MODEL}"}


def resolve_name(name: str | None, profile: str) -> str | None:
    """The model to load: None means the embedded offline model."""
    if name in _EMBEDDED_ALIASES:
        if profile in ("cpu", "ci"):
            return None
        default = settings(profile).model_name
        if default and hub_reachable():
            return default
        log.warning("the Hugging Face hub is not reachable: loading the embedded %s", EMBEDDED_MODEL)
        return None
    return name
