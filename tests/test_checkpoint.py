"""Model directories: round trip, float16 storage, clear errors, atomic writes, lookup by name."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

import tinyllm
from tinyllm import checkpoint, modeldir
from tinyllm.checkpoint import CheckpointError, load_model, load_tokenizer, save_model
from tinyllm.config import ModelConfig, read_yaml
from tinyllm.models.decoder import GPT
from tinyllm.tokenizer import CharTokenizer


def make_model(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=40, context_length=32, n_layer=2, n_head=2, n_embd=16)
    cfg.update(kw)
    return GPT(ModelConfig(**cfg)).eval()


TOK = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLM.,\n")


def test_round_trip_is_exact(tmp_path):
    m = make_model(n_classes=3)
    out = save_model(m, TOK, tmp_path / "m", task="classify", extra={"labels": ["a", "b", "c"]})
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.safetensors",
                                                     "tokenizer.json"]
    again = load_model(out)
    for (k, v), (k2, v2) in zip(m.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert again.lm_head.weight is again.tok_emb.weight     # tying survives
    assert not again.training
    meta = read_yaml(out / "config.yaml")
    assert meta["task"] == "classify" and meta["labels"] == ["a", "b", "c"]
    assert meta["model"]["n_classes"] == 3 and meta["tokenizer"]["type"] == "char"
    assert again.meta == meta and again.path == out
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()            # the tied head is stored once
    idx = torch.randint(0, 40, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(again(idx), m(idx))
    assert load_tokenizer(out).encode("abc") == TOK.encode("abc")


def test_untied_head_is_stored(tmp_path):
    m = make_model(tie_weights=False)
    again = load_model(save_model(m, TOK, tmp_path / "m"))
    assert torch.equal(again.lm_head.weight, m.lm_head.weight)
    assert again.lm_head.weight is not again.tok_emb.weight


def test_float16_storage_halves_the_file_and_loads_as_float32(tmp_path):
    m = make_model(n_embd=64, n_head=4)
    full = save_model(m, TOK, tmp_path / "fp32")
    half = save_model(m, TOK, tmp_path / "fp16", dtype=torch.float16)
    s32 = (full / "model.safetensors").stat().st_size
    s16 = (half / "model.safetensors").stat().st_size
    assert s16 < 0.55 * s32
    again = load_model(half)
    assert again.tok_emb.weight.dtype == torch.float32
    torch.testing.assert_close(again.tok_emb.weight, m.tok_emb.weight, atol=1e-3, rtol=1e-3)


def test_public_api_by_name(tmp_path, tinyllm_home):
    m = make_model()
    save_model(m, TOK, modeldir.models_home() / "mine")
    model = tinyllm.load_model("mine")
    with torch.no_grad():
        logits = model(torch.zeros(1, 5, dtype=torch.long))
    assert logits.shape == (1, 5, 40)
    assert tinyllm.load_tokenizer("mine").vocab_size == TOK.vocab_size
    assert tinyllm.load_tokenizer("gpt2").encode("Hello, world!") == [15496, 11, 995, 0]
    assert [i.name for i in modeldir.list_models() if i.source == "user"] == ["mine"]


def test_truncated_file_is_a_clear_error(tmp_path):
    out = save_model(make_model(), TOK, tmp_path / "m")
    w = out / "model.safetensors"
    data = w.read_bytes()
    for cut in (5, 200, len(data) - 10):
        w.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"model.safetensors: unreadable or truncated"):
            load_model(out)


def test_wrong_shape_names_the_tensor_and_shapes(tmp_path):
    out = save_model(make_model(n_embd=16), TOK, tmp_path / "m")
    bigger = make_model(n_embd=32)
    checkpoint.save_weights(bigger, out / "model.safetensors")  # config still says 16 wide
    with pytest.raises(CheckpointError) as e:
        load_model(out)
    msg = str(e.value)
    assert "model.safetensors" in msg
    assert "blocks.0.attn.proj.bias has shape (32,), the config needs (16,)" in msg


def test_missing_and_unexpected_tensors(tmp_path):
    out = save_model(make_model(), TOK, tmp_path / "m")
    checkpoint.save_weights(make_model(n_layer=1), out / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing blocks\.1\."):
        load_model(out)
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights file missing"):
        load_model(out)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(modeldir.ModelNotFound, match="not a model directory"):
        load_model(tmp_path)
    with pytest.raises(modeldir.ModelNotFound, match="'nope' not found"):
        load_model("nope")
    (tmp_path / "config.yaml").write_text("model: {n_layers: 2}\n")
    with pytest.raises(checkpoint.ConfigError, match="unknown key.*n_layers"):
        load_model(tmp_path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    m = make_model()
    out = save_model(m, TOK, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        save_model(make_model(n_embd=32), TOK, out)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before                 # old weights and config intact, no temp files left
    load_model(out)


def test_saved_files_get_normal_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        out = save_model(make_model(), TOK, tmp_path / "m")
    finally:
        os.umask(mask)
    # temp files are created 0600; the renamed result must be readable like any other file
    for p in out.iterdir():
        assert p.stat().st_mode & 0o044, p.name


def test_save_over_an_existing_directory_replaces_it(tmp_path):
    out = save_model(make_model(), TOK, tmp_path / "m")
    save_model(make_model(n_layer=3), TOK, out)
    assert load_model(out).config.n_layer == 3
    assert [p for p in out.iterdir() if p.name.endswith(".tmp")] == []
