"""Import Unsloth before transformers, TRL and PEFT, where this process trains through Unsloth (issue 31).

Unsloth patches transformers, TRL and PEFT when it is imported; imported after any of them it warns
("Unsloth should be imported before [transformers] to ensure all optimizations are applied", unsloth
2026.10.9 ``unsloth/_gpu_init.py`` l. 20-21 and 135-143), which notebooks 01, 02, 03, 06 and 07 printed on an
H100 (2026-12-06): ``load_model`` reads the model's config with transformers before its ``import unsloth``.
:func:`import_unsloth_first`, called at the top of ``helpers.runtime.profiles.use_profile`` (the first thing
every notebook does, before any cell imports transformers), imports it first. It does nothing off Unsloth's
path (a CPU, several processes, ``$GRPO_PLAIN_TRL``) and, unless ``anywhere=True``, outside a Jupyter kernel,
so ``grpo-notebooks run`` itself (which resolves the profile too) never imports Unsloth. Where vLLM will
run, it sets vLLM's environment first, as ``load_model`` does: imported without ``UNSLOTH_VLLM_STANDBY=1``,
unsloth_zoo sets ``PYTORCH_ALLOC_CONF=expandable_segments:True`` and the engine's start then fails ("vLLM standby
mode cannot start because `expandable_segments:True` is set", notebook 01 on an H100, 2026-12-07).
"""

from __future__ import annotations

import sys

from helpers.model.vllm_engine import apply_vllm_env
from helpers.runtime.distributed import unsloth_path
from helpers.runtime.hardware import detect, in_notebook
from helpers.runtime.speed_options import apply, defaults
from helpers.runtime.upstream_noise import quiet_upstream

PATCHED_BY_UNSLOTH = ("trl", "transformers", "peft")  # unsloth/_gpu_init.py's critical_modules


def prepare_unsloth_import(hw, *, use_vllm: bool) -> None:
    """What must be set before ``import unsloth`` (here and in ``helpers.model.load.load_model``): the filters of
    :func:`quiet_upstream`, vLLM's environment where vLLM will run (Unsloth reads ``UNSLOTH_VLLM_STANDBY`` at
    import; set later, the engine's start is refused for ``expandable_segments``), then the speed options
    (``helpers.runtime.speed_options``; its qwen2_graphs option imports unsloth itself)."""
    if use_vllm:
        apply_vllm_env()  # installs quiet_upstream's filters too
    else:
        quiet_upstream()
    apply(defaults(hw))


def import_unsloth_first(hw=None, *, anywhere: bool = False) -> str:
    """Import ``unsloth`` now if this process will train through it (:func:`unsloth_path`) and runs in a Jupyter
    kernel (or ``anywhere``), after the environment options Unsloth reads at import
    (``helpers.runtime.speed_options``), the filters of :func:`quiet_upstream` and, where vLLM will run, vLLM's
    environment (``helpers.model.vllm_engine.VLLM_ENV``: its standby flag decides at import whether Unsloth turns
    on ``expandable_segments``, which the engine's sleep mode then refuses); returns what it did."""
    if sys.modules.get("unsloth") is not None:
        return "unsloth was already imported"
    if not (anywhere or in_notebook()):
        return "skipped: not a notebook kernel"
    hw = detect() if hw is None else hw
    if not unsloth_path(hw):
        return "skipped: this process does not train through Unsloth"
    late = [name for name in PATCHED_BY_UNSLOTH if name in sys.modules]
    prepare_unsloth_import(hw, use_vllm=hw.vllm)
    import unsloth  # noqa: F401  (patches transformers, TRL and PEFT)

    return "imported unsloth" + (f" (after {', '.join(late)}: Unsloth warned)" if late else "")
