"""The soft-attention training loop on accelerate: under ``Accelerator(cpu=True)`` it equals a plain PyTorch loop
written here (same order, masking, accumulation, clipping, AdamW and schedule), and on CUDA (``gpu`` marker) it
trains on the GPU and ends near the CPU weights."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from seqexplain.training.soft_attention import predict, train_soft_attention
from seqexplain.training.soft_attention_batches import WordBatcher
from seqexplain.training.soft_attention_objective import soft_attention_loss
from tests.test_soft_attention_training import _cfg, _data, _lstm

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fresh_accelerator_state() -> Iterator[None]:
    """accelerate keeps one process state per process; each test starts (and leaves) it unset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _plain_loop(model: torch.nn.Module, batcher: WordBatcher, train: list[Any], cfg: Any, steps: int) -> None:
    """The oracle: the documented order / masking / accumulation, one process, no accelerate."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                            eps=cfg.adam_epsilon)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    bs, accum = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    model.train()
    for b in range(steps * accum):
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + b)
        batch = batcher.make([train[i] for i in order[b * bs : (b + 1) * bs]], train=True, generator=gen)
        logits, a, w, attend = batcher.forward(model, batch)
        loss, _ = soft_attention_loss(logits, a, w, attend, batch["labels"], cfg, batch["token_targets"],
                                      batch["token_mask"])
        (loss / accum).backward()
        if (b + 1) % accum == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad()


def test_loop_under_accelerate_cpu_equals_a_plain_loop() -> None:
    from accelerate import Accelerator

    train = _data(32, 0)  # 4 batches of 8 = one epoch = 2 optimiser steps with accumulation 2
    cfg = _cfg(max_steps=2, gradient_accumulation_steps=2, do_mask_words=True, mask_prob=0.3, max_grad_norm=0.05,
               seed=3)
    model, tok = _lstm(train)
    res = train_soft_attention(model, WordBatcher(tok, mask_prob=0.3), train, [], cfg, progress=False,
                               accelerator=Accelerator(cpu=True))
    assert res.steps == 2 and res.main_process
    oracle, tok2 = _lstm(train)
    _plain_loop(oracle, WordBatcher(tok2, mask_prob=0.3), train, cfg, 2)
    want = oracle.state_dict()
    moved = 0
    for key, value in model.state_dict().items():
        assert torch.allclose(value, want[key], atol=1e-6), key
        moved += int(not torch.equal(value, _lstm(train)[0].state_dict()[key]))
    assert moved > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_loop_trains_on_cuda_near_the_cpu_weights() -> None:
    from accelerate import Accelerator

    train, dev = _data(48, 0), _data(16, 1)
    cfg = _cfg(max_steps=6, eval_steps=3)
    cpu_model, tok = _lstm(train)
    train_soft_attention(cpu_model, WordBatcher(tok), train, dev, cfg, progress=False,
                         accelerator=Accelerator(cpu=True))
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    gpu_model, tok = _lstm(train)
    res = train_soft_attention(gpu_model, WordBatcher(tok), train, dev, cfg, progress=False,
                               accelerator=Accelerator())
    assert res.steps == 6 and next(gpu_model.parameters()).device.type == "cuda"
    want = cpu_model.state_dict()
    for key, value in gpu_model.state_dict().items():
        assert torch.allclose(value.cpu(), want[key], atol=1e-3), key
    pred = predict(gpu_model, WordBatcher(tok), dev)
    assert len(pred.scores) == len(dev)


TWO_PROCESS_SCRIPT = '''
import json, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[2])
from test_soft_attention_training import _cfg, _data, _lstm
from seqexplain.training.soft_attention import train_soft_attention
from seqexplain.training.soft_attention_batches import WordBatcher
train, dev = _data(64, 0), _data(16, 1)
model, tok = _lstm(train)
cfg = _cfg(num_train_epochs=2, eval_steps=2, do_mask_words=True, mask_prob=0.2)
res = train_soft_attention(model, WordBatcher(tok, mask_prob=0.2), train, dev, cfg, sys.argv[1], progress=False)
total = float(sum(p.detach().double().sum() for p in model.parameters()))
print("RESULT " + json.dumps({"main": res.main_process, "steps": res.steps, "sum": total}), flush=True)
'''


@pytest.mark.slow
def test_two_cpu_processes_share_the_work_and_agree(tmp_path: Any) -> None:
    """``ACCELERATE_USE_CPU`` + ``torch.distributed.run`` with 2 processes (gloo): each runs half the optimiser
    steps of one process (8 batches per epoch, 2 epochs: 16 → 8) and both end with the same weights."""
    import json
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{root / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29611", str(script), str(tmp_path / "run"), str(root / "tests")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # the two processes share stdout: their lines may run together, so read each flat JSON object after RESULT
    rows = [json.loads(m) for m in re.findall(r"RESULT (\{[^{}]*\})", done.stdout)]
    assert sorted(r["main"] for r in rows) == [False, True]
    assert [r["steps"] for r in rows] == [8, 8]
    assert rows[0]["sum"] == pytest.approx(rows[1]["sum"], abs=1e-9)
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["step"] == 8 and [h["step"] for h in state["history"]] == [2, 4, 6, 8]
