"""The soft-attention objective and its validated configuration (Rei & Søgaard 2018; Bujel et al. 2021).

**Objective** for a batch of ``N`` sentences with labels ``y ∈ {0, 1}``, unnormalised token scores ``a[N, L]`` and
the attended positions ``A`` of each row (:func:`soft_attention_loss`):

* sentence loss: cross-entropy over the output logits (``sentence_loss="ce"``, default), or — the original code's
  quirk — cross-entropy over the *sigmoid* of the logits (``"ce_over_sigmoid"``);
* ``+ α · mean_n (min_{i∈A_n} a_ni)²`` (``soft_attention_alpha``): some token of every sentence is not labelled;
* ``+ γ · mean_n (max_{i∈A_n} a_ni − y_n)²`` (``soft_attention_gamma``): a positive sentence has a positive token,
  a negative one has none;
* ``+ β · mean_{supervised (n,i)} (a_ni − t_ni)²`` (``soft_attention_beta``, optional token supervision: ``t`` the
  gold token labels, only at positions marked supervised — the first sub-token of each word); with
  ``normalise_labels`` the normalised weights ``â`` are supervised instead of ``a``;
* ``+ δ · mean (a_ni)²`` over the ``zero_n`` smallest ``a_ni`` of each row (``zero_delta``, ``zero_n``): pushes
  the lowest scores to 0. Rows with fewer than ``zero_n`` attended positions use all of them (the original pads
  them with 10⁶, which this does not reproduce).

Rows with no attended position are left out of the min / max / zero terms.

**Configuration** (:class:`SoftAttentionConfig`): the original's hyper-parameter keys (``bert-seq-interpretability``
``.conf`` files) plus this library's options, validated by pydantic: an unknown key or a wrong type is an
:class:`~seqexplain.errors.InputError` carrying the validator's message (:func:`load_config`). Keys of the original
that change nothing here are accepted and listed in :data:`NO_EFFECT_KEYS`.
"""

from __future__ import annotations

import configparser
import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from seqexplain.errors import InputError

NO_EFFECT_KEYS = ("experiment_name", "dataset", "test_label_dummy", "make_all_labels_equal_max", "is_seq_class",
                  "soft_attention", "save_steps", "token_input_dir", "token_input_filename", "output_dir")


class SoftAttentionConfig(BaseModel):
    """Hyper-parameters (original key names; ``# ours`` marks this library's options). Defaults are CPU-feasible
    and correct; the original's quirks are the non-default values of ``sentence_loss``, ``warmup_unit``,
    ``attend_final_special`` and ``freeze_bert_layers_up_to`` (which freezes top-level children, as the original)."""

    model_config = ConfigDict(extra="forbid")

    # --- the original's keys
    experiment_name: str = "soft_attention"
    dataset: str | None = None
    model_name: str = "all-MiniLM-L6-v2"
    max_seq_length: int = Field(128, ge=2)
    per_device_train_batch_size: int = Field(16, ge=1)
    per_device_eval_batch_size: int = Field(64, ge=1)
    num_train_epochs: float = Field(1.0, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    learning_rate: float = Field(2e-5, ge=0)  # 0: a frozen body (head_learning_rate moves the head)
    weight_decay: float = 0.1
    seed: int = 3
    adam_epsilon: float = 1e-7
    gradient_accumulation_steps: int = Field(1, ge=1)
    save_steps: int = 500
    logging_steps: int = 50
    output_dir: str | None = None
    do_mask_words: bool = False
    mask_prob: float = Field(0.0, ge=0, le=1)
    hid_to_attn_dropout: float = 0.1
    attention_evidence_size: int = 100
    final_hidden_layer_size: int = 300
    initializer_name: Literal["glorot", "xavier", "normal"] = "glorot"
    attention_activation: Literal["soft", "sharp"] = "soft"
    soft_attention: bool = True
    soft_attention_alpha: float = 0.1
    soft_attention_gamma: float = 0.1
    soft_attention_beta: float = 0.0
    square_attention: bool = False
    normalise_labels: bool = False
    zero_n: int = Field(0, ge=0)
    zero_delta: float = 0.0
    freeze_bert_layers_up_to: int = Field(0, ge=0)
    lowercase: bool = True
    test_label_dummy: str | None = None
    make_all_labels_equal_max: bool | None = None
    is_seq_class: bool | None = None
    token_input_dir: str | None = None
    token_input_filename: str | None = None
    # --- ours
    sentence_loss: Literal["ce", "ce_over_sigmoid"] = "ce"
    warmup_unit: Literal["steps", "examples"] = "steps"
    attend_final_special: bool = False
    freeze_layers: int = Field(0, ge=0)
    max_steps: int | None = Field(None, ge=1)
    eval_steps: int | None = Field(None, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    head_learning_rate: float | None = Field(None, ge=0)


def _conf_value(value: str | None) -> Any:
    """A ``.conf`` value typed as the original reads it: empty → None, true/false → bool, digits → int, a float
    → float, else the string."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    if v.isdigit():
        return int(v)
    try:
        return float(v)
    except ValueError:
        return v


def config_from_dict(values: dict[str, Any], source: str = "config") -> SoftAttentionConfig:
    """Validate ``values``; :class:`InputError` with the validator's message on an unknown key or a wrong type."""
    try:
        return SoftAttentionConfig.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        extra = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise InputError(f"{source}: {where}: {first['msg']}{extra}; fix the key or value") from None


def load_config(path: Path | str) -> SoftAttentionConfig:
    """A configuration from a ``.conf`` file (the original's format: section ``[config]``), ``.json`` or
    ``.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; save the configuration as UTF-8") from None
    if path.suffix in (".json",):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc}); fix the file") from None
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())}); fix the file") from None
    else:
        parser = configparser.ConfigParser(allow_no_value=True)
        try:
            parser.read_string(text)
        except configparser.Error as exc:
            raise InputError(f"{path}: not a .conf file ({str(exc).splitlines()[0]})") from None
        if not parser.has_section("config"):
            raise InputError(f"{path}: no [config] section")
        values = {k: _conf_value(v) for k, v in parser.items("config")}
    if not isinstance(values, dict):
        raise InputError(f"{path}: the configuration must be a mapping of keys to values")
    return config_from_dict(values, str(path))


# --------------------------------------------------------------------------- objective
def sentence_loss(logits: Tensor, labels: Tensor, mode: str = "ce") -> Tensor:
    """Mean cross-entropy over ``logits[N, C]`` (``"ce"``) or over ``sigmoid(logits)`` (``"ce_over_sigmoid"``)."""
    if mode == "ce":
        return torch.nn.functional.cross_entropy(logits, labels)
    if mode == "ce_over_sigmoid":
        return torch.nn.functional.cross_entropy(torch.sigmoid(logits), labels)
    raise InputError(f"sentence_loss is 'ce' or 'ce_over_sigmoid', not {mode!r}")


def soft_attention_loss(logits: Tensor, a: Tensor, weights: Tensor, attend: Tensor, labels: Tensor,
                        cfg: SoftAttentionConfig, token_targets: Tensor | None = None,
                        token_mask: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """The total objective and each term's value (module docstring)."""
    terms: dict[str, Tensor] = {"sentence": sentence_loss(logits, labels, cfg.sentence_loss)}
    rows = attend.any(1)
    y = labels.float()
    if bool(rows.any()):
        inf = torch.tensor(float("inf"), dtype=a.dtype, device=a.device)
        if cfg.soft_attention_alpha:
            low = torch.where(attend, a, inf).min(1).values[rows]
            terms["min"] = cfg.soft_attention_alpha * (low ** 2).mean()
        if cfg.soft_attention_gamma:
            high = torch.where(attend, a, -inf).max(1).values[rows]
            terms["max"] = cfg.soft_attention_gamma * ((high - y[rows]) ** 2).mean()
        if cfg.zero_delta and cfg.zero_n > 0:
            k = min(cfg.zero_n, a.shape[1])
            low_k = torch.where(attend, a, inf).sort(1).values[:, :k]
            take = torch.isfinite(low_k)
            terms["zero"] = cfg.zero_delta * (low_k[take] ** 2).mean()
    if cfg.soft_attention_beta and token_targets is not None:
        mask = token_mask if token_mask is not None else attend
        if bool(mask.any()):
            pred = weights if cfg.normalise_labels else a
            terms["token"] = cfg.soft_attention_beta * ((pred - token_targets.float())[mask] ** 2).mean()
    total = torch.stack(list(terms.values())).sum()
    return total, {k: float(v.detach()) for k, v in terms.items()}
