"""``precision: auto`` and the fp16 loss-scaling path, checked on a CPU with faked capabilities."""
from __future__ import annotations

import pytest
import torch

from tinyllm.config import ConfigError, TrainConfig
from tinyllm.train import device as devmod


def test_auto_picks_bf16_on_gpus_that_have_it_else_fp16(monkeypatch):
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devmod.resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devmod.resolve_precision("auto", cuda) == "fp16"


def test_auto_on_cpu_follows_the_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    devmod.cpu_has_fast_bf16.cache_clear()
    monkeypatch.setattr(devmod, "cpu_has_fast_bf16", lambda: False)
    assert devmod.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(devmod, "cpu_has_fast_bf16", lambda: True)
    assert devmod.resolve_precision("auto", cpu) == "bf16"


def test_fp16_is_refused_on_a_cpu():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        devmod.resolve_precision("fp16", torch.device("cpu"))


def test_fp16_trains_through_the_grad_scaler_and_resumes_it(tmp_path, monkeypatch):
    """The loss-scaling path a GPU without bf16 takes, run on the CPU (autocast fp16 works there)."""
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.train import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "resolve_precision", lambda name, device: "fp16")
    torch.manual_seed(0)
    data = torch.randint(0, 50, (64, 17))

    def batches(step, micro):
        rows = data[(step * 2 + micro) * 4 % 60:][:4]
        return rows[:, :-1], rows[:, 1:]

    def loss_fn(model, batch):
        return model.loss(*batch)

    def run(steps, resume=False):
        torch.manual_seed(1)
        model = GPT(ModelConfig(vocab_size=50, context_length=16, n_layer=1, n_head=2, n_embd=32))
        cfg = TrainConfig(max_steps=steps, batch_size=4, grad_accum=2, lr=1e-3, eval_every=0,
                          sample_tokens=0, schedule="constant", warmup_steps=0, out=str(tmp_path))
        t = trainer_mod.Trainer(model, cfg, batches, loss_fn, tmp_path, resume=resume)
        assert t.precision == "fp16" and t.scaler is not None and t.scaler.is_enabled()
        done = t.fit()
        return t, done

    t, done = run(3)
    assert done["step"] == 3 and torch.isfinite(torch.tensor(done.get("train_loss", 0.0)))
    state = torch.load(tmp_path / "train_state" / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] == t.scaler.get_scale()   # the scale is checkpointed
    t2, done2 = run(5, resume=True)
    assert t2.step == 5 and done2["step"] == 5


def test_deterministic_must_be_a_bool():
    with pytest.raises(ConfigError, match="train.deterministic must be true or false"):
        TrainConfig(deterministic="maybe")


def test_torchrun_with_one_process_is_still_distributed(monkeypatch):
    """`torchrun --nproc_per_node=1` runs DDP/FSDP as asked (the GPU check relies on it)."""
    from tinyllm.train import ddp

    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not ddp.info().enabled
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "1")
    d = ddp.info()
    assert d.enabled and d.world_size == 1 and d.is_main
