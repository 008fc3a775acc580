"""``load_model``: from an in-memory module, a local Hugging Face directory or a GGUF file to a wrapper.

Nothing is ever fetched from a hub: directories are opened with ``local_files_only=True``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from seqexplain.atomic import special_file
from seqexplain.errors import InputError, ModelLoadError, UnsupportedError
from seqexplain.models.base import ModelKind, SequenceModel
from seqexplain.models.held import held_module
from seqexplain.models.hf import HFModel
from seqexplain.models.hf_module import (
    BARE_MODEL,
    UNSUPPORTED_KINDS,
    detect_kind,
    kind_of_class_name,
    unsupported_head,
)
from seqexplain.models.peft_models import is_adapter_folder, load_adapter_folder

_KINDS = ("causal", "seq2seq", "classifier", "labeller")
TOKENIZER_FILES = frozenset({"tokenizer.json", "vocab.json", "vocab.txt", "merges.txt", "spiece.model",
                             "sentencepiece.bpe.model", "tokenizer.model", "source.spm", "target.spm"})
"""A model directory needs one of these (or a ``*.model`` / ``*.tiktoken`` file) to have a tokenizer: without
them transformers builds an empty tokenizer that turns every text into no tokens."""


def _kind_from_config(config: Any, where: str = "the model") -> ModelKind:
    """The kind of a saved model: from the class names in ``architectures`` first (a BART or T5 classifier is an
    encoder-decoder too, but is explained as the classifier it was saved as), else ``seq2seq`` for an
    encoder-decoder or a ``...ForConditionalGeneration`` class, else :class:`UnsupportedError` when every class
    named has a head of a kind seqexplain does not explain (a masked LM, question answering, …), else ``causal`` (a
    bare model too: a GPT-2 body loads as a causal LM with its tied head; the adapter's kind check refuses what is
    not one)."""
    archs = [str(a) for a in getattr(config, "architectures", None) or []]
    for arch in archs:
        found = kind_of_class_name(arch)
        if found is not None:
            return found
    if getattr(config, "is_encoder_decoder", False) or any(
            a.endswith(("ForConditionalGeneration", "ForSeq2SeqLM", "MTModel")) for a in archs):
        return "seq2seq"
    unsupported = [(a, unsupported_head(a, bare=False)) for a in archs]
    if unsupported and all(what is not None for _, what in unsupported):
        raise UnsupportedError(f"{where} holds a {unsupported[0][0]} model, {unsupported[0][1]}; {UNSUPPORTED_KINDS} "
                               "(or give --kind / kind= to load it as one, which may leave a head untrained)")
    return "causal"


def _auto_class(kind: ModelKind) -> Any:
    import transformers

    return {
        "causal": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "classifier": transformers.AutoModelForSequenceClassification,
        "labeller": transformers.AutoModelForTokenClassification,
    }[kind]


def load_model(
    model_or_path: Any,
    tokenizer: Any = None,
    kind: ModelKind | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    model_id: str | None = None,
    autocast: torch.dtype | str | None = None,
    allow_new_head: bool = False,
) -> SequenceModel:
    """Wrap a model for explanation.

    ``model_or_path`` is a wrapper (returned itself: ``device``, ``dtype`` and ``autocast``, when given, are applied
    to it in place), an ``nn.Module`` with the Hugging Face calling convention
    (then ``tokenizer`` is required), a local model directory, or a ``.gguf`` file. ``kind`` is "causal",
    "seq2seq" or "classifier"; by default it is detected from the Auto-class mappings or the config. ``device``:
    cpu, cuda, cuda:N (an error when absent). ``autocast``: None (float32), ``"bf16"`` / ``"fp16"`` (or the torch
    dtypes) to run forwards under ``torch.autocast`` (see :class:`~seqexplain.models.base.SequenceModel`).
    A directory whose weights do not cover the model of the asked kind (``kind="classifier"`` on a language model:
    a head would be initialised at random and explained) is a :class:`ModelLoadError` unless ``allow_new_head``.
    """
    cast = _autocast_dtype(autocast)
    if kind is not None and kind not in _KINDS:
        raise InputError(f"unknown model kind {kind!r}; use one of {', '.join(_KINDS)}")
    new: list[str] = []
    model_or_path, tokenizer = held_module(model_or_path, tokenizer)  # a pipeline, a compiled or a PEFT model
    if isinstance(model_or_path, SequenceModel):
        if kind is not None and kind != model_or_path.kind:
            raise InputError(f"this wrapper explains a {model_or_path.kind} model, not a {kind}; drop kind= or wrap "
                             "the module again")
        # what was asked, and nothing else (the module's train/eval mode is the user's)
        return _placed(model_or_path, device, dtype, model_or_path.autocast if autocast is None else cast,
                       eval_mode=False)
    if isinstance(model_or_path, torch.nn.Module):
        model = model_or_path
        found = kind or detect_kind(model)
        if found is None:
            name = type(model).__name__
            what = unsupported_head(name)
            if what is not None:
                raise UnsupportedError(f"{name} is {what}; {UNSUPPORTED_KINDS}")
            raise InputError(
                f"cannot tell whether {name} is a causal LM, an encoder-decoder or a classifier; {UNSUPPORTED_KINDS}, "
                "or pass kind='causal' | 'seq2seq' | 'classifier' (or set a seqexplain_kind attribute) if it is one"
            )
        if tokenizer is None:
            raise InputError(f"pass the tokenizer of {type(model).__name__}: load_model(model, tokenizer)")
    elif isinstance(model_or_path, (str, os.PathLike)):
        if not str(model_or_path).strip():
            raise InputError("the model path is empty; give a model directory, a .gguf file or smollm2")
        model, tokenizer, found, new = _load_from_path(Path(model_or_path), tokenizer, kind, dtype, allow_new_head)
        model_id = model_id or str(model_or_path)
        if isinstance(model, SequenceModel):  # a native folder that names its own adapter (its kind checked)
            return _placed(model, device, dtype, cast)
    else:
        raise InputError(f"load_model takes a module, a wrapper or a path, not {type(model_or_path).__name__}")
    check_native_tokenizer(model, tokenizer)
    if device is not None:
        model = model.to(check_device(device))
    model.eval()
    wrapped = HFModel(model, tokenizer, found, model_id=model_id)
    wrapped.autocast = cast
    if new:  # weights allow_new_head let the loading initialise at random: every explanation says so
        wrapped.model_warnings = (
            f"{len(new)} weight(s) of this {found} model were not in {wrapped.model_id} and were initialised at "
            "random "
            f"({', '.join(new[:3])}{', ...' if len(new) > 3 else ''}; allow_new_head): the explanation is of an "
            "untrained head",)
    return wrapped


def check_native_tokenizer(model: torch.nn.Module, tokenizer: Any) -> None:
    """For seqexplain's own modules (RNN / transformer LM, seq2seq, Snell translator): :class:`InputError` when the
    tokenizer has more tokens than the input embedding table (another model's tokenizer: a token beyond the table
    would crash the first explanation with an ``IndexError``). Hugging Face models are left alone (their tables are
    often padded, and some tokenizers count tokens the table lacks on purpose)."""
    if not type(model).__module__.startswith("seqexplain.") or not hasattr(tokenizer, "__len__"):
        return
    layer = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(layer, "num_embeddings", None)
    if isinstance(rows, int) and len(tokenizer) > rows:
        raise InputError(f"the tokenizer has {len(tokenizer)} tokens but the model's embedding table {rows}: it "
                         f"does not belong to this {type(model).__name__}; give the tokenizer it was trained with")


def _placed(adapter: SequenceModel, device: str | torch.device | None, dtype: torch.dtype | None,
            cast: torch.dtype | None, eval_mode: bool = True) -> SequenceModel:
    """``adapter`` with its module on ``device`` in ``dtype`` (None: as it is), in eval mode (unless ``eval_mode``
    is False), ``autocast`` set."""
    module: Any = adapter.model
    if device is not None:
        module.to(check_device(device))
    if dtype is not None:
        module.to(dtype)
    if eval_mode:
        module.eval()
    adapter.autocast = cast
    return adapter


def _architectures(config: Any) -> str:
    """The model classes a saved config names (its ``model_type`` when it names none), for messages."""
    return ", ".join(getattr(config, "architectures", None) or []) or str(getattr(config, "model_type", "?"))


def _autocast_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if value is None or isinstance(value, torch.dtype) and value in (torch.bfloat16, torch.float16):
        return value
    if isinstance(value, str) and value.lower() in names:
        return names[value.lower()]
    raise InputError(f"autocast is None, 'bf16' or 'fp16', not {value!r}")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' logging, load reports, warnings and progress bars for the block (callers show their
    own status, and an offline tool's own errors say what to do)."""
    import functools

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # The GGUF reader draws its own tqdm bar, which would tear through a rich spinner.
    gguf_utils: Any = None
    with contextlib.suppress(ImportError):
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    old_tqdm = getattr(gguf_utils, "tqdm", None)
    if old_tqdm is not None:
        gguf_utils.tqdm = functools.partial(old_tqdm, disable=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if old_tqdm is not None:
            gguf_utils.tqdm = old_tqdm


def _load_from_path(path: Path, tokenizer: Any, kind: ModelKind | None, dtype: torch.dtype | None,
                    allow_new_head: bool = False) -> tuple[torch.nn.Module, Any, ModelKind, list[str]]:
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist; give a local model directory or a .gguf file")
    if (what := special_file(path)) is not None:
        raise ModelLoadError(f"model path {path} is {what}; give a local model directory or a .gguf file")
    with quiet_transformers():
        return _load_existing(path, tokenizer, kind, dtype, allow_new_head)


def _load_existing(path: Path, tokenizer: Any, kind: ModelKind | None, dtype: torch.dtype | None,
                   allow_new_head: bool, check_saved_kind: bool = True
                   ) -> tuple[torch.nn.Module, Any, ModelKind, list[str]]:
    """The module, tokenizer and kind in ``path``, and the weights the module has but the folder lacks (initialised
    at random, only with ``allow_new_head``). A forced ``kind`` other than the one the folder was saved as, whose
    weights nevertheless all load (one head read as another's), is refused unless ``check_saved_kind`` is False (a
    PEFT adapter brings its own head)."""
    import transformers

    common: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        common["dtype"] = dtype
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{path} is a file; give a model directory (config.json + weights) or a .gguf file")
        return (*_load_gguf(path, tokenizer, kind, common), [])
    if is_adapter_folder(path):
        def load_base(base: Path, tok: Any, k: ModelKind | None) -> tuple[torch.nn.Module, Any, ModelKind, list[str]]:
            return _load_existing(base, tok, k, dtype, True, check_saved_kind=False)  # the adapter brings the head

        return load_adapter_folder(path, tokenizer, kind, allow_new_head, TOKENIZER_FILES, load_base)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json; it is not a Hugging Face model directory (nor a PEFT "
                             "adapter folder: adapter_config.json)")
    native = _load_native(path, tokenizer)
    if native is not None:
        if kind is not None and kind != native[2]:  # a native folder knows its kind: a forced other one is a mistake
            raise InputError(f"{path} holds a {native[2]} model (its config.json says so), not a {kind}; leave kind "
                             f"out or give {native[2]!r}")
        if dtype is not None and not isinstance(native[0], SequenceModel):  # adapters get it in _placed
            native[0].to(dtype)
        return (*native, [])
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # corrupt JSON, unknown model_type, ...
        raise ModelLoadError(f"cannot read the config in {path}: {_first_line(exc)}") from exc
    found = kind or _kind_from_config(config, str(path))
    try:
        model, info = _auto_class(found).from_pretrained(str(path), output_loading_info=True, **common)
    except Exception as exc:
        if kind is not None and "Unrecognized configuration class" in str(exc):  # a forced kind the model is not
            raise InputError(f"{path} holds a {_architectures(config)} model, which transformers cannot load as a "
                             f"{kind} model; drop --kind / kind= to use the detected kind") from exc
        raise ModelLoadError(f"cannot load the {found} model weights in {path} (missing or corrupt?): "
                             f"{_first_line(exc)}") from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing and not allow_new_head:
        gap = (f"loading it as a {found} model leaves {len(missing)} weight(s) without values ("
               f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        archs = [str(a) for a in getattr(config, "architectures", None) or []]
        if kind is None and archs and all(unsupported_head(a) == BARE_MODEL for a in archs):
            raise ModelLoadError(f"{path} holds a {_architectures(config)} model, {BARE_MODEL}: loading it as a "
                                 f"{found} model leaves {len(missing)} weight(s) without values; {UNSUPPORTED_KINDS}")
        advice = ("drop --kind / kind= to use the detected kind" if kind is not None
                  else "give --kind / kind= if the model is of another kind")
        raise ModelLoadError(
            f"{path} holds a {_architectures(config)} model, but {gap}, which would be initialised at random and "
            f"explained; {advice}, or pass allow_new_head=True (CLI --allow-new-head) to explain an untrained head "
            "on purpose")
    saved_as = {kind_of_class_name(str(a)) for a in getattr(config, "architectures", None) or []} - {None}
    if kind is not None and check_saved_kind and saved_as and kind not in saved_as and not missing:
        raise InputError(  # e.g. a sequence classifier's head [C, H] fits a token classifier's: another model
            f"{path} holds a {_architectures(config)} model (a {' / '.join(sorted(map(str, saved_as)))}), whose "
            f"weights load into a {kind} model without a gap: its head would be read as another head and explained "
            "as a model that was never trained; drop --kind / kind= to use the detected kind")
    if tokenizer is None:
        files = [p.name for p in path.iterdir()]
        if not any(n in TOKENIZER_FILES or n.endswith((".model", ".tiktoken")) for n in files):
            raise ModelLoadError(f"{path} has no usable tokenizer files (none of "
                                 f"{', '.join(sorted(TOKENIZER_FILES))}); add them or pass tokenizer=... explicitly")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"{path} has no usable tokenizer files (tokenizer.json / vocabulary: "
                                 f"{_first_line(exc)}); add them or pass tokenizer=... explicitly") from exc
    return model, tokenizer, found, missing


def _load_native(path: Path, tokenizer: Any) -> tuple[Any, Any, ModelKind] | None:
    """seqexplain's own models (``model_type`` ``seqexplain-*`` in ``config.json``), or None for others. The Snell
    and soft-attention models come back as their adapters (:mod:`seqexplain.models.snell_saving`,
    :mod:`seqexplain.models.soft_attention_saving`), the others as modules."""
    import json

    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"cannot read {path / 'config.json'}: {exc}") from exc
    if not str(model_type).startswith("seqexplain-"):
        return None
    try:
        if str(model_type).startswith("seqexplain-snell-"):
            from seqexplain.models.snell_saving import load_snell

            adapter = load_snell(path, tokenizer)
            return adapter, adapter.tokenizer, adapter.kind
        if model_type == "seqexplain-soft-attention":
            from seqexplain.models.soft_attention_saving import load_soft_attention

            adapter = load_soft_attention(path, tokenizer)
            return adapter, adapter.tokenizer, adapter.kind
        if model_type == "seqexplain-seq2seq":
            from seqexplain.models.seq2seq import load_pretrained

            model, tok = load_pretrained(path)
            return model, tokenizer or tok, "seq2seq"
        if model_type == "seqexplain-rnn-lm":
            from seqexplain.models.rnn import WordTokenizer, load_rnn_lm

            rnn, vocab = load_rnn_lm(path)
            if tokenizer is None and vocab is None:
                raise ModelLoadError(f"{path} holds no vocabulary (vocab.json); save the model with its vocabulary, "
                                     "or from Python pass tokenizer=WordTokenizer(vocab)")
            return rnn, tokenizer or WordTokenizer(vocab), "causal"  # type: ignore[arg-type]
        if model_type == "seqexplain-transformer-lm":
            from seqexplain.models.transformer import load_transformer_lm

            if tokenizer is None and (path / "tokenizer.json").is_file():
                from seqexplain.data.tokenizers import load_tokenizer

                tokenizer = load_tokenizer(path)  # saved beside it (save_tokenizer)
            if tokenizer is None:
                raise ModelLoadError(f"{path} holds a seqexplain transformer LM without a tokenizer: save its "
                                     "tokenizer into the folder (seqexplain.data.tokenizers.save_tokenizer), or pass "
                                     "tokenizer= from Python")
            return load_transformer_lm(path), tokenizer, "causal"
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load the seqexplain model in {path} (missing or corrupt files?): {exc}") from exc
    raise ModelLoadError(f"{path}: unknown seqexplain model type {model_type!r}")


def _load_gguf(path: Path, tokenizer: Any, kind: ModelKind | None,
               common: dict[str, Any]) -> tuple[torch.nn.Module, Any, ModelKind]:
    import transformers

    found: ModelKind = kind or "causal"
    try:
        # dequantise to plain float weights: attributions need a differentiable float model
        common = {**common, "quantization_config": transformers.GgufConfig(dequantize=True)}
        model = _auto_class(found).from_pretrained(str(path.parent), gguf_file=path.name, **common)
        if tokenizer is None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                   local_files_only=True)
    except ImportError as exc:
        raise ModelLoadError(f"loading {path} needs the gguf package: pip install gguf ({exc})") from exc
    except Exception as exc:
        raise ModelLoadError(f"cannot load the GGUF file {path} (corrupt or unsupported?): {exc}") from exc
    return model, tokenizer, found


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, or :class:`InputError` when it is not a CPU or CUDA device (mps, xpu and meta
    are untested, and meta tensors hold no values) or names one this machine does not have."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"{device!r} is not a device; use cpu, cuda or cuda:N") from exc
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r}: seqexplain runs on cpu and cuda (its results are tested against each "
                         f"other there), not on {dev.type}; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but CUDA is not available on this machine (torch "
                         f"{torch.__version__}); use device='cpu' or install a CUDA build of torch")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def _first_line(exc: BaseException) -> str:
    """An exception's first line (transformers appends multi-line advice, e.g. to upgrade from git, that an
    offline tool cannot follow)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
