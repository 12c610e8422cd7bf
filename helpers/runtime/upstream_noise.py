"""Narrow filters for three harmless messages of the GPU stack that the suite cannot prevent (issue 31).

Each filter drops one message, where it comes from one upstream cause, and nothing else; each names its
upstream symptom, and ``tests/test_upstream_noise.py`` fails when the upstream code that causes it changes
(read from the installed files where the package is installed; transformers' message is checked here).
:func:`quiet_upstream` installs them (idempotent): ``helpers.runtime.unsloth_first.import_unsloth_first`` calls
it before ``import unsloth``, ``helpers.model.vllm_engine.apply_vllm_env`` before an engine starts.

- vLLM 0.26 "Unknown vLLM environment variable detected: VLLM_ATTENTION_BACKEND" (``vllm/envs.py``
  ``validate_environ``, l. 2096): unsloth_zoo 2026.10.9 ``vllm_utils.load_vllm`` sets
  ``VLLM_ATTENTION_BACKEND=FLASHINFER`` where FlashInfer, nvcc and ninja are found (l. 4734-4741), a variable
  vLLM removed in 0.13.0 (unsloth_zoo's own comment, l. 3374): it steers nothing, and clearing or presetting it
  from here would only move the warning (vLLM warns on any value, and Unsloth keeps an empty one elsewhere).
- transformers 5.17 "`torch_dtype` is deprecated! Use `dtype` instead!" (``configuration_utils.py`` l. 463/473,
  ``modeling_utils.py`` l. 1409), dropped only when Unsloth's code triggered it: unsloth_zoo 2026.10.9
  ``empty_model.create_empty_causal_lm`` sets ``config.torch_dtype`` (l. 268) and passes ``torch_dtype=`` to
  ``from_config`` (l. 287), unsloth 2026.10.9 ``models/rl.py`` reads ``config.torch_dtype`` (l. 4891); the
  suite itself passes ``dtype``. (transformers prints that message once per process: a later use by the
  user's own code then stays quiet too.)
- Python's "invalid escape sequence '\\.'" in torchao 0.17 (``torchao/quantization/quant_api.py`` l. 1731, a
  docstring), a ``SyntaxWarning`` (``DeprecationWarning`` before Python 3.12) shown when that file is
  compiled without a cached ``.pyc``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

VLLM_ATTENTION_BACKEND_WARNING = "Unknown vLLM environment variable detected: VLLM_ATTENTION_BACKEND"
TORCH_DTYPE_WARNING = "`torch_dtype` is deprecated! Use `dtype` instead!"
TORCH_DTYPE_LOGGERS = ("transformers.configuration_utils", "transformers.modeling_utils")
_UNSLOTH_DIRS = tuple(f"{os.sep}{name}{os.sep}" for name in ("unsloth", "unsloth_zoo"))


class _DropVllmAttentionBackend(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != VLLM_ATTENTION_BACKEND_WARNING


class _DropUnslothTorchDtype(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != TORCH_DTYPE_WARNING:
            return True
        frame = sys._getframe(1)
        while frame is not None:  # only when Unsloth's code is on the stack
            if any(part in frame.f_code.co_filename for part in _UNSLOTH_DIRS):
                return False
            frame = frame.f_back
        return True


def _has(logger: logging.Logger, kind: type) -> bool:
    return any(isinstance(f, kind) for f in logger.filters)


def quiet_upstream() -> None:
    """Install the three filters (once per process; filters on loggers survive vLLM's logging set-up)."""
    vllm_envs = logging.getLogger("vllm.envs")
    if not _has(vllm_envs, _DropVllmAttentionBackend):
        vllm_envs.addFilter(_DropVllmAttentionBackend())
    for name in TORCH_DTYPE_LOGGERS:
        logger = logging.getLogger(name)
        if not _has(logger, _DropUnslothTorchDtype):
            logger.addFilter(_DropUnslothTorchDtype())
    # A compile-time warning's "module" is its file's path without ".py": match torchao's files by path.
    for category in (SyntaxWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", message=r"invalid escape sequence", category=category,
                                module=r".*[/\\]torchao[/\\]")
