"""Encoders end to end on small random models: the architecture, embeddings on both backends,
`tinyllm embed`, ONNX export (torch-free runtime), classification fine-tuning and MLM pretraining."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import shakespeare_file
from tinyllm.checkpoint import load_model
from tinyllm.cli import main
from tinyllm.config import EncoderConfig, preset
from tinyllm.engines import open_engine
from tinyllm.models.encoder import Encoder

ROOT = Path(__file__).resolve().parents[1]
SMS = ROOT / "tinyllm" / "bundled" / "data" / "SMSSpamCollection.tsv"


def cli(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def run_cli(*args, stdin: bytes = b"", torch_probe: bool = False) -> subprocess.CompletedProcess:
    """`tinyllm ARGS` in a fresh interpreter; with ``torch_probe`` stderr ends with TORCH=<bool>."""
    probe = ("import atexit, sys; atexit.register(lambda: sys.stderr.write("
             "'TORCH=%s\\n' % ('torch' in sys.modules)))\n") if torch_probe else ""
    code = probe + "from tinyllm.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], input=stdin,
                          capture_output=True, env=env, timeout=180)


# ---- the architecture ----------------------------------------------------------------------------
def test_padding_never_changes_the_real_tokens():
    torch.manual_seed(0)
    m = Encoder(EncoderConfig(vocab_size=50, context_length=16, n_layer=2, n_head=2, n_embd=16,
                              n_classes=3, dropout=0.0)).eval()
    ids = torch.randint(5, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    with torch.no_grad():
        alone = m.hidden(ids)
        batch = m.hidden(padded, torch.tensor([6]))
        assert torch.allclose(alone, batch[:, :6], atol=1e-5)
        assert torch.allclose(m.classify(ids), m.classify(padded, torch.tensor([6])), atol=1e-5)
        e1, e2 = m.embed(ids, normalize=True), m.embed(padded, torch.tensor([6]), normalize=True)
        assert torch.allclose(e1, e2, atol=1e-5) and torch.allclose(e1.norm(dim=-1), torch.ones(1))
    logits = m(ids)
    assert logits.shape == (1, 6, 50)
    # the MLM decoder is the word embedding: one tensor, not two
    assert "mlm_head.decoder.weight" not in m.state_dict()
    assert m.num_params() == m.config.num_params()


def test_token_types_change_the_output():
    torch.manual_seed(0)
    m = Encoder(EncoderConfig(vocab_size=50, context_length=16, n_layer=1, n_head=2, n_embd=16)).eval()
    ids = torch.randint(5, 50, (1, 8))
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        assert not torch.allclose(m.hidden(ids), m.hidden(ids, None, types))
        assert torch.allclose(m.hidden(ids), m.hidden(ids, None, torch.zeros_like(types)))


def test_wrong_pooling_for_the_family_is_named():
    with pytest.raises(ValueError, match="pooling must be 'cls' or 'mean' for an encoder"):
        preset("bert-tiny", pooling="last")


# ---- embeddings ----------------------------------------------------------------------------------
def test_embed_cli_jsonl_and_npy(tiny_bert_dir, tmp_path):
    lines = ["to be or not to be", "", "the king is dead", "x" * 400]
    r = run_cli("embed", "--model", tiny_bert_dir, stdin=("\n".join(lines) + "\n").encode())
    assert r.returncode == 0, r.stderr.decode()
    rows = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert [x["text"] for x in rows] == lines
    assert rows[1]["embedding"] is None  # an empty line: no vector, like classify's empty label
    assert all(len(x["embedding"]) == 32 for x in rows if x["text"])
    eng = open_engine(tiny_bert_dir, "torch")
    ref = eng.embed([lines[0], lines[2], lines[3]])  # the long line is truncated to the context
    got = np.array([rows[0]["embedding"], rows[2]["embedding"], rows[3]["embedding"]])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    r = run_cli("embed", "--model", tiny_bert_dir, "--format", "npy", "--normalize",
                stdin=("\n".join(lines) + "\n").encode())
    assert r.returncode == 0, r.stderr.decode()
    (tmp_path / "v.npy").write_bytes(r.stdout)
    v = np.load(tmp_path / "v.npy")
    assert v.shape == (4, 32) and v.dtype == np.float32 and np.isnan(v[1]).all()
    np.testing.assert_allclose(np.linalg.norm(v[[0, 2, 3]], axis=1), 1.0, atol=1e-5)


def test_embed_pooling_and_the_models_own_settings(tiny_bert_dir):
    from tinyllm.config import read_yaml, write_yaml

    eng = open_engine(tiny_bert_dir, "torch")
    texts = ["to be or not to be", "the king"]
    mean, cls = eng.embed(texts), eng.embed(texts, pooling="cls")
    assert not np.allclose(mean, cls)
    model = load_model(tiny_bert_dir)
    from tinyllm.runtime.textbatch import encode_batch

    ids, lengths = encode_batch(eng.tokenizer, texts, 64)
    with torch.no_grad():
        ref = model.embed(torch.from_numpy(ids), torch.from_numpy(lengths))
    np.testing.assert_allclose(mean, ref.numpy(), atol=1e-5)
    meta = read_yaml(tiny_bert_dir / "config.yaml")
    write_yaml(tiny_bert_dir / "config.yaml", {**meta, "embed": {"pooling": "cls", "normalize": True,
                                                                 "max_length": 8}})
    eng = open_engine(tiny_bert_dir, "torch")
    own = eng.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(own, axis=1), 1.0, atol=1e-5)
    short = eng.embed(["to be or not to be, that is the question"])
    assert eng.embed_settings() == ("cls", True, 8)
    assert short.shape == (1, 32)


def test_streams_and_is_head_safe(tiny_bert_dir, tmp_path):
    data = tmp_path / "many.txt"
    data.write_text("".join(f"line number {i}\n" for i in range(3000)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(data, "rb") as f:
        p = subprocess.Popen([sys.executable, "-m", "tinyllm", "embed", "--model", str(tiny_bert_dir)],
                             stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        first = p.stdout.readline()
        p.stdout.close()  # like `| head -n 1`
        _, err = p.communicate(timeout=180)
    assert json.loads(first)["text"] == "line number 0"
    assert p.returncode == 0 and err.strip() == b""


def test_models_without_an_encoder_cannot_embed(tiny_lm_dir, tiny_bert_dir):
    r = cli("embed", "--model", tiny_lm_dir, input="hello\n")
    assert r.exit_code == 2 and "no encoder" in r.output and "Traceback" not in r.output
    r = cli("embed", input="hello\n")
    assert r.exit_code == 2 and "--model" in r.output
    r = cli("generate", "--model", tiny_bert_dir, "hello")
    assert r.exit_code == 2 and "does not generate" in r.output
    r = cli("classify", "--model", tiny_bert_dir, input="hello\n")
    assert r.exit_code == 2 and "not a classifier" in r.output


# ---- ONNX ----------------------------------------------------------------------------------------
def test_onnx_embedder_matches_torch_and_runs_without_torch(tiny_bert_dir):
    from tinyllm.export.onnx import export_model

    result = export_model(tiny_bert_dir, int8=True)
    assert result.kind == "embed" and result.max_abs_diff < 1e-4
    assert result.quant_method in ("dynamic", "nbits8") and result.quant_check
    texts = ["to be or not to be", "the king is dead, long live the king", "a"]
    ref = open_engine(tiny_bert_dir, "torch").embed(texts, normalize=True)
    fp32 = open_engine(tiny_bert_dir, "onnx", precision="fp32").embed(texts, normalize=True)
    np.testing.assert_allclose(fp32, ref, atol=1e-4)
    int8 = open_engine(tiny_bert_dir, "onnx", precision="int8").embed(texts, normalize=True)
    assert (int8 * ref).sum(1).min() >= 0.99
    r = run_cli("embed", "--backend", "onnx", "--model", tiny_bert_dir, stdin=b"to be or not\n",
                torch_probe=True)
    assert r.returncode == 0, r.stderr.decode()
    assert b"TORCH=False" in r.stderr and len(json.loads(r.stdout)["embedding"]) == 32


@pytest.fixture(scope="module")
def encoder_classifier(tmp_path_factory) -> Path:
    """A bert-tiny-shaped encoder fine-tuned from scratch on 300 SMS messages (WordPiece trained
    on them), with [CLS] pooling through the pooler."""
    from tinyllm.tasks.classify import ClassifyTask

    out = tmp_path_factory.mktemp("enc-clf") / "spam"
    data = tmp_path_factory.mktemp("sms") / "sms.tsv"
    data.write_text("".join(SMS.read_text(encoding="utf-8").splitlines(True)[:300]), encoding="utf-8")
    ClassifyTask().finetune(data, out, preset="bert-tiny", epochs=1, batch_size=32, vocab_size=800,
                            model_overrides={"n_layer": 1, "n_embd": 32, "n_head": 2,
                                             "context_length": 64},
                            quiet=True)
    return out


def test_finetune_classify_from_scratch_on_an_encoder(encoder_classifier):
    from tinyllm import modeldir

    info = modeldir.read_info(encoder_classifier)
    assert info.is_encoder and info.task == "classify" and info.meta["labels"] == ["ham", "spam"]
    assert info.meta["tokenizer"]["type"] == "wordpiece" and info.model_config.pooling == "cls"
    r = cli("classify", "--model", encoder_classifier, "--backend", "torch", "--format", "jsonl",
            input="WINNER! claim your prize now\n\nsee you at 6\n")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert rows[1]["label"] is None and rows[0]["label"] in ("ham", "spam")


def test_onnx_encoder_classifier_matches_torch_without_torch(encoder_classifier):
    from tinyllm.export.onnx import export_model

    result = export_model(encoder_classifier, int8=True)
    assert result.kind == "classify" and result.max_abs_diff < 1e-4
    texts = ["WINNER! claim your prize now", "see you at 6", "x " * 200]
    ref = open_engine(encoder_classifier, "torch").classify(texts)
    got = open_engine(encoder_classifier, "onnx", precision="fp32").classify(texts)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    r = run_cli("classify", "--backend", "onnx", "--model", encoder_classifier,
                stdin=b"WINNER! claim your prize\nsee you at 6\n", torch_probe=True)
    assert r.returncode == 0, r.stderr.decode()
    assert b"TORCH=False" in r.stderr and r.stdout.decode().count("\n") == 2
    r = run_cli("embed", "--backend", "onnx", "--model", encoder_classifier, stdin=b"hi\n")
    assert r.returncode == 2 and b"--backend torch" in r.stderr


@pytest.mark.parametrize("layers,trainable", [("head", {"pooler", "cls_head"}),
                                             ("last-1", {"pooler", "cls_head", "blocks.1"})])
def test_train_layers_on_an_encoder(tiny_bert_dir, layers, trainable):
    import dataclasses

    from tinyllm.checkpoint import build_model
    from tinyllm.models.lora import set_trainable

    model = build_model(dataclasses.replace(load_model(tiny_bert_dir).config, n_classes=2))
    counts = set_trainable(model, layers)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.rsplit(".", 1)[0] if not n.startswith("blocks") else ".".join(n.split(".")[:2])
            for n in names} == trainable
    assert counts["trainable"] < counts["total"]
    lora = build_model(dataclasses.replace(load_model(tiny_bert_dir).config, n_classes=2))
    assert set_trainable(lora, "all", lora_rank=2)["lora_modules"] == 2 * 4


# ---- MLM pretraining -----------------------------------------------------------------------------
def test_mlm_pretraining_learns_resumes_exactly_and_saves_an_encoder(tmp_path):
    data = shakespeare_file(tmp_path / "shakespeare.txt", 60000)
    args = ["train", "--objective", "mlm", "--data", data, "--set", "model.n_layer=1",
            "--set", "model.n_embd=32", "--set", "model.n_head=2", "--set", "seq_len=32",
            "--set", "batch_size=8", "--set", "bpe_vocab_size=500", "--set", "eval_batches=2",
            "--set", "lr=3e-3", "--set", "schedule=constant", "--set", "warmup_steps=0",
            "--eval-every", "10", "--seed", "3"]  # a constant lr: a longer --max-steps changes nothing
    r = cli(*args, "--out", tmp_path / "a", "--max-steps", "20", "--json")
    assert r.exit_code == 0, r.output
    events = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "sample"} <= set(evals[-1])
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    model = load_model(tmp_path / "a")
    assert isinstance(model, Encoder) and model.meta["task"] == "mlm"
    assert model.meta["tokenizer"]["type"] == "wordpiece"
    # 10 steps, then 10 more with --resume: the same weights as 20 in one go
    assert cli(*args, "--out", tmp_path / "b", "--max-steps", "10").exit_code == 0
    r = cli("train", "--out", tmp_path / "b", "--resume", "--max-steps", "20")
    assert r.exit_code == 0, r.output
    a, b = load_model(tmp_path / "a" / "last"), load_model(tmp_path / "b" / "last")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), k


def test_masking_follows_bert():
    from tinyllm.data.masking import mask_tokens

    rng = np.random.default_rng(0)
    ids = rng.integers(10, 1000, size=(64, 128))
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS], [SEP]
    inputs, targets = mask_tokens(ids, rng, mask_id=4, vocab_size=1000, special_ids={0, 1, 2, 3, 4})
    chosen = targets != -100
    assert abs(chosen.mean() - 0.15) < 0.01 and not chosen[:, [0, -1]].any()
    assert (targets[chosen] == ids[chosen]).all()
    masked = (inputs == 4) & chosen
    kept = (inputs == ids) & chosen
    assert abs(masked.sum() / chosen.sum() - 0.8) < 0.03
    assert abs(kept.sum() / chosen.sum() - 0.1) < 0.03 + 0.001  # random draws may hit the same id
    assert ((inputs == ids) | chosen).all()  # nothing else changes


def test_objective_must_fit_the_model(tmp_path):
    data = shakespeare_file(tmp_path / "s.txt", 5000)
    r = cli("train", "--preset", "tiny", "--objective", "mlm", "--data", data, "--out", tmp_path / "x")
    assert r.exit_code == 2 and "objective mlm trains an encoder" in r.output
    r = cli("train", "--preset", "bert-tiny", "--data", data, "--out", tmp_path / "y")
    assert r.exit_code == 2 and "--objective mlm" in r.output


def test_bundled_mlm_preset_resolves():
    from tinyllm.train.runconfig import load_run

    run = load_run(None, "bert-tiny-mlm-5min")
    cfg = run.model_config(vocab_size=4096)
    assert isinstance(cfg, EncoderConfig) and (cfg.n_layer, cfg.n_embd, cfg.context_length) == (2, 128, 128)
    assert run.train.objective == "mlm" and run.train.tokenizer == "wordpiece"
    assert Path(run.train.data).is_file() and run.train.max_time_minutes == 5
