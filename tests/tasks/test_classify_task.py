"""The classify task: fine-tuning through the Trainer, freezing, LoRA (merged on save), evaluation."""
from __future__ import annotations

import json
import random

import pytest
import torch

from tinyllm import modeldir
from tinyllm.checkpoint import load_model
from tinyllm.config import ModelConfig, read_yaml
from tinyllm.errors import UserError
from tinyllm.models.lora import LoRALinear, merge_lora, parse_train_layers, set_trainable
from tinyllm.models.decoder import GPT
from tinyllm.tasks.base import DataError
from tinyllm.tasks.classify import ClassifyTask

GOOD = ["good", "great", "lovely", "nice", "happy", "fine", "superb"]
BAD = ["bad", "awful", "sad", "poor", "nasty", "grim", "broken"]


def toy_data(path, n=48, seed=0):
    """Two labels told apart by their words: learnable in a few steps."""
    rng = random.Random(seed)
    lines = ["text\tlabel"]
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.choices(GOOD if label == "pos" else BAD, k=rng.randint(2, 6))
        lines.append(f"the day was {' '.join(words)}\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


SMALL = dict(n_layer=1, n_head=2, n_embd=32, context_length=32)


def losses(out):
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e["event"] == "step"]


def test_finetune_from_scratch_lowers_loss_and_reports(tmp_path):
    data = toy_data(tmp_path / "toy.tsv")
    out = tmp_path / "clf"
    report = ClassifyTask().finetune(data, out, epochs=8, batch_size=8, vocab_size=300,
                                     model_overrides=SMALL, lr=3e-3)
    steps = losses(out)
    assert len(steps) == report["train"]["steps"] == 8 * 5  # 34 train examples / 8 per batch
    assert sum(steps[-5:]) / 5 < 0.5 * sum(steps[:5]) / 5
    m = report["metrics"]
    assert report["n"] == 10 and set(m) >= {"accuracy", "macro_f1", "per_class", "confusion"}
    assert m["accuracy"] >= 0.8
    assert sum(map(sum, m["confusion"])) == 10
    meta = read_yaml(out / "config.yaml")
    assert meta["task"] == "classify" and meta["labels"] == ["neg", "pos"]
    assert meta["model"]["n_classes"] == 2 and meta["tokenizer"]["type"] == "bpe"
    assert meta["train"]["test"]["accuracy"] == pytest.approx(m["accuracy"], abs=1e-6)
    assert (out / "test.jsonl").read_text().count("\n") == 10
    # eval on the written test split gives the same numbers as the report
    again = ClassifyTask().evaluate(out, out / "test.jsonl")
    assert again["metrics"]["confusion"] == m["confusion"]


def test_finetune_from_a_model_with_frozen_layers_and_lora(tmp_path, tiny_gpt2_dir):
    data = toy_data(tmp_path / "toy.tsv", n=24)
    out = tmp_path / "lora"
    base = load_model(tiny_gpt2_dir)
    report = ClassifyTask().finetune(data, out, model=str(tiny_gpt2_dir), train_layers="last-1",
                                     lora_rank=2, epochs=1, batch_size=8, lr=1e-2)
    assert report["train"]["params"]["lora_modules"] == 4  # qkv, proj, fc, mlp.proj of block 1
    tuned = load_model(out)  # merged: a plain GPT, no LoRA tensors in the file
    assert tuned.meta["labels"] == ["neg", "pos"] and tuned.meta["tokenizer"]["type"] == "gpt2"
    assert not any("lora" in k for k in tuned.state_dict())
    sd0, sd1 = base.state_dict(), tuned.state_dict()
    assert torch.equal(sd0["tok_emb.weight"], sd1["tok_emb.weight"])          # frozen
    assert torch.equal(sd0["blocks.0.attn.qkv.weight"], sd1["blocks.0.attn.qkv.weight"])
    assert not torch.equal(sd0["blocks.1.attn.qkv.weight"], sd1["blocks.1.attn.qkv.weight"])  # merged


def test_lora_merge_equals_unmerged_output():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50, context_length=16, n_layer=2, n_head=2, n_embd=16,
                            n_classes=3)).eval()
    counts = set_trainable(model, "all", lora_rank=4)
    assert counts["lora_modules"] == 8
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith(("ln_f", "cls_head")) for n in trainable)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            torch.nn.init.normal_(m.lora_B, std=0.1)  # a trained-looking, non-zero update
    ids = torch.randint(0, 50, (3, 10))
    lengths = torch.tensor([10, 4, 1])
    with torch.no_grad():
        before = model.classify(ids, lengths)
        lm_before = model(ids)
        assert merge_lora(model) == 8
        after = model.classify(ids, lengths)
        lm_after = model(ids)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lm_after, lm_before, rtol=1e-5, atol=1e-5)


def test_freezing_choices():
    model = GPT(ModelConfig(vocab_size=50, context_length=16, n_layer=3, n_head=2, n_embd=16,
                            n_classes=2))
    c = set_trainable(model, "last-1")
    train = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("blocks.2.", "ln_f", "cls_head")) for n in train)
    assert any(n.startswith("blocks.2.") for n in train) and c["trainable"] < c["total"]
    c = set_trainable(model, "all")
    assert c["trainable"] == c["total"]
    assert parse_train_layers("last-0", 3) == 0 and parse_train_layers(None, 3) == 3
    for bad in ("last-4", "first-1", "some"):
        with pytest.raises(UserError):
            parse_train_layers(bad, 3)


def test_bad_data_is_a_user_error(tmp_path):
    one = tmp_path / "one.tsv"
    one.write_text("ham\thello\nham\tthere\n")
    with pytest.raises(DataError, match="at least two labels"):
        ClassifyTask().finetune(one, tmp_path / "o")
    data = toy_data(tmp_path / "toy.tsv", n=8)
    with pytest.raises(DataError, match=r"toy.tsv:1: missing column 'body'"):
        ClassifyTask().finetune(data, tmp_path / "o", text_col="body")


def test_evaluate_rejects_unknown_labels(tmp_path):
    torch.manual_seed(0)
    from tinyllm.checkpoint import save_model
    from tinyllm.tokenizer import get_gpt2

    model = GPT(ModelConfig(context_length=32, n_layer=1, n_head=2, n_embd=16, n_classes=2))
    out = save_model(model, get_gpt2(), tmp_path / "m", task="classify",
                     extra={"labels": ["ham", "spam"]})
    data = tmp_path / "eval.tsv"
    data.write_text("ham\thi\nspam\twin\neggs\tbacon\n")
    with pytest.raises(DataError, match=r"eval.tsv:3: unknown label 'eggs'"):
        ClassifyTask().evaluate(out, data)
    data.write_text("ham\thi\nspam\twin\n")
    r = ClassifyTask().evaluate(out, data)
    assert r["n"] == 2 and r["backend"] == "torch" and r["model"] == str(modeldir.resolve(out))


def test_resume_continues_the_run_and_refuses_to_overwrite(tmp_path):
    data = toy_data(tmp_path / "toy.tsv", n=24)
    out = tmp_path / "run"
    kw = dict(batch_size=8, vocab_size=300, model_overrides=SMALL)
    first = ClassifyTask().finetune(data, out, epochs=1, **kw)
    tok = (out / "tokenizer.json").read_text()
    with pytest.raises(UserError, match="holds a training run; use --resume .* or --overwrite"):
        ClassifyTask().finetune(data, out, epochs=2, **kw)
    second = ClassifyTask().finetune(data, out, epochs=2, resume=True, **kw)
    assert second["train"]["steps"] == 2 * first["train"]["steps"]
    starts = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()
              if '"start"' in x]
    assert starts[-1]["resumed"] is True and starts[-1]["step"] == first["train"]["steps"]
    assert (out / "tokenizer.json").read_text() == tok  # the same vocabulary as the first part
    metrics = (out / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match=r"already reached step \d+; give more --epochs"):
        ClassifyTask().finetune(data, out, epochs=2, resume=True, **kw)
    assert (out / "metrics.jsonl").read_text() == metrics  # refused before anything is written
    again = ClassifyTask().finetune(data, out, epochs=1, overwrite=True, **kw)
    assert again["train"]["steps"] == first["train"]["steps"]
