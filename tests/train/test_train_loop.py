"""The training loop: learning, exact resume (stop, Ctrl-C), metrics.jsonl, atomic checkpoints, schedule."""
from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from tinyllm.config import TrainConfig
from tinyllm.train.pretrain import train_lm
from tinyllm.train.runconfig import load_run

from conftest import SHARED_DATA

TINY = ["n_layer=2", "n_head=2", "n_embd=32", "context_length=32", "batch_size=8",
        "eval_batches=2", "sample_tokens=20", "lr=3e-3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "shakespeare-20k.txt"
    p.write_text((SHARED_DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")[:20000],
                 encoding="utf-8")
    return p


def run(corpus, out, max_steps, *sets, resume=False, on_trainer=None, callbacks=()):
    r = load_run(data=str(corpus), out=str(out), max_steps=max_steps, sets=[*TINY, *sets],
                 resume=resume)
    return train_lm(r, resume=resume, on_trainer=on_trainer, callbacks=callbacks)


def events(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def state_model(out):
    return torch.load(out / "train_state" / "state.pt", weights_only=True)["model"]


def test_short_run_lowers_the_loss_and_writes_a_model_directory(corpus, tmp_path):
    out = tmp_path / "run"
    done = run(corpus, out, 60, "eval_every=30", "lr=1e-2")
    evs = events(out)
    first = next(e for e in evs if e["event"] == "step")
    assert first["loss"] > 3.5                      # ~ln(vocab) at the start
    assert done["val_loss"] < first["loss"] - 0.6   # it learned something (unigram level at least)
    assert done["reason"] == "finished" and done["step"] == 60
    from tinyllm.checkpoint import load_model, load_tokenizer
    from tinyllm.engines.torch_engine import SamplingConfig, generate_text

    model, tok = load_model(out), load_tokenizer(out)
    assert model.meta["train"]["step"] == 60 and model.meta["tokenizer"]["type"] == "char"
    text = generate_text(model, tok, "ROMEO:", SamplingConfig(max_new_tokens=20, seed=0))
    assert len(text) > 0
    assert (out / "last" / "model.safetensors").is_file() and (out / "train.yaml").is_file()


def test_metrics_jsonl_lines(corpus, tmp_path):
    out = tmp_path / "run"
    run(corpus, out, 6, "eval_every=3")
    evs = events(out)
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("step") == 6 and kinds.count("eval") == 2
    steps = [e for e in evs if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 7))
    for e in steps:
        assert {"loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_ms", "elapsed", "eta",
                "time"} <= set(e)
    assert steps[-1]["tokens"] == 6 * 8 * 32 and steps[-1]["eta"] == 0
    ev = [e for e in evs if e["event"] == "eval"][0]
    assert {"train_loss", "val_loss", "train_ppl", "val_ppl", "sample", "best"} <= set(ev)
    assert ev["val_ppl"] == pytest.approx(pytest.importorskip("math").exp(ev["val_loss"]))
    ck = [e for e in evs if e["event"] == "checkpoint"]
    assert {c["kind"] for c in ck} == {"best", "last"}
    assert evs[0]["tokens_per_step"] == 8 * 32 and evs[0]["model"]["n_embd"] == 32
    assert evs[-1]["reason"] == "finished" and "val_loss" in evs[-1]


def _stop_at(step, how):
    def cb(ev, holder={}):
        if ev["event"] == "step" and ev["step"] == step:
            if how == "stop":
                holder["t"].request_stop()
            else:
                os.kill(os.getpid(), signal.SIGINT)
    return cb


@pytest.mark.parametrize("how", ["stop", "sigint"])
def test_resume_is_exact(corpus, tmp_path, how):
    sets = ["dropout=0.1", "grad_accum=2", "eval_every=3", "save_every=2"]
    straight = tmp_path / "straight"
    run(corpus, straight, 8, *sets)

    parts = tmp_path / "parts"
    cb = _stop_at(4, how)
    hook = lambda t: cb.__defaults__[0].__setitem__("t", t)  # noqa: E731
    if how == "stop":
        done = run(corpus, parts, 8, *sets, on_trainer=hook, callbacks=[cb])
        assert done["reason"] == "stopped" and done["step"] == 4
    else:
        with pytest.raises(KeyboardInterrupt):
            run(corpus, parts, 8, *sets, on_trainer=hook, callbacks=[cb])
        assert events(parts)[-1]["reason"] == "interrupted"
    assert torch.load(parts / "train_state" / "state.pt", weights_only=True)["step"] == 4
    done = run(corpus, parts, 8, *sets, resume=True)
    assert done["step"] == 8

    a, b = state_model(straight), state_model(parts)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    wa, wb = load_file(straight / "last" / "model.safetensors"), load_file(parts / "last" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    resumed = [e for e in events(parts) if e["event"] == "start"]
    assert resumed[-1]["resumed"] is True and resumed[-1]["step"] == 4
    steps = [e["step"] for e in events(parts) if e["event"] == "step"]
    assert steps == list(range(1, 9))  # one line per step, none replayed


def test_resume_drops_metrics_after_the_saved_step(corpus, tmp_path):
    out = tmp_path / "run"
    run(corpus, out, 4, "eval_every=2")
    with open(out / "metrics.jsonl", "a") as f:  # as if a crash happened after more steps
        f.write(json.dumps({"event": "step", "step": 5, "loss": 1.0}) + "\n")
    run(corpus, out, 6, "eval_every=2", resume=True)
    steps = [e["step"] for e in events(out) if e["event"] == "step"]
    assert steps == list(range(1, 7))


def test_failed_checkpoint_write_keeps_the_old_files(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run(corpus, out, 2, "eval_every=2")
    state_before = (out / "train_state" / "state.pt").read_bytes()

    import tinyllm.train.state as state_mod

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(state_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run(corpus, out, 4, "eval_every=2", resume=True)
    assert (out / "train_state" / "state.pt").read_bytes() == state_before
    assert not [p for p in out.rglob("*.tmp")]
    monkeypatch.undo()
    weights_before = (out / "last" / "model.safetensors").read_bytes()

    import tinyllm.checkpoint as ckpt

    def broken_file(tensors, path, metadata=None):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken_file)
    with pytest.raises(OSError):
        run(corpus, out, 4, "eval_every=2", resume=True)
    assert (out / "last" / "model.safetensors").read_bytes() == weights_before
    assert not [p for p in out.rglob("*.tmp")]


def test_schedule_warmup_then_cosine():
    from tinyllm.train.schedule import lr_at

    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)   # half-way through the cosine
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert TrainConfig(max_steps=50).warmup == 5 and TrainConfig(max_steps=5000).warmup == 100
    lin = TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=100, schedule="linear")
    assert lr_at(50, lin) == pytest.approx(0.5)


def test_time_budget_stops_the_run_and_ends_the_decay(corpus, tmp_path, monkeypatch):
    """max_time_minutes: stop when the wall clock runs out; the cosine ends there too."""
    from tinyllm.train import trainer as trainer_mod
    from tinyllm.train.schedule import lr_at

    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=0, max_steps=1000, max_time_minutes=1.0)
    assert lr_at(0, cfg, wall=30.0) == pytest.approx(0.55)     # half the time: half-way down
    assert lr_at(0, cfg, wall=90.0) == pytest.approx(0.1)      # past the budget: min_lr
    assert lr_at(500, cfg, wall=0.0) == pytest.approx(0.55)    # steps can still lead
    assert lr_at(0, cfg) == pytest.approx(1.0)                 # without a clock: steps only

    # the trainer's clock: half a second passes during every step, none anywhere else
    clock = {"now": 1000.0}
    monkeypatch.setattr(trainer_mod, "time", SimpleNamespace(time=lambda: clock["now"]))

    def tick(ev):
        if ev["event"] == "step":
            clock["now"] += 0.5

    out = tmp_path / "run"
    done = run(corpus, out, 100000, "max_time_minutes=0.03", "eval_every=0", "sample_tokens=0",
               "warmup_steps=1", callbacks=[tick])
    # a 1.8 s budget: steps 1-3 end at 0.5, 1.0, 1.5 s, step 4 at 2.0 s, past it
    assert done["reason"] == "time" and done["step"] == 4
    assert done["wall"] == pytest.approx(2.0) and "val_loss" in done   # evaluated at the stop
    evs = events(out)
    lrs = [e["lr"] for e in evs if e["event"] == "step"]
    # each step's lr follows the clock (wall 0, 0.5, 1, 1.5 s of 1.8), not the 100000 steps
    run_cfg = TrainConfig(**evs[0]["train"])
    assert lrs == pytest.approx([lr_at(k, run_cfg, wall=0.5 * k) for k in range(4)])
    assert lrs[-1] < 0.5 * 3e-3                                  # decayed by the clock
    assert (out / "model.safetensors").is_file()
    assert torch.load(out / "train_state" / "state.pt", weights_only=True)["wall"] == pytest.approx(2.0)


def test_adamw_decays_matrices_only():
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.train.optim import make_optimizer

    model = GPT(ModelConfig(vocab_size=10, context_length=8, n_layer=1, n_head=1, n_embd=8))
    opt, _ = make_optimizer(model, TrainConfig(weight_decay=0.1), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_generic_trainer_with_a_custom_loss(tmp_path):
    """The Trainer is not LM-specific: any model, batches, loss, eval and save functions."""
    from tinyllm.train import Trainer

    torch.manual_seed(0)
    w_true = torch.randn(4, 1)
    xs = torch.randn(256, 4)
    ys = xs @ w_true
    model = torch.nn.Linear(4, 1)
    batches = lambda step, micro: (xs[(step * 16) % 256:][:16], ys[(step * 16) % 256:][:16])  # noqa: E731
    loss_fn = lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1])  # noqa: E731
    eval_fn = lambda m: {"val_mse": float(loss_fn(m, (xs, ys)))}  # noqa: E731
    saved = []
    seen = []
    cfg = TrainConfig(max_steps=80, lr=0.05, min_lr=0.01, weight_decay=0.0, eval_every=40,
                      best_metric="val_mse", sample_tokens=0)
    t = Trainer(model, cfg, batches, loss_fn, tmp_path / "reg", eval_fn=eval_fn,
                save_fn=lambda m, d, info: saved.append((str(d), info["step"])), callbacks=[seen.append])
    done = t.fit()
    assert done["best_metric"] < 0.05 and done["best_step"] == 80
    assert (str(tmp_path / "reg"), 80) in saved and (str(tmp_path / "reg" / "last"), 80) in saved
    assert [e["event"] for e in seen].count("step") == 80


def test_windows_sampling_and_bf16_autocast_run(corpus, tmp_path):
    out = tmp_path / "w"
    done = run(corpus, out, 3, "sampling=windows", "stride=16", "precision=bf16", "eval_every=3")
    assert done["reason"] == "finished" and done["val_loss"] < 10
    evs = events(out)
    assert evs[0]["precision"] == "bf16"
    steps = [e for e in evs if e["event"] == "step"]
    n_windows = (18000 - 33) // 16 + 1  # training split of 20k chars, windows of 32 + 1, stride 16
    assert steps[-1]["epoch"] == pytest.approx(round(3 * 8 / n_windows, 4))
