"""Per-checkpoint quantities of the Snell et al. LSTM translator, stored as the classifier's dumps with **one row per
target token** (:class:`seqexplain.analysis.training_dynamics.Dump`: ``ids`` the source ids, ``labels`` the target
token ``y_t``, ``predicted`` the teacher-forced argmax, so a dump's accuracy is the token accuracy; each vector runs
over the source positions), dropout off:

* ``alpha[t, s]``: the attention of target ``t`` over the source;
* ``beta[t, s] = log p(y_t | α_t = onehot(s))`` (:meth:`SnellTranslator.beta`);
* ``delta[t, s] = −∂L_t/∂m_s = ∂ log p(y_t)/∂m_s`` with ``m_s`` a scalar multiplier on source token ``s``'s
  embedding: **positive = the source token supports the output**, the classifier's convention;
  ``sign="original"`` negates it.

β^px (:class:`WordTranslationBaseline`): ``p(y | source) = softmax(W · mean_s E[x_s] + b)`` trained on the bag of
target tokens (best validation-loss epoch kept); ``β^px[t, s] = log softmax(W E[x_s] + b)[y_t]``, the word-translation
matrix ``softmax(E Wᵀ)`` read at the pair.

Everything is computed on the model's device (the baseline trains on ``device``); results are NumPy arrays on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seqexplain.analysis.training_dynamics import Dump, Sign
from seqexplain.errors import InputError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.snell_translation import SnellTranslator
from seqexplain.training.snell import resolve_device
from seqexplain.training.snell_translation import collate, to_device

Pairs = Sequence[tuple[Sequence[int], Sequence[int]]]


def translation_rows(model: SnellTranslator, pairs: Pairs, batch_size: int = 32, sign: Sign = "supports"
                     ) -> list[dict[str, np.ndarray]]:
    """Per pair: ``alpha``, ``beta``, ``delta`` (each ``[T, S]``) and ``predicted [T]`` (module docstring); a pair
    with an empty side is an :class:`InputError`."""
    if sign not in ("supports", "original"):
        raise InputError(f"sign is 'supports' or 'original', not {sign!r}")
    for i, (src, tgt) in enumerate(pairs):
        if len(src) == 0 or len(tgt) == 0:
            raise InputError(f"pair {i} has an empty {'source' if len(src) == 0 else 'target'} side; drop empty "
                             "pairs before dumping")
    cfg = model.config
    out: list[dict[str, np.ndarray]] = []
    with eval_mode(model):
        for start in range(0, len(pairs), batch_size):
            idx = list(range(start, min(start + batch_size, len(pairs))))
            b = to_device(collate(pairs, idx, cfg.pad_token_id, cfg.decoder_start_token_id),
                          model.embed_tokens.weight.device)
            x = model.embed_tokens(b["input_ids"])
            m = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device, requires_grad=True)
            memory = model.encode(x * m.unsqueeze(-1), b["attention_mask"])
            d, _ = model.decode_states(model.embed_tokens(b["decoder_input_ids"]), memory, b["decoder_attention_mask"])
            alpha = model.attention(d, memory)
            logp = torch.log_softmax(model.output(d, torch.bmm(alpha, memory.states)).float(), -1)
            labels = b["labels"].clamp(min=0)
            target_logp = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # [B, T]
            n_t = labels.shape[1]
            grads = []  # one backward per target position: a backward batched over the T one-hot cotangents
            # (is_grads_batched) gives the same Δ but was 11-13 % slower on this CPU's LSTMs
            # (bench_snell_translation.py --n-dump 200 --steps 5, twice each way, 2026-12-05)
            for t in range(n_t):
                (g,) = torch.autograd.grad(target_logp[:, t].sum(), m, retain_graph=t < n_t - 1)
                grads.append(g)
            delta = torch.stack(grads, 1)  # [B, T, S]: ∂ log p(y_t)/∂m_s
            if sign == "original":
                delta = -delta
            with torch.no_grad():
                beta = model.beta(d, memory, labels)
            for r, i in enumerate(idx):
                n_s, n_y = len(pairs[i][0]), len(pairs[i][1])
                out.append({"alpha": alpha[r, :n_y, :n_s].detach().cpu().numpy().astype(np.float32),
                            "beta": beta[r, :n_y, :n_s].cpu().numpy().astype(np.float32),
                            "delta": delta[r, :n_y, :n_s].cpu().numpy().astype(np.float32),
                            "predicted": logp[r, :n_y].argmax(-1).cpu().numpy()})
    return out


def make_translation_dump(model: SnellTranslator, pairs: Pairs, *, run: str, step: int, split: str, dataset: str,
                          vocab_hash: str, sign: Sign = "supports") -> Dump:
    """:func:`translation_rows` of ``pairs`` as a :class:`Dump` with one row per target token."""
    from seqexplain.analysis.training_dynamics import fingerprint

    rows = translation_rows(model, pairs, sign=sign)
    ids, labels, alpha, beta, delta, pred = [], [], [], [], [], []
    for (src, tgt), q in zip(pairs, rows, strict=True):
        for t, y in enumerate(tgt):
            ids.append(np.asarray(list(src), dtype=np.int32))
            labels.append(int(y))
            alpha.append(q["alpha"][t])
            beta.append(q["beta"][t])
            delta.append(q["delta"][t])
            pred.append(int(q["predicted"][t]))
    flat = [(list(s), int(y)) for s, y in zip(ids, labels, strict=True)]
    return Dump(run, step, split, dataset, fingerprint(flat), vocab_hash, bool(model.config.uniform_attention),
                labels, ids, alpha, beta, delta, pred, {"sign": sign})


class WordTranslationBaseline(nn.Module):
    """Bag of source embeddings → linear → softmax over the vocabulary (module docstring)."""

    def __init__(self, vocab_size: int, emb_dim: int = 64) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.linear = nn.Linear(emb_dim, vocab_size)

    def forward(self, ids: Tensor, keep: Tensor) -> Tensor:
        """``[B, V]`` log-probabilities from source ``ids[B, S]`` with ``keep[B, S]`` real tokens."""
        k = keep.unsqueeze(-1).to(torch.float32)
        mean = (self.embedding(ids) * k).sum(1) / k.sum(1)
        return torch.log_softmax(self.linear(mean), -1)

    def token_scores(self, src: Sequence[int], tgt: Sequence[int]) -> np.ndarray:
        """``[T, S]``: ``log softmax(W E[x_s] + b)[y_t]``."""
        dev = self.embedding.weight.device
        with torch.no_grad():
            logp = torch.log_softmax(self.linear(self.embedding(torch.as_tensor(list(src), device=dev))), -1)  # [S, V]
            return logp[:, torch.as_tensor(list(tgt), device=dev)].T.cpu().numpy().astype(np.float32)


def _bag_loss(model: WordTranslationBaseline, pairs: Pairs, idx: Sequence[int], pad: int) -> Tensor:
    b = to_device(collate(pairs, idx, pad, 0), model.embedding.weight.device)
    logp = model(b["input_ids"], b["attention_mask"].bool())
    labels = b["labels"]
    got = logp.gather(1, labels.clamp(min=0)) * (labels != -100)
    return -got.sum() / (labels != -100).sum()


def train_word_translation(train: Pairs, val: Pairs, vocab_size: int, pad: int, *, emb_dim: int = 64,
                           epochs: int = 5, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                           device: str | torch.device = "cpu") -> tuple[WordTranslationBaseline, dict[str, float]]:
    """Train :class:`WordTranslationBaseline` on ``device``, keeping the epoch of lowest validation loss. No
    examples, or a pair with an empty side (its mean embedding is 0/0), is an :class:`InputError`."""
    for what, data in (("training", train), ("validation", val)):
        if not data:
            raise InputError(f"the word-translation baseline needs {what} pairs")
        for i, (src, tgt) in enumerate(data):
            if len(src) == 0 or len(tgt) == 0:
                raise InputError(f"{what} pair {i} has an empty {'source' if len(src) == 0 else 'target'} side; "
                                 "drop empty pairs first")
    torch.manual_seed(seed)
    model = WordTranslationBaseline(vocab_size, emb_dim).to(resolve_device(device))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)

    def val_loss() -> float:
        with torch.no_grad():
            return float(_bag_loss(model, val, range(len(val)), pad))

    best = (val_loss(), 0, copy.deepcopy(model.state_dict()))
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train))
        for s in range(0, len(order), batch_size):
            loss = _bag_loss(model, train, order[s : s + batch_size].tolist(), pad)
            opt.zero_grad()
            loss.backward()
            opt.step()
        v = val_loss()
        if v < best[0]:
            best = (v, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    return model.eval(), {"best_epoch": float(best[1]), "val_loss": best[0]}


def px_rows(model: WordTranslationBaseline, pairs: Pairs) -> list[np.ndarray]:
    """β^px rows in the dumps' order (one per target token)."""
    return [row for src, tgt in pairs for row in model.token_scores(src, tgt)]
