"""Classifier training details: the length-grouped sampler, --class-weight balanced and
--train-left-out (tinyllm/tasks/classify_train.py and the classify task's data handling)."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from tinyllm.data.batching import EpochSampler, StepBatches
from tinyllm.data.classification import Example
from tinyllm.errors import UserError
from tinyllm.tasks import classify_train
from tinyllm.tasks.classify import ClassifyTask
from tinyllm.tasks.classify_train import LengthGroupedSampler

SMALL = dict(n_layer=1, n_head=2, n_embd=32, context_length=32)


# ---- the length-grouped sampler ------------------------------------------------------------------
def lengths(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 200, n)


@pytest.mark.parametrize("n", [1024, 1003, 5])   # a multiple of the batch, not one, under one batch
def test_every_item_exactly_once_per_epoch(n):
    s = LengthGroupedSampler(lengths(n), batch_size=8, seed=3)
    stream = s.indices(0, 3 * n)               # three epochs, read as one stream of samples
    for e in range(3):
        assert sorted(stream[e * n:(e + 1) * n].tolist()) == list(range(n))
    # read piecewise, as training steps read it, the stream is the same
    pieces = np.concatenate([s.indices(k, 7) for k in range(0, 3 * n, 7)])[:3 * n]
    assert pieces.tolist() == stream.tolist()


def test_batches_are_length_sorted_with_little_padding():
    n, b = 1024, 8
    ln = lengths(n)

    def batches(sampler):
        return [ln[StepBatches(sampler, lambda i: i, b).indices(step, 0)] for step in range(n // b)]

    grouped, shuffled = batches(LengthGroupedSampler(ln, b, seed=0)), batches(EpochSampler(n, 0))
    assert all((np.diff(x) >= 0).all() for x in grouped)        # each batch sorted by length
    padding = lambda bs: sum(int((x.max() - x).sum()) for x in bs)   # noqa: E731
    assert padding(grouped) < 0.1 * padding(shuffled)
    # and the batches stay random: neither the epoch nor its first batches run short to long
    firsts = [x[0] for x in grouped]
    assert not (np.diff(firsts) >= 0).all()


def test_order_changes_per_epoch_and_repeats_for_the_same_seed():
    ln = lengths(300)
    a, again, other = (LengthGroupedSampler(ln, 8, seed=s) for s in (1, 1, 2))
    e0, e1 = a.indices(0, 300), a.indices(300, 300)
    assert e0.tolist() != e1.tolist()                              # a new order each epoch
    assert again.indices(300, 300).tolist() == e1.tolist()         # the same for the same seed,
    assert again.indices(0, 300).tolist() == e0.tolist()           # whatever was read before
    assert other.indices(0, 300).tolist() != e0.tolist()           # another for another seed


# ---- --class-weight balanced ---------------------------------------------------------------------
class CapturedTrainer:
    """Stands in for the Trainer: keeps what Run.fit hands it and trains nothing."""
    last: "CapturedTrainer"

    def __init__(self, model, cfg, batches, loss_fn, out_dir, **kw):
        self.model, self.cfg, self.batches, self.loss_fn = model, cfg, batches, loss_fn
        CapturedTrainer.last = self

    def fit(self):
        return {}


def make_run(tmp_path, class_weight):
    counts = {"a": 6, "b": 3, "c": 1}
    texts = [(f"{label} example number {i} " + "word " * i, label)
             for label, k in counts.items() for i in range(k)]
    train = [Example(text, label, line) for line, (text, label) in enumerate(texts, 1)]
    return classify_train.Run(task=ClassifyTask(), labels=list(counts), train=train, val=[],
                              out=tmp_path / class_weight, batch_size=len(train), epochs=1,
                              vocab_size=300, model_overrides=SMALL, dropout=0.0,
                              class_weight=class_weight)


def test_balanced_class_weight_is_inverse_label_frequency(tmp_path, monkeypatch):
    import tinyllm.train.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "Trainer", CapturedTrainer)
    make_run(tmp_path, "balanced").fit()
    t = CapturedTrainer.last
    ids, lengths_, y = batch = t.batches(0, 0)           # one batch: the whole training split
    assert sorted(y.tolist()) == [0] * 6 + [1] * 3 + [2]
    t.model.eval()
    with torch.no_grad():
        loss = float(t.loss_fn(t.model, batch))
        nll = F.cross_entropy(t.model.classify(ids, lengths_).float(), y, reduction="none")
    # n / (n_labels * count): 10 / 18, 10 / 9, 10 / 3
    w = torch.tensor([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])[y]
    assert loss == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-5)
    assert loss != pytest.approx(float(nll.mean()), rel=1e-3)     # not the unweighted mean

    make_run(tmp_path, "none").fit()                               # without it: the task's loss
    plain = CapturedTrainer.last
    plain.model.eval()
    with torch.no_grad():
        ids, lengths_, y = plain.batches(0, 0)
        nll = F.cross_entropy(plain.model.classify(ids, lengths_).float(), y, reduction="none")
        assert float(plain.loss_fn(plain.model, (ids, lengths_, y))) == pytest.approx(
            float(nll.mean()), rel=1e-5)


# ---- --train-left-out ----------------------------------------------------------------------------
COUNTS = {"a": 40, "b": 20, "c": 10}      # undersampling keeps 10 of each and leaves out 40


@pytest.fixture
def imbalanced(tmp_path):
    path = tmp_path / "imbalanced.tsv"
    rows = [f"{label} message {i} " + "more " * (i % 5) for label, k in COUNTS.items()
            for i in range(k)]
    path.write_text("text\tlabel\n" + "".join(f"{r}\t{r[0]}\n" for r in rows), encoding="utf-8")
    return path, rows


def finetune_splits(data, out, monkeypatch, **kw):
    """Fine-tune for real (one epoch of a tiny model); return the train, validation and test texts."""
    seen = {}
    real_fit = classify_train.Run.fit

    def recording_fit(run):
        seen["train"], seen["val"] = [e.text for e in run.train], [e.text for e in run.val]
        return real_fit(run)
    monkeypatch.setattr(classify_train.Run, "fit", recording_fit)
    report = ClassifyTask().finetune(data, out, balance="undersample", epochs=1, batch_size=16,
                                     vocab_size=300, model_overrides=SMALL, **kw)
    monkeypatch.undo()
    test = [json.loads(x)["text"] for x in (out / "test.jsonl").read_text().splitlines()]
    return seen["train"], seen["val"], test, report


def by_label(texts):
    return dict(sorted(Counter(t[0] for t in texts).items()))


def test_left_out_examples_join_only_the_training_split(imbalanced, tmp_path, monkeypatch):
    data, rows = imbalanced
    train, val, test, report = finetune_splits(data, tmp_path / "with", monkeypatch,
                                               train_left_out=True)
    plain_train, plain_val, plain_test, _ = finetune_splits(data, tmp_path / "without", monkeypatch)

    # undersampled: 10 of each label, split 7 / 1 / 2; validation and test stay balanced
    assert by_label(plain_train) == {"a": 7, "b": 7, "c": 7}
    assert by_label(val) == by_label(plain_val) == {"a": 1, "b": 1, "c": 1}
    assert by_label(test) == by_label(plain_test) == {"a": 2, "b": 2, "c": 2}
    # the same validation and test examples with or without --train-left-out
    assert sorted(val) == sorted(plain_val) and sorted(test) == sorted(plain_test)
    # the 40 left out (30 of a, 10 of b) are all in training, beside the balanced 21
    left_out = set(rows) - set(plain_train) - set(plain_val) - set(plain_test)
    assert by_label(left_out) == {"a": 30, "b": 10}
    assert sorted(train) == sorted(plain_train + list(left_out))
    assert by_label(train) == {"a": 37, "b": 17, "c": 7}
    assert not set(train) & (set(val) | set(test))
    assert report["train"]["train"] == 61 and report["train"]["left_out"] == 40
    assert report["n"] == 6


def test_train_left_out_needs_undersampling(imbalanced, tmp_path):
    data, _ = imbalanced
    with pytest.raises(UserError, match="--train-left-out needs --balance undersample"):
        ClassifyTask().finetune(data, tmp_path / "o", train_left_out=True)
    from tinyllm.cli import main

    r = CliRunner().invoke(main, ["finetune", "classify", "--data", str(data), "--train-left-out",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--train-left-out needs --balance undersample" in r.output
    assert not (tmp_path / "o").exists()
