"""The token-score baselines of Snell et al. (2021) for classification: β^px and logistic-regression β.

* **Bag of embeddings** (:class:`BagOfEmbeddings`): ``z = W · mean_t E[x_t] + b`` (class logits as the attention
  classifier's: ``[0, z]`` for a binary model). Its per-token score is ``β^px_t = W E[x_t]`` — the token's share of
  the logit, ``∂z/∂m_t · n`` for a multiplier ``m_t`` on token ``t``'s embedding among ``n`` tokens. Trained with
  Adam on full epochs; the epoch with the lowest validation loss is kept (:func:`train_bag_of_embeddings`).
* **Logistic regression** (:func:`logistic_token_scores`): scikit-learn's ``LogisticRegression`` on bag-of-words
  counts, ``C`` chosen on validation accuracy over a log grid; ``β_t = coef[:, x_t]``.

Scores are oriented to the gold label as the dumps' β (:func:`seqexplain.analysis.training_dynamics.orient`). The
bag of embeddings trains on ``device``; scores leave as NumPy arrays on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seqexplain.analysis.training_dynamics import orient
from seqexplain.errors import InputError
from seqexplain.models.native_heads import length_mask
from seqexplain.models.snell_classifier import pad_batch
from seqexplain.training.snell import resolve_device

Examples = Sequence[tuple[Sequence[int], int]]
C_GRID = tuple(float(c) for c in np.logspace(-3, 3, 13))


class BagOfEmbeddings(nn.Module):
    """Mean embedding → linear (module docstring)."""

    def __init__(self, vocab_size: int, n_classes: int, emb_dim: int = 64) -> None:
        super().__init__()
        self.binary = n_classes == 2
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.linear = nn.Linear(emb_dim, 1 if self.binary else n_classes)

    def forward_embeds(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``[N, C]`` class logits of inputs ``x[N, n, D]`` with ``lengths`` real steps."""
        real = length_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        z = self.linear((x * real).sum(1) / lengths.view(-1, 1).to(x.dtype))
        return torch.cat([torch.zeros_like(z), z], dim=-1) if self.binary else z

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return self.forward_embeds(self.embedding(ids), lengths)

    def token_scores(self, ids: Sequence[int]) -> np.ndarray:
        """``[n, K]`` per-token scores ``W E[x_t]`` (no bias)."""
        with torch.no_grad():
            x = self.embedding(torch.as_tensor(list(ids), device=self.embedding.weight.device))
            return (x @ self.linear.weight.T).cpu().numpy()


def _loss(model: BagOfEmbeddings, data: Examples, batch_size: int = 256) -> float:
    total = 0.0
    dev = model.embedding.weight.device
    with torch.no_grad():
        for s in range(0, len(data), batch_size):
            ids, lengths = pad_batch([e[0] for e in data[s : s + batch_size]])
            labels = torch.tensor([int(e[1]) for e in data[s : s + batch_size]], device=dev)
            total += float(nn.functional.cross_entropy(model(ids.to(dev), lengths.to(dev)), labels, reduction="sum"))
    return total / len(data)


def train_bag_of_embeddings(train: Examples, val: Examples, vocab_size: int, n_classes: int, *, emb_dim: int = 64,
                            epochs: int = 10, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                            device: str | torch.device = "cpu") -> tuple[BagOfEmbeddings, dict[str, float]]:
    """Train :class:`BagOfEmbeddings` on ``device``; keep the epoch with the lowest validation loss. Returns the model
    and ``{"best_epoch", "val_loss"}``. An example without tokens is an :class:`InputError`."""
    if not train or not val:
        raise InputError("the bag-of-embeddings baseline needs training and validation examples")
    for what, data in (("training", train), ("validation", val)):
        empty = next((i for i, e in enumerate(data) if len(e[0]) == 0), None)
        if empty is not None:  # its mean embedding would be 0/0: NaN weights
            raise InputError(f"{what} example {empty} has no tokens; drop empty examples first")
    torch.manual_seed(seed)
    dev = resolve_device(device)
    model = BagOfEmbeddings(vocab_size, n_classes, emb_dim).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = (_loss(model, val), 0, copy.deepcopy(model.state_dict()))
    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train))
        for s in range(0, len(order), batch_size):
            chunk = [train[i] for i in order[s : s + batch_size]]
            ids, lengths = pad_batch([e[0] for e in chunk])
            labels = torch.tensor([int(e[1]) for e in chunk], device=dev)
            loss = nn.functional.cross_entropy(model(ids.to(dev), lengths.to(dev)), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_loss = _loss(model, val)
        if val_loss < best[0]:
            best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    return model.eval(), {"best_epoch": float(best[1]), "val_loss": float(best[0])}


def px_scores(model: BagOfEmbeddings, examples: Examples) -> list[np.ndarray]:
    """β^px of each example, oriented to its gold label."""
    return [orient(model.token_scores(ids), label, model.binary).astype(np.float32) for ids, label in examples]


def _counts(data: Examples, vocab_size: int) -> object:
    from scipy.sparse import csr_matrix

    rows, cols = [], []
    for r, (ids, _) in enumerate(data):
        rows.extend([r] * len(ids))
        cols.extend(int(i) for i in ids)
    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(data), vocab_size))


def fit_logistic(train: Examples, val: Examples, vocab_size: int, c_grid: Sequence[float] = C_GRID, seed: int = 0
                 ) -> tuple[np.ndarray, dict[str, float]]:
    """Logistic regression on bag-of-words counts, ``C`` chosen on validation accuracy (first best in grid order).
    Returns the token weights ``[V, K]`` (``K = 1`` binary, else one column per class) and ``{"C", "val_accuracy"}``.
    Column ``k`` is class ``k``: every class ``0..max label`` needs a training example (:class:`InputError`).
    """
    from sklearn.linear_model import LogisticRegression

    if not c_grid:
        raise InputError("the C grid of the logistic regression is empty")
    x_tr, y_tr = _counts(train, vocab_size), np.array([int(e[1]) for e in train])
    present = set(y_tr.tolist())
    missing = sorted(set(range(max(present, default=0) + 1)) - present)
    if len(present) < 2 or missing or min(present) < 0:
        raise InputError(f"the logistic-regression baseline needs training examples of every class 0..K-1 (K >= 2); "
                         f"the training labels are {sorted(present)}"
                         + (f" (no example of class {missing[0]})" if missing else ""))
    x_va, y_va = _counts(val, vocab_size), np.array([int(e[1]) for e in val])
    best: tuple[float, float, np.ndarray] | None = None
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_tr, y_tr)
        acc = float((clf.predict(x_va) == y_va).mean())
        if best is None or acc > best[0]:
            best = (acc, float(c), np.asarray(clf.coef_).T.copy())
    assert best is not None
    return best[2], {"C": best[1], "val_accuracy": best[0]}


def logistic_scores(weights: np.ndarray, examples: Examples) -> list[np.ndarray]:
    """Logistic-regression β of each example, ``weights[x_t]`` oriented to its gold label; an id outside
    ``0..V-1`` is an :class:`InputError`."""
    binary = weights.shape[1] == 1
    out = []
    for ids, label in examples:
        idx = np.asarray(list(ids), dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= weights.shape[0])]
        if bad.size:
            raise InputError(f"token id {int(bad[0])} is outside the logistic regression's vocabulary "
                             f"(0..{weights.shape[0] - 1})")
        out.append(orient(weights[idx], label, binary).astype(np.float32))
    return out
