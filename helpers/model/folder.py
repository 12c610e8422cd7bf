"""The check of a local model folder made before anything loads (:func:`check_model_folder`): the CLI's
``--model`` pre-check and :func:`helpers.model.load.load_model` both call it, and each problem is one
:class:`helpers.model.checks.ModelLoadError` line naming the file and the fix.

It reads headers and small files only (milliseconds, plus building the architecture on the ``meta``
device, which ``load_model`` needs anyway for its memory estimate):

- ``config.json`` must be a JSON object that transformers reads, for a causal LM;
- a tokenizer must be there (``tokenizer.json``, or a slow tokenizer's vocabulary), its JSON files parse;
- the weights transformers will read (``model.safetensors``, else every shard that
  ``model.safetensors.index.json`` names) must exist and open: a truncated file or a corrupt header
  fails here, and every key the index names must sit in its shard;
- the tensors (names and shapes from the headers) must be this architecture's: a file with no tensors
  or none of the model's, a shape that differs from the config's, or weights of the model missing
  from the files are refused. Key names go through transformers' own renaming
  (``transformers.core_model_loading.rename_source_key``); where one of its converters (fused or split
  tensors) applies, shapes and missing weights are left to the check after loading
  (:mod:`helpers.model.loaded`), which also catches NaN/inf values that only reading the data finds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from helpers.files.disk import first_line
from helpers.files.integrity import file_problem
from helpers.model.checks import ModelLoadError, check_causal_lm, local_folder_check, unknown_architecture

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json",
                   "vocab.txt", "tekken.json")
SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
_PARSE_LIMIT = 256 * 2**10
_AGAIN = "fix: copy the model folder again from its source (config.json, tokenizer files and weights together)"


@dataclass(frozen=True)
class FolderCheck:
    """What the check learnt: the model's config, and its parameter count (``None`` if not built)."""

    config: object
    parameters: int | None


def check_model_folder(path: str, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> FolderCheck:
    """Refuse a local model folder that cannot load as the checkpoint it claims to be (see the module
    docstring); return its config and parameter count."""
    local_folder_check(path, allow_pickle)
    folder = Path(path).expanduser()
    config = _config(folder, trust_remote_code)
    _check_tokenizer(folder)
    headers = _weight_headers(folder, allow_pickle)
    parameters = None
    if headers is not None:
        parameters = _compare_with_architecture(folder, config, headers, trust_remote_code)
    return FolderCheck(config, parameters)


def _config(folder: Path, trust_remote_code: bool):
    from transformers import AutoConfig

    file = folder / "config.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{file} cannot be read as JSON ({type(exc).__name__}: {first_line(exc)}); {_AGAIN}.") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{file} holds a JSON {type(data).__name__}, not a model config (an object with "
                             f"model_type); {_AGAIN}.")
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise (unknown_architecture(str(folder), exc) or ModelLoadError(
            f"the config in {folder} cannot be loaded ({type(exc).__name__}: {first_line(exc)[:150]}); "
            "fix: copy the model folder again, or upgrade transformers.")) from None
    check_causal_lm(config, str(folder), trust_remote_code)
    return config


def _check_tokenizer(folder: Path) -> None:
    present = [name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not present:
        raise ModelLoadError(f"{folder} has no tokenizer (none of tokenizer.json, tokenizer.model, vocab.json); "
                             "fix: copy the tokenizer files (tokenizer.json, tokenizer_config.json) from the model's "
                             "source into the folder, or save them with tokenizer.save_pretrained(folder).")
    for name in [*present, "tokenizer_config.json", "special_tokens_map.json"]:
        if name.endswith(".json") and (folder / name).exists() and (issue := _json_problem(folder / name)):
            raise ModelLoadError(f"{folder / name} is {issue}; fix: copy the tokenizer files from the model's "
                                 "source again.")


def _json_problem(path: Path) -> str | None:
    """:func:`helpers.files.integrity.file_problem` for a small JSON file; a large one (a 3.5 MB
    ``tokenizer.json`` takes 70-160 ms to parse, and the tokenizer parses it again right after) must
    only open and close as an object, which a half-written copy does not."""
    if path.stat().st_size <= _PARSE_LIMIT:
        return file_problem(path)
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
        fh.seek(-64, 2)
        tail = fh.read().rstrip()
    return None if head.startswith(b"{") and tail.endswith(b"}") else "unreadable (cut off: not a whole JSON object)"


def _weight_headers(folder: Path, allow_pickle: bool) -> dict[str, tuple[int, ...]] | None:
    """``{tensor name: shape}`` over the safetensors files transformers will read; ``None`` when the
    weights are pickles the caller allowed (their headers cannot be read without unpickling)."""
    if (folder / SINGLE).is_file():
        files, listed = [folder / SINGLE], None
    elif (folder / INDEX).exists():
        listed = _index(folder)
        files = [folder / shard for shard in sorted(set(listed.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelLoadError(f"{folder} lacks {len(missing)} of the {len(files)} weight shards that {INDEX} "
                                 f"lists ({', '.join(missing[:3])}); fix: copy the missing shard files again "
                                 "(every model-*-of-*.safetensors).")
    else:
        if allow_pickle and not any(folder.glob("*.safetensors")):
            return None
        others = sorted(p.name for p in folder.glob("*.safetensors"))
        raise ModelLoadError(f"{folder} has no {SINGLE} and no {INDEX} (only {', '.join(others[:3])}), so "
                             f"transformers finds no weights; {_AGAIN}.")
    from safetensors import safe_open

    headers: dict[str, tuple[int, ...]] = {}
    for file in files:
        if (issue := file_problem(file)) is not None:
            raise ModelLoadError(f"{file} is {issue}; fix: copy that file again from the model's source (or "
                                 "save the model again).")
        with safe_open(str(file), framework="pt") as fh:
            shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}
        if listed is not None:
            absent = [key for key, shard in listed.items() if shard == file.name and key not in shapes]
            if absent:
                raise ModelLoadError(f"{file} does not hold {len(absent)} tensors that {INDEX} places there "
                                     f"(e.g. {absent[0]}); {_AGAIN}.")
        headers.update(shapes)
    if not headers:
        raise ModelLoadError(f"{files[0]} holds no tensors at all (an empty weights file); {_AGAIN}.")
    return headers


def _index(folder: Path) -> dict[str, str]:
    try:
        weight_map = json.loads((folder / INDEX).read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
            raise ValueError("its weight_map is not a non-empty object of tensor name -> file")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{folder / INDEX} is not a readable shard index ({type(exc).__name__}: {first_line(exc)}); "
                             f"{_AGAIN}.") from None
    return weight_map


def meta_model(config, trust_remote_code: bool = False):
    """The architecture of ``config`` on the ``meta`` device (no memory, no data), or ``None`` when
    transformers cannot build it that way."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # a custom or unusual architecture: the folder checks above still hold
        return None


def _compare_with_architecture(folder: Path, config, headers: dict[str, tuple[int, ...]],
                               trust_remote_code: bool) -> int | None:
    """Refuse tensors that are not this architecture's (none of them, wrong shapes, weights missing);
    return the architecture's parameter count (``None`` if it cannot be built)."""
    meta = meta_model(config, trust_remote_code)
    if meta is None:
        return None
    parameters = sum(p.numel() for p in meta.parameters())
    if getattr(config, "quantization_config", None) or getattr(meta, "is_custom_code", lambda: False)():
        return parameters  # packed quantized tensors / custom code: the loading info after loading decides
    expected = {key: tuple(t.shape) for key, t in meta.state_dict().items()}
    rename = _renamer(meta, expected)
    matched, converted, wrong = set(), False, []
    for key, shape in headers.items():
        target, converter = rename(key)
        if target not in expected:
            continue
        matched.add(target)
        converted = converted or converter is not None
        if converter is None and shape != expected[target]:
            wrong.append(f"{key} is {list(shape)} in the file, {list(expected[target])} for this config")
    kind = getattr(config, "model_type", "this")
    if not matched:
        raise ModelLoadError(f"the weights in {folder} are not a {kind} model's: none of their {len(headers)} "
                             f"tensors (e.g. {next(iter(headers))}) is one of its weights; {_AGAIN}.")
    if wrong:
        raise ModelLoadError(f"the weights in {folder} do not fit its config.json ({len(wrong)} tensors of the wrong "
                             f"shape, e.g. {wrong[0]}): they come from another model; {_AGAIN}.")
    if not converted:
        optional = set(getattr(meta, "all_tied_weights_keys", {}) or {})
        patterns = getattr(meta, "_keys_to_ignore_on_load_missing", None) or []
        ignore = re.compile("|".join(f"({p})" for p in patterns)) if patterns else None
        missing = sorted(k for k in expected.keys() - matched - optional if not (ignore and ignore.search(k)))
        if missing:
            raise ModelLoadError(f"the weights in {folder} lack {len(missing)} of the model's {len(expected)} tensors "
                                 f"(e.g. {missing[0]}), which would start random; {_AGAIN}.")
    return parameters


def _renamer(meta, expected: dict):
    """``key -> (model key, converter pattern or None)`` as transformers renames checkpoint keys when it
    loads (its conversion mapping, then the base-model prefix added or stripped)."""
    prefix = meta.base_model_prefix
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

        mapping = get_model_conversion_mapping(meta)
        renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
        converters = [m for m in mapping if isinstance(m, WeightConverter)]
    except (ImportError, AttributeError, TypeError):  # another transformers: prefix handling only
        renamings, converters, rename_source_key = [], [], None

    def rename(key: str) -> tuple[str, str | None]:
        if rename_source_key is not None:
            target, converter = rename_source_key(key, renamings, converters, prefix, expected)
            if target in expected or key not in expected:
                return target, converter
        if key in expected:
            return key, None
        if prefix and key.startswith(prefix + ".") and key[len(prefix) + 1:] in expected:
            return key[len(prefix) + 1:], None
        return (f"{prefix}.{key}" if prefix else key), None

    return rename
