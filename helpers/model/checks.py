"""Checks made before a model is loaded, each failing with a one-line :class:`ModelLoadError` (cause and fix).

- a local path that does not exist, a file, a folder without ``config.json`` (:func:`local_folder_check`),
  each told apart from a hub name that is misspelt or unreachable (``helpers.model.load``);
- weights only as pickles (``pytorch_model.bin``), locally or on the hub (:func:`check_hub_weights`):
  refused unless the caller opts in with ``allow_pickle=True``;
- an architecture this transformers does not know (:func:`unknown_architecture`), or one without a
  text-generation head (:func:`check_causal_lm`).

The whole-folder check built on these (headers, shards, tokenizer, shapes) is
:func:`helpers.model.folder.check_model_folder`; the checks after loading are :mod:`helpers.model.loaded`.
"""

from __future__ import annotations

from pathlib import Path

from helpers.files.integrity import PickleWeightsError, check_weights_folder


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the cause and the fix on one line."""


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id (``org/name``): absolute, ``.``/``~``-relative, or more than one ``/``.

    >>> [looks_like_path(n) for n in ["unsloth/Qwen2.5-0.5B", "./models/x", "/data/m", "~/m", "a/b/c", "gpt2"]]
    [False, True, True, True, True, False]
    """
    return (name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or
            (len(name) > 1 and name[1] == ":"))


def local_folder_check(name: str, allow_pickle: bool) -> None:
    """One-line errors for a local model path: missing, not a folder, no config.json, pickle-only weights."""
    path = Path(name).expanduser()
    if not path.exists():
        if looks_like_path(name):
            raise ModelLoadError(f"no model folder at {path}: the path does not exist; fix: check the path (a folder "
                                 "with config.json and *.safetensors), or pass a hub name such as "
                                 "'unsloth/Qwen2.5-1.5B-Instruct'.")
        return  # a hub name
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file, not a model folder; fix: pass the folder that holds config.json "
                             "and the *.safetensors weights.")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a model folder: it has no config.json; fix: pass the folder that holds "
                             "config.json and the *.safetensors weights (e.g. the output of save_pretrained).")
    try:
        check_weights_folder(path, allow_pickle=allow_pickle)
    except PickleWeightsError as exc:
        raise ModelLoadError(str(exc)) from None


def unknown_architecture(name: str, exc: Exception) -> ModelLoadError | None:
    """The error for a local folder whose config names a ``model_type`` this transformers does not know."""
    import json

    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        model_type = json.loads((Path(name).expanduser() / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return ModelLoadError(f"{Path(name).expanduser() / 'config.json'} cannot be read as a model config "
                              f"({type(exc).__name__}); fix: copy the model folder again.")
    if model_type is None:
        return ModelLoadError(f"{Path(name).expanduser() / 'config.json'} has no model_type, so the architecture is "
                              "unknown; fix: copy the model's own config.json into the folder.")
    if model_type not in CONFIG_MAPPING:
        return ModelLoadError(f"unknown architecture {model_type!r} in {Path(name).expanduser()}: transformers "
                              f"{transformers.__version__} has no such model type; fix: upgrade transformers (pip "
                              "install -U transformers), or pass trust_remote_code=True if the model ships its own "
                              "code and you trust it.")
    return None


def check_causal_lm(config, name: str, trust_remote_code: bool) -> None:
    """Refuse a known architecture that has no text-generation head (e.g. a BERT encoder)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if trust_remote_code and getattr(config, "auto_map", None):
        return
    model_type = getattr(config, "model_type", None)
    if model_type and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(f"{name} is a {model_type!r} model, which has no text-generation (causal LM) head in "
                             "transformers; fix: pick a causal language model, e.g. 'unsloth/Qwen2.5-1.5B-Instruct'.")


def check_hub_weights(name: str) -> None:
    """Refuse a hub repository whose weights are pickles only (listing its files; silent if it cannot)."""
    try:
        from huggingface_hub import list_repo_files

        files = list_repo_files(name)
    except Exception:  # listing is a courtesy: transformers' use_safetensors=True still refuses pickles
        return
    if not any(f.endswith(".safetensors") for f in files) and any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in files):
        raise ModelLoadError(f"the hub repository {name!r} has its weights only as pickles (e.g. pytorch_model.bin), "
                             "which can run code when loaded; fix: use a repository with *.safetensors weights, or "
                             "pass allow_pickle=True if you trust its source.")
