"""Ctrl-C in two stages (tinyllm/train/trainer.py): the first SIGINT lets the current micro-batch
finish, drops the unfinished step, saves the last completed one and re-raises KeyboardInterrupt; a
second SIGINT while that save is being written interrupts at once, leaving the previous checkpoint.

Real signals, raised on the main thread where the trainer installs its handler
(``signal.raise_signal`` runs the Python handler before it returns: no timing involved).
"""
from __future__ import annotations

import json
import signal
import threading

import pytest
import torch

from tinyllm.train.pretrain import train_lm
from tinyllm.train.runconfig import load_run

from conftest import shakespeare_file

TINY = ["n_layer=1", "n_head=2", "n_embd=32", "context_length=32", "batch_size=4",
        "eval_batches=1", "sample_tokens=0", "grad_accum=2", "save_every=2", "eval_every=0"]

pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="the trainer handles SIGINT only on the main thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return shakespeare_file(tmp_path_factory.mktemp("corpus") / "shakespeare-20k.txt", 20000)


@pytest.fixture(autouse=True)
def keep_sigint_handler():
    before = signal.getsignal(signal.SIGINT)
    yield before
    signal.signal(signal.SIGINT, before)


def run(corpus, out, max_steps, resume=False, on_trainer=None, callbacks=()):
    r = load_run(data=str(corpus), out=str(out), max_steps=max_steps, sets=TINY, resume=resume)
    return train_lm(r, resume=resume, on_trainer=on_trainer, callbacks=callbacks)


def events(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def saved_state(out):
    return torch.load(out / "train_state" / "state.pt", weights_only=True)


def test_first_ctrl_c_finishes_the_micro_batch_drops_the_step_and_saves(corpus, tmp_path,
                                                                         keep_sigint_handler):
    out = tmp_path / "run"
    fetched: list[tuple[int, int]] = []        # (step, micro) of every training batch fetched
    after_step: dict[int, dict] = {}           # the weights after each completed step
    holder = {}

    def hook(trainer):
        holder["t"] = trainer
        batches = trainer.batches

        def interrupting(step, micro=0):
            fetched.append((step, micro))
            if (step, micro) == (3, 0):           # the fourth step, its first micro-batch
                signal.raise_signal(signal.SIGINT)
            return batches(step, micro)
        trainer.batches = interrupting

    def snapshot(ev):
        if ev["event"] == "step":
            after_step[ev["step"]] = {k: v.clone() for k, v in holder["t"].model.state_dict().items()}

    with pytest.raises(KeyboardInterrupt):
        run(corpus, out, 8, on_trainer=hook, callbacks=[snapshot])

    # the micro-batch under way when Ctrl-C came was finished; the step's second one never started
    assert (3, 0) in fetched and (3, 1) not in fetched
    assert sorted(after_step) == [1, 2, 3]
    state = saved_state(out)           # save_every=2 saved step 2; Ctrl-C saved step 3
    assert state["step"] == 3 and state["tokens"] == 3 * 2 * 4 * 32
    # the weights and the optimizer are those of the last completed step: the unfinished one
    # touched neither
    for k, v in after_step[3].items():
        assert torch.equal(state["model"][k], v), k
    assert all(s["step"] == 3 for s in state["optimizer"]["state"].values())
    evs = events(out)
    assert evs[-1]["event"] == "done" and evs[-1]["reason"] == "interrupted" and evs[-1]["step"] == 3
    assert [e["kind"] for e in evs if e["event"] == "checkpoint" and e["step"] == 3] == ["last"]
    assert (out / "last" / "model.safetensors").is_file()
    assert signal.getsignal(signal.SIGINT) is keep_sigint_handler   # the handler is put back

    done = run(corpus, out, 5, resume=True)       # and the run continues from there
    assert done["reason"] == "finished" and done["step"] == 5
    assert [e["step"] for e in events(out) if e["event"] == "step"] == [1, 2, 3, 4, 5]


def test_second_ctrl_c_during_the_save_interrupts_it_and_keeps_the_previous_checkpoint(
        corpus, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    run(corpus, straight, 6)

    out = tmp_path / "run"
    import tinyllm.train.state as state_mod

    real_save = state_mod.torch.save
    saving = {"interrupted": False, "second_sent": False}

    def save_interrupted_by_a_second_ctrl_c(obj, f):
        if not saving["interrupted"]:
            return real_save(obj, f)
        with open(f, "wb") as fh:                 # half way through writing the state file...
            fh.write(b"half a state file")
        saving["second_sent"] = True
        signal.raise_signal(signal.SIGINT)          # ...the second Ctrl-C
        raise AssertionError("the second Ctrl-C did not interrupt the save")

    def first_ctrl_c(ev):
        if ev["event"] == "step" and ev["step"] == 3:
            saving["interrupted"] = True
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(state_mod.torch, "save", save_interrupted_by_a_second_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run(corpus, out, 6, callbacks=[first_ctrl_c])
    monkeypatch.undo()
    assert saving["second_sent"]

    # the save was abandoned: the state file is still the one written at step 2 (save_every=2), the
    # half-written temp file is gone, and no "done" event was written after the checkpoint at step 2
    assert saved_state(out)["step"] == 2
    assert not [p for p in out.rglob("*.tmp")]
    evs = events(out)
    assert not [e for e in evs if e["event"] == "done"]
    assert [e["step"] for e in evs if e["event"] == "step"] == [1, 2, 3]

    # resuming from that checkpoint ends where a run that was never interrupted ends
    done = run(corpus, out, 6, resume=True)
    assert done["step"] == 6
    a, b = saved_state(straight)["model"], saved_state(out)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
