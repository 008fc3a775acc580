"""Training loop: loss goes down, resume equals uninterrupted, checkpoints/TensorBoard/export, LoRA on Llama."""

from __future__ import annotations

import json

import pytest
import torch

from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.transformer import TransformerLM, TransformerLMConfig, load_transformer_lm
from seqexplain.training.causal_lm_data import TokenData
from seqexplain.training.causal_lm_loss import evaluate_lm
from seqexplain.training.compatible import apply_lora, train_causal_lm
from seqexplain.training.compatible_config import TrainConfig
from seqexplain.training.word_dropout import WordDropout, sample_keep


def _data(n: int = 96, seed: int = 0) -> TokenData:
    """A learnable toy language: a random start token, then +1 (mod 10) at every step."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 10, (n, 1), generator=g)
    return TokenData.from_tensor((start + torch.arange(8)) % 10)


def _model() -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerLMConfig(vocab_size=10, d_model=16, n_layers=1, n_heads=2, ffn_dim=32,
                                             max_position_embeddings=16, dropout=0.1))


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(steps=12, batch_size=16, lr=1e-2, warmup_steps=2, schedule="linear", log_every=3,
                                   checkpoint_every=3, word_dropout=WordDropout("uniform_length", 0.5), seed=3)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_training_lowers_loss(tmp_path) -> None:
    data = _data()
    m = _model()
    before = evaluate_lm(m, data)["loss"]
    res = train_causal_lm(m, data, _cfg(steps=40, log_every=10), tmp_path, valid=data, progress=False,
                          tensorboard=False)
    after = evaluate_lm(m, data)["loss"]
    assert after < 0.6 * before
    assert res.step == 40 and len(res.history) == 4
    back = load_transformer_lm(tmp_path / "model")
    assert evaluate_lm(back, data)["loss"] == pytest.approx(after, abs=1e-6)


def test_resume_equals_uninterrupted(tmp_path) -> None:
    data = _data()
    full_model = _model()
    full = train_causal_lm(full_model, data, _cfg(), tmp_path / "full", progress=False, tensorboard=False)
    part_model = _model()
    first = train_causal_lm(part_model, data, _cfg(), tmp_path / "part", progress=False, stop_after=6)
    assert first.step == 6 and first.model_dir is None
    latest = json.loads((tmp_path / "part" / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 6
    fresh = _model()  # a new process: weights re-initialised, then restored from the checkpoint
    torch.manual_seed(1234)  # disturb the global RNG: the checkpoint must restore it
    second = train_causal_lm(fresh, data, _cfg(), tmp_path / "part", progress=False)
    assert second.step == 12
    assert [h["train_loss"] for h in second.history] == [h["train_loss"] for h in full.history]
    for (name, a), (_, b) in zip(fresh.state_dict().items(), full_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in (tmp_path / "part" / "checkpoints").glob("step-*")) == ["step-12"]
    assert any((tmp_path / "part" / "tensorboard").iterdir())
    assert (tmp_path / "part" / "model" / "model.safetensors").is_file()


def test_evaluate_lm_with_word_dropout_equals_deleting_the_dropped_tokens() -> None:
    """Oracle: for every predicted token, run the model on the kept tokens before it plus itself (original
    positions) and score the next token."""
    data = _data(n=5)
    m = _model().eval()
    got = evaluate_lm(m, data, word_dropout="uniform_length", seed=7)
    keep = sample_keep(data.valid, "uniform_length", torch.Generator().manual_seed(7))
    nll, count = 0.0, 0
    with torch.no_grad():
        for b in range(len(data)):
            ids = data.input_ids[b]
            for t in range(ids.shape[0] - 1):
                pos = [j for j in range(t) if keep[b, j]] + [t]
                logits = m(input_ids=ids[pos][None], position_ids=torch.tensor([pos])).logits[0, -1]
                nll -= float(torch.log_softmax(logits, -1)[ids[t + 1]])
                count += 1
    assert got["tokens"] == count
    assert got["loss"] == pytest.approx(nll / count, rel=1e-5)
    assert keep[:, :-1].sum() < keep[:, :-1].numel()  # some context was dropped


def test_resume_refuses_a_checkpoint_made_with_other_settings(tmp_path) -> None:
    data = _data()
    train_causal_lm(_model(), data, _cfg(), tmp_path, progress=False, tensorboard=False, stop_after=3)
    with pytest.raises(ModelLoadError, match=r"steps: 12 → 24.*another output folder"):
        train_causal_lm(_model(), data, _cfg(steps=24), tmp_path, progress=False, tensorboard=False)
    with pytest.raises(ModelLoadError, match="word_dropout"):
        train_causal_lm(_model(), data, _cfg(word_dropout=None), tmp_path, progress=False, tensorboard=False)
    # logging and checkpointing may change between runs
    res = train_causal_lm(_model(), data, _cfg(log_every=4, checkpoint_every=4), tmp_path, progress=False,
                          tensorboard=False)
    assert res.step == 12


def test_starting_over_deletes_the_replaced_runs_checkpoints(tmp_path) -> None:
    """A longer run's step-24 folder used to outlive a restart with ``keep_checkpoints=2``: kept as the newest
    step beside this run's own, it passed for this run's checkpoint."""
    data = _data()
    train_causal_lm(_model(), data, _cfg(steps=24, checkpoint_every=12), tmp_path, progress=False,
                    tensorboard=False, export=False)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-24"]
    train_causal_lm(_model(), data, _cfg(keep_checkpoints=2), tmp_path, resume=False, progress=False,
                    tensorboard=False, export=False)
    assert sorted(p.name for p in root.glob("step-*")) == ["step-12", "step-9"]
    assert json.loads((root / "latest.json").read_text(encoding="utf-8"))["step"] == 12
    (root / "step-12").rename(tmp_path / "elsewhere")
    (root / "step-12").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InputError, match="step-12 is not a regular folder"):
        train_causal_lm(_model(), data, _cfg(), tmp_path, resume=False, progress=False, tensorboard=False)
    assert (tmp_path / "elsewhere" / "train_state.json").is_file()


def test_lora_init_depends_on_seed_only(llama) -> None:
    """The adapters do not depend on how much of the global generator was used before (the compatible model of an
    experiment must not depend on which experiment built it), and the caller's generator is left untouched."""
    pytest.importorskip("peft")
    import copy

    base, _ = llama

    def adapters(seed: int, draws_before: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(123)
        torch.rand(draws_before)
        state = torch.get_rng_state()
        model = apply_lora(copy.deepcopy(base), r=4, alpha=8, seed=seed)
        assert torch.equal(torch.get_rng_state(), state)
        return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}

    first, second, other = adapters(0, 0), adapters(0, 1000), adapters(1, 0)
    assert first and first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[n], second[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first)


def test_lora_on_tiny_llama_trains_adapters_only(llama, tmp_path) -> None:
    pytest.importorskip("peft")
    import copy

    base, tok = llama
    model = apply_lora(copy.deepcopy(base), r=4, alpha=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    rows = [tok(t)["input_ids"] for t in ["The cat sat on the mat.", "The dog sat on the log.",
                                          "Paris is the capital of France.", "The quick brown fox."]]
    data = TokenData.from_lists(rows, tok.pad_token_id)
    res = train_causal_lm(model, data, _cfg(steps=4, batch_size=2, checkpoint_every=2, lr=1e-2, log_every=2),
                          tmp_path, progress=False, tensorboard=False)
    assert res.step == 4
    for n, p in model.named_parameters():
        if p.requires_grad:
            continue
        assert torch.equal(p, frozen_before[n]), n
    assert any(not torch.equal(p, lora_before[n]) for n, p in model.named_parameters() if p.requires_grad)
    assert (tmp_path / "model" / "adapter_model.safetensors").is_file()
    saved = (tmp_path / "checkpoints" / "step-4" / "trainable.safetensors")
    from safetensors.torch import load_file

    assert set(load_file(str(saved))) == trainable


def test_config_validation() -> None:
    from seqexplain.errors import InputError

    with pytest.raises(InputError):
        TrainConfig(schedule="weird")
    with pytest.raises(InputError):
        WordDropout(kind="weird")
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, schedule="inverse_sqrt")
    assert cfg.lr_at(4) == pytest.approx(0.5)
    assert cfg.lr_at(39) == pytest.approx((10 / 40) ** 0.5)
    assert TrainConfig(steps=10, lr=1.0, schedule="linear").lr_at(9) == pytest.approx(0.1)
    assert TrainConfig(steps=10, lr=1.0, schedule="linear", lr_zero_at_last_step=True).lr_at(9) == 0.0


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_after_warm_up_equals_transformers_schedules(schedule) -> None:
    """After warm-up, the rate of every step equals transformers' schedule (whose warm-up starts at 0 instead of
    lr/W); the last step's rate is not 0 (it was: the last step trained with lr 0 and changed nothing)."""
    from oracles import transformers_rates

    n, warm = 37, 5
    reference = transformers_rates(schedule, warm, n, lr=0.3)
    cfg = TrainConfig(steps=n, lr=0.3, warmup_steps=warm, schedule=schedule)
    assert [cfg.lr_at(k) for k in range(warm, n)] == pytest.approx(reference[warm:], rel=1e-12, abs=1e-15)
    assert [cfg.lr_at(k) for k in range(warm)] == pytest.approx([0.3 * (k + 1) / warm for k in range(warm)])
    assert cfg.lr_at(n - 1) > 0


def test_checkpoints_from_before_the_schedule_option_resume_with_the_old_schedule(tmp_path) -> None:
    data = _data()
    train_causal_lm(_model(), data, _cfg(), tmp_path, progress=False, tensorboard=False, stop_after=3)
    state_file = tmp_path / "checkpoints" / "step-3" / "train_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    del state["config"]["lr_zero_at_last_step"]  # as written before the option existed
    state_file.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="lr_zero_at_last_step: True → False"):
        train_causal_lm(_model(), data, _cfg(), tmp_path, progress=False, tensorboard=False)
    res = train_causal_lm(_model(), data, _cfg(lr_zero_at_last_step=True), tmp_path, progress=False,
                          tensorboard=False, export=False)
    assert res.step == 12 and res.history[-1]["lr"] == 0.0


def test_lora_on_a_hugging_face_model_prints_no_deprecation_of_transformers(llama) -> None:
    """peft asks transformers ``is_gradient_checkpointing``, deprecated in transformers 5: the compatible
    fine-tune printed transformers' FutureWarning (source path and code line) on the console."""
    pytest.importorskip("peft")
    import copy
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_lora(copy.deepcopy(llama[0]), r=4, alpha=8, seed=0)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
