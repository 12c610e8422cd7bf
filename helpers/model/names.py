"""Which model a name means (:func:`resolve_name`), the one rule used by the loader, notebook 04's tokenizer
and the command's pre-check alike: the embedded offline SmolLM2-135M-Instruct, the profile's model
(``model_name`` in the profile table), or exactly what the user named."""

from __future__ import annotations

import logging

from helpers.model.embedded import EMBEDDED_MODEL
from helpers.runtime.hardware import hub_reachable
from helpers.runtime.profiles import profile_settings

log = logging.getLogger(__name__)

EMBEDDED_NAMES = ("embedded", EMBEDDED_MODEL)  # names that always mean the embedded model
EMBEDDED_HUB_ID = f"HuggingFaceTB/{EMBEDDED_MODEL}"


def resolve_name(name: str | None, profile: str) -> str | None:
    """The model ``name`` means on ``profile``; ``None`` stands for the embedded offline model.

    - ``"embedded"`` or ``"SmolLM2-135M-Instruct"``: the embedded model, on every profile;
    - ``"HuggingFaceTB/SmolLM2-135M-Instruct"``: from the hub when it answers, else the embedded copy of the
      same model (logged);
    - ``None`` or ``""``: the profile's ``model_name``; the embedded model when the profile has none, or when the
      hub cannot be reached (logged as a warning: another model than the profile's will load);
    - anything else (a hub id or a folder): exactly that.

    >>> resolve_name("embedded", "gpu"), resolve_name(None, "cpu"), resolve_name("org/model", "cpu")
    (None, None, 'org/model')
    """
    if name in EMBEDDED_NAMES:
        return None
    if name == EMBEDDED_HUB_ID:
        if hub_reachable():
            return name
        log.info("the Hugging Face hub is not reachable: loading the embedded copy of %s", name)
        return None
    if name:
        return name
    default = profile_settings(profile).model_name
    if default is None:
        return None
    if hub_reachable():
        return default
    log.warning("the Hugging Face hub is not reachable: loading the embedded %s instead of the %s profile's %s",
                EMBEDDED_MODEL, profile, default)
    return None
