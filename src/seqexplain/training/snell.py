"""Training the Snell et al. (2021) models with a checkpoint schedule, resumably (:func:`run_schedule`; the
classifier: :func:`train_snell_classifier`, the translator: :mod:`seqexplain.training.snell_translation`).

* **Schedule** (:func:`checkpoint_schedule`): explicit steps plus every ``N`` updates, always with 0 (the initial
  weights) and the last step; **checkpoint N holds the weights after N updates**. A step beyond the training length
  is an :class:`InputError`.
* **Batches** are a pure function of ``(seed, step)``: epoch ``e`` visits the examples in the order
  ``numpy.random.default_rng([seed, e]).permutation(n)`` in consecutive slices of ``batch_size`` (the last, short
  slice of an epoch is dropped), so a resumed run sees exactly the batches an uninterrupted one would. The initial
  weights come from ``torch.manual_seed(seed)``; torch's RNG state (dropout masks) is saved with each checkpoint's
  resume state, so resuming is exact.
* **Optimiser**: Adam (``lr``); loss: cross-entropy over the class logits (the BCE of a binary model).
* **Files** in the run folder: ``train.json`` (model and training configs, vocabulary hash), ``checkpoints/
  step_<N>.safetensors`` (weights), ``resume.safetensors`` (weights + Adam state + RNG state + step, written at each
  checkpoint; a rerun continues from it), ``tb/`` (TensorBoard: the training loss every 10 updates and at each
  checkpoint); files written atomically.
* **Vectors** (optional): a word2vec text file initialises the embedding rows of the words it has.
* **Device** (:func:`resolve_device`: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``): the weights are initialised on the
  CPU (so every device starts from the same weights), then moved; every batch tensor is made on the model's device.
  Saved files are device-independent: tensors are saved from the CPU, the resume state holds the CPU RNG state and,
  on CUDA, the CUDA RNG state too (dropout masks come from it there; a run resumed on another device continues from
  the same weights and Adam state, but its dropout masks are not those of an uninterrupted run).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import DataError, InputError
from seqexplain.models.loading import check_device
from seqexplain.models.rnn.vocab import Vocab, embeddings_for_vocab
from seqexplain.models.snell_classifier import SnellClassifier, SnellClassifierConfig, pad_batch

M = TypeVar("M", bound=torch.nn.Module)

Dataset = Sequence[tuple[Sequence[int], int]]  # (token ids incl. <bos>/<eos>, label)


@dataclass
class SnellTrainConfig:
    """``steps`` updates of ``batch_size`` examples with Adam(``lr``); checkpoints at ``checkpoint_steps`` and every
    ``checkpoint_every`` updates (0: none besides 0 and ``steps``). ``steps`` or ``batch_size`` below 1, ``lr`` <= 0
    or a negative ``checkpoint_every`` is an :class:`InputError`."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    checkpoint_steps: list[int] = field(default_factory=list)
    checkpoint_every: int = 0
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise InputError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0 (0 trains nothing), got {self.lr}")
        if self.checkpoint_every < 0:
            raise InputError(f"checkpoint_every must be 0 (off) or positive, got {self.checkpoint_every}")


def checkpoint_schedule(steps: int, explicit: Sequence[int] = (), every: int = 0) -> list[int]:
    """Sorted checkpoint steps: 0, ``explicit``, the multiples of ``every`` and ``steps`` (module docstring)."""
    if steps < 1:
        raise InputError(f"training needs at least 1 step, got {steps}")
    if every < 0:
        raise InputError(f"checkpoint_every must be 0 (off) or positive, got {every}")
    bad = [int(s) for s in explicit if not 0 <= int(s) <= steps]
    if bad:
        raise InputError(f"checkpoint steps {bad} lie outside the training length 0..{steps}; "
                         f"drop them or train for more steps")
    out = {0, steps, *(int(s) for s in explicit)}
    if every:
        out.update(range(every, steps + 1, every))
    return sorted(out)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the examples of update ``step`` (0-based; module docstring)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise InputError(f"batch_size {batch_size} exceeds the {n} training examples")
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[k * batch_size : (k + 1) * batch_size]


def vocab_hash(vocab: Vocab) -> str:
    """A short fingerprint of a vocabulary's word list (runs compared together must share it)."""
    import hashlib

    return hashlib.sha256("\n".join(vocab.itos).encode("utf-8")).hexdigest()[:16]


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``device`` as a torch device: ``auto`` is ``cuda`` when CUDA is available, else ``cpu``; a device this machine
    does not have is an :class:`InputError` (:func:`seqexplain.models.loading.check_device`)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s parameters."""
    return next(model.parameters()).device


def checkpoint_path(run_dir: Path | str, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.safetensors"


def _save_weights(model: torch.nn.Module, path: Path, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"step": str(step)})


def _save_resume(model: torch.nn.Module, opt: torch.optim.Optimizer, path: Path, step: int) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"opt.{i}.{name}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    dev = model_device(model)
    if dev.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(dev)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step)})


def _load_resume(model: torch.nn.Module, opt: torch.optim.Optimizer, path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        step = int((fh.metadata() or {})["step"])
    tensors = load_file(str(path), device="cpu")
    torch.set_rng_state(tensors.pop("rng.torch"))
    cuda_rng = tensors.pop("rng.cuda", None)
    dev = model_device(model)
    if cuda_rng is not None and dev.type == "cuda":
        torch.cuda.set_rng_state(cuda_rng, dev)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    saved = opt.state_dict()
    saved["state"] = state
    opt.load_state_dict(saved)
    return step


def load_run_weights(run_dir: Path | str, step: int, build: Callable[[dict[str, Any]], M],
                     device: str | torch.device = "cpu") -> M:
    """``build(meta["model"])`` with the weights of checkpoint ``step`` of a run folder, on ``device``, in eval mode
    (the weights are read on the CPU first, so a run trained on a GPU loads anywhere)."""
    dev = resolve_device(device)
    meta = read_run_meta(run_dir)
    model = build(meta["model"])
    path = checkpoint_path(run_dir, step)
    if not path.is_file():
        raise DataError(f"{path} is missing; the run's checkpoints are {meta['schedule']}")
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(dev).eval()


def load_checkpoint(run_dir: Path | str, step: int, device: str | torch.device = "cpu") -> SnellClassifier:
    """The model of a run folder with the weights of checkpoint ``step``, on ``device``."""
    return load_run_weights(run_dir, step, lambda cfg: SnellClassifier(SnellClassifierConfig.from_dict(cfg)), device)


def read_run_meta(run_dir: Path | str) -> dict[str, Any]:
    path = Path(run_dir) / "train.json"
    if not path.is_file():
        raise DataError(f"{path} is missing: {run_dir} is not a training run folder")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def train_snell_classifier(model_config: SnellClassifierConfig, train: Dataset, config: SnellTrainConfig,
                           run_dir: Path | str, vocab: Vocab, *, vectors: Path | str | None = None,
                           stop_at: int | None = None, progress: bool = False,
                           device: str | torch.device = "cpu") -> SnellClassifier:
    """Train (or resume) a classifier run in ``run_dir`` on ``device`` (module docstring); returns the model after the
    last update done. ``stop_at`` ends the call after that many updates (as an interruption would); a rerun resumes."""
    if model_config.vocab_size != len(vocab):
        raise InputError(f"the model's vocab_size {model_config.vocab_size} differs from the vocabulary's "
                         f"{len(vocab)} words")
    meta = {"model": model_config.to_dict(), "vocab_hash": vocab_hash(vocab), "n_train": len(train)}
    torch.manual_seed(config.seed)
    model = SnellClassifier(model_config)
    if vectors is not None:
        with torch.no_grad():
            model.embedding.weight.copy_(embeddings_for_vocab(vocab, vectors, allow_missing=True, seed=config.seed))
    model.to(resolve_device(device))

    def batch_loss(net: torch.nn.Module, idx: np.ndarray) -> torch.Tensor:
        dev = model_device(net)
        ids, lengths = pad_batch([train[i][0] for i in idx])
        logits, _ = net(ids.to(dev), lengths.to(dev))
        return torch.nn.functional.cross_entropy(logits, torch.tensor([int(train[i][1]) for i in idx], device=dev))

    out = run_schedule(model, config, run_dir, meta, len(train), batch_loss, stop_at=stop_at, progress=progress)
    if not (Path(run_dir) / "vocab.json").is_file():
        vocab.save(Path(run_dir) / "vocab.json")
    return out  # type: ignore[return-value]


def run_schedule(model: torch.nn.Module, config: SnellTrainConfig, run_dir: Path | str, meta: dict[str, Any],
                 n_train: int, batch_loss: Callable[[torch.nn.Module, np.ndarray], torch.Tensor], *,
                 stop_at: int | None = None, progress: bool = False) -> torch.nn.Module:
    """The training loop shared by the Snell models: ``config.steps`` Adam updates of ``batch_loss(model, indices)``
    on the batches of :func:`batch_indices`, checkpoints on the schedule, resumption from ``resume.safetensors``
    (weights, Adam state, torch's RNG state — dropout masks continue exactly), ``train.json`` holding ``meta`` plus
    the training config (a folder holding other settings is refused). ``model`` is freshly initialised with
    ``torch.manual_seed(config.seed)`` by the caller and already on its device (``batch_loss`` makes its tensors
    there)."""
    schedule = checkpoint_schedule(config.steps, config.checkpoint_steps, config.checkpoint_every)
    batch_indices(n_train, config.batch_size, config.seed, 0)  # refuses a batch larger than the data, before any file
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "train": asdict(config), "schedule": schedule}
    meta_path = run / "train.json"
    if meta_path.is_file():
        old = read_run_meta(run)
        if {k: old.get(k) for k in meta} != meta:
            raise InputError(f"{run} holds a run with other settings; use a new folder or delete it to restart")
    else:
        atomic_write_text(meta_path, json.dumps(meta, indent=1))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    resume = run / "resume.safetensors"
    step = _load_resume(model, opt, resume) if resume.is_file() else 0
    if step == 0:
        _save_weights(model, checkpoint_path(run, 0), 0)
    writer = _writer(run) if config.tensorboard else None
    end = config.steps if stop_at is None else min(config.steps, stop_at)
    bar = _bar(end - step, progress)
    checkpoints = set(schedule)
    model.train()
    try:
        while step < end:
            loss = batch_loss(model, batch_indices(n_train, config.batch_size, config.seed, step))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if bar is not None:
                bar.update(1)
            if writer is not None and (step % 10 == 0 or step in checkpoints):
                writer.add_scalar("train/loss", loss.item(), step)
            if step in checkpoints:
                _save_weights(model, checkpoint_path(run, step), step)
                _save_resume(model, opt, resume, step)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    return model.eval()


def _writer(run: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run / "tb"))


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="training", unit="step", leave=False)
