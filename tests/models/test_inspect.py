"""The explicit attention path (tinyllm.models.inspect) and the Inspector on random and trained
models: weights that are probabilities, causal, and give exactly the model's own forward."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinyllm import modeldir
from tinyllm.checkpoint import save_model
from tinyllm.config import ModelConfig
from tinyllm.engines.inspect import Inspector, bits, open_inspector
from tinyllm.errors import UserError
from tinyllm.models.decoder import GPT
from tinyllm.models.inspect import attention_weights, lens_top, trace
from tinyllm.tokenizer import CharTokenizer

from conftest import shakespeare

LLAMA3_SCALING = {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_context_length": 16}
CONFIGS = {
    "gpt2": dict(vocab_size=97, context_length=48, n_layer=3, n_head=4, n_embd=32),
    # Llama-style: RMSNorm, rotary positions (with Llama 3 scaling), SwiGLU, 4 query heads on
    # 2 key/value heads, no biases, an untied LM head
    "llama-gqa": dict(vocab_size=97, context_length=48, n_layer=3, n_head=4, n_kv_head=2,
                      n_embd=32, norm="rmsnorm", position="rope", mlp="swiglu", bias=False,
                      qkv_bias=False, tie_weights=False, rope_scaling=LLAMA3_SCALING,
                      rope_theta=500000.0, intermediate_size=80),
    "qwen2-mqa": dict(vocab_size=97, context_length=48, n_layer=2, n_head=4, n_kv_head=1,
                      n_embd=32, norm="rmsnorm", position="rope", mlp="swiglu", bias=False,
                      qkv_bias=True, layer_norm_eps=1e-6),
}


def random_model(name: str) -> GPT:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**CONFIGS[name])).eval()
    with torch.no_grad():   # larger weights than the init: attention far from uniform
        for block in model.blocks:
            block.attn.qkv.weight.mul_(8)
    return model


@pytest.fixture(params=sorted(CONFIGS))
def model(request) -> GPT:
    return random_model(request.param)


def test_weights_are_causal_probabilities_and_give_the_forward(model):
    idx = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(1))
    t = trace(model, idx)
    cfg = model.config
    assert t.attention.shape == (2, cfg.n_layer, cfg.n_head, 40, 40)
    assert t.residuals.shape == (2, cfg.n_layer, 40, cfg.n_embd)
    assert t.causal
    # every row sums to 1 and nothing above the diagonal is seen
    assert torch.allclose(t.attention.sum(-1), torch.ones(()), atol=1e-5)
    assert t.attention.triu(diagonal=1).abs().max().item() == 0.0
    assert t.attention.min().item() >= 0.0
    # attention that is not uniform: the test would not notice wrong weights otherwise
    assert t.attention.max().item() > 0.5
    # the explicit path computes the same logits as SDPA's forward
    with torch.no_grad():
        expected = model(idx)
    assert (t.logits - expected).abs().max().item() < 1e-5


def test_explicit_weights_equal_a_reference_softmax():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 5, 8, generator=g), torch.randn(1, 2, 5, 8, generator=g)
    w = attention_weights(q, k, causal=True)
    for i in range(5):
        s = (q[0, :, i:i + 1] @ k[0, :, :i + 1].transpose(-1, -2))[:, 0] / math.sqrt(8)  # (2, i+1)
        assert torch.allclose(w[0, :, i, :i + 1], s.softmax(-1), atol=1e-6)
        assert (w[0, :, i, i + 1:] == 0).all()


def test_gqa_heads_are_expanded_per_query_head():
    """Each query head has its own map; heads sharing a key/value head still differ (their
    queries do), and the mean over heads is a distribution too."""
    model = random_model("llama-gqa")
    t = trace(model, torch.arange(30)[None])
    w = t.attention[0, 0]                       # (nh, T, T) of layer 0
    assert w.shape[0] == 4
    assert not torch.allclose(w[0], w[1])       # heads 0 and 1 read kv head 0 with other queries
    assert torch.allclose(w.mean(0).sum(-1), torch.ones(()), atol=1e-5)


def test_logit_lens_at_the_last_layer_is_the_models_own_prediction(model):
    idx = torch.randint(0, 97, (1, 33), generator=torch.Generator().manual_seed(2))
    t = trace(model, idx)
    probs, ids = lens_top(model, t.residuals)
    assert probs.shape == ids.shape == (1, model.config.n_layer, 33)
    with torch.no_grad():
        p_model, i_model = torch.softmax(model(idx), dim=-1).max(dim=-1)
    assert torch.equal(ids[0, -1], i_model[0])
    assert torch.allclose(probs[0, -1], p_model[0], atol=1e-6)
    # the earlier layers read the same way: final norm, then the LM head
    with torch.no_grad():
        p0, i0 = torch.softmax(model.lm_head(model.ln_f(t.residuals[:, 0])), -1).max(-1)
    assert torch.equal(ids[0, 0], i0[0]) and torch.allclose(probs[0, 0], p0[0])


# ---- the Inspector ----------------------------------------------------------------------------
def bundled() -> Inspector:
    return Inspector(modeldir.find(str(modeldir.BUNDLED_MODELS / "shakespeare-char")))


@pytest.fixture(scope="module")
def trained() -> Inspector:
    """The bundled shakespeare-char: a trained model (its attention has structure)."""
    return bundled()


TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?"


def test_inspection_of_a_trained_model(trained):
    r = trained.inspect(TEXT, top_k=7)
    ids = trained.tokenizer.prompt_ids(TEXT)
    T, L, H = len(ids), trained.n_layer, trained.n_head
    assert [t["id"] for t in r.tokens] == ids
    assert "".join(t["text"] for t in r.tokens) == TEXT
    assert r.attention.shape == (L, H, T, T) and r.kind == "decoder" and r.causal
    assert np.allclose(r.attention.sum(-1), 1.0, atol=1e-5)
    assert np.abs(np.triu(r.attention, 1)).max() == 0.0
    # the top-k probabilities are a softmax of the model's own logits (SDPA's forward; the
    # explicit path's logits equal them within 1e-5), largest first
    with torch.no_grad():
        probs = torch.softmax(trained.model(torch.tensor([ids])), dim=-1)[0]     # (T, vocab)
    assert len(r.next) == T and all(len(row) == 7 for row in r.next)
    for pos, row in enumerate(r.next):
        p, i = probs[pos].topk(7)
        assert [e["id"] for e in row] == i.tolist()
        assert np.allclose([e["prob"] for e in row], p.tolist(), atol=1e-5)
        assert row[0]["text"] == trained.tokenizer.token_str(row[0]["id"])
    # the token that actually follows: its probability and rank among all tokens
    assert len(r.actual) == T - 1
    for pos, a in enumerate(r.actual):
        p = probs[pos, ids[pos + 1]].item()
        assert a["prob"] == pytest.approx(p, abs=1e-5)
        assert a["rank"] == 1 + int((probs[pos] > p).sum())
    assert r.surprise()[0] is None
    assert r.surprise()[1] == pytest.approx(-math.log2(r.actual[0]["prob"]))
    # "ROMEO:" then a newline: a trained model is sure of ':' after ROMEO and of the newline
    assert r.actual[4]["rank"] == 1 and r.actual[5]["rank"] == 1
    # the logit lens at the last layer is the model's top token and probability
    assert len(r.logit_lens) == L and all(len(row) == T for row in r.logit_lens)
    for pos in range(T):
        top = r.logit_lens[-1][pos]
        assert top["id"] == r.next[pos][0]["id"]
        assert top["prob"] == pytest.approx(r.next[pos][0]["prob"], abs=1e-6)


def test_json_is_the_issues_shape(trained):
    r = trained.inspect("O Romeo", top_k=3)
    d = r.to_json()
    assert list(d) == ["tokens", "next", "actual", "attention", "logit_lens"]
    T = len(d["tokens"])
    assert all(set(t) == {"id", "text"} for t in d["tokens"])
    assert all(len(row) == 3 and all(set(e) == {"id", "text", "prob"} for e in row)
               for row in d["next"])
    assert len(d["actual"]) == T - 1 and all(set(a) == {"prob", "rank"} for a in d["actual"])
    att = np.array(d["attention"])
    assert att.shape == (trained.n_layer, trained.n_head, T, T)
    assert np.allclose(att.sum(-1), 1.0, atol=1e-5)
    assert len(d["logit_lens"]) == trained.n_layer
    assert all(len(row) == T and all(set(e) == {"id", "text", "prob"} for e in row)
               for row in d["logit_lens"])


def test_weights_of_a_head_and_the_mean(trained):
    r = trained.inspect("To be, or not to be")
    assert np.array_equal(r.weights(1, 2), r.attention[1, 2])
    assert np.allclose(r.weights(1), r.attention[1].mean(0))
    assert np.allclose(r.weights(1).sum(-1), 1.0, atol=1e-5)


def test_bad_prompts(trained):
    with pytest.raises(UserError, match="empty"):
        trained.inspect("")
    with pytest.raises(UserError, match="top-k"):
        trained.inspect("x", top_k=0)
    long = shakespeare(300)
    r = trained.inspect(long)
    C = trained.context_length
    assert len(r.tokens) == C and r.cut == 300 - C
    assert "".join(t["text"] for t in r.tokens) == long[-C:]   # a decoder keeps the end
    assert any("longer than" in n and f"{300 - C} cut" in n for n in r.notes)
    one = trained.inspect("A")
    assert len(one.tokens) == 1 and one.actual == [] and len(one.next) == 1


def test_unknown_characters_are_said(tmp_path):
    tok = CharTokenizer.train("abc ")
    torch.manual_seed(0)
    d = save_model(GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=16, n_layer=1,
                                   n_head=1, n_embd=8)), tok, tmp_path / "abc")
    r = open_inspector(d).inspect("abz")
    assert any("does not know" in n for n in r.notes)


def test_a_classifier_gives_attention_and_labels_only(tiny_classifier_dir):
    r = open_inspector(tiny_classifier_dir).inspect("win a prize")
    assert r.kind == "classifier"
    assert r.next == [] and r.actual == [] and r.logit_lens == []
    assert set(r.labels) == {"ham", "spam"} and sum(r.labels.values()) == pytest.approx(1.0)
    assert r.attention.shape == (2, 2, 11, 11)
    assert any("classifier" in n and "attention" in n for n in r.notes)
    assert r.to_json()["labels"] == r.labels


def test_conversation_text_of_a_plain_language_model(trained):
    messages = [{"role": "user", "content": "ROMEO:"}, {"role": "assistant", "content": "Ay me!"}]
    assert trained.conversation_text(messages) == "ROMEO:\nAy me!"


def test_bits():
    assert bits(0.5) == 1.0 and bits(1.0) == 0.0 and bits(0.0) == math.inf


# ---- the encoder ---------------------------------------------------------------------------------
def test_encoder_trace_equals_its_forward():
    from tinyllm.models import encoder

    from tinyllm.config import EncoderConfig

    torch.manual_seed(0)
    model = encoder.Encoder(EncoderConfig(vocab_size=97, context_length=32, n_layer=2, n_head=4,
                                          n_embd=32)).eval()
    idx = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([20, 13])
    t = trace(model, idx, lengths=lengths)
    assert not t.causal
    assert torch.allclose(t.attention.sum(-1), torch.ones(()), atol=1e-5)
    assert t.attention[1, ..., 13:].abs().max().item() == 0.0        # padding gets no weight
    with torch.no_grad():
        expected = model(idx, lengths)
    assert (t.logits[0] - expected[0]).abs().max().item() < 1e-5
    assert (t.logits[1, :13] - expected[1, :13]).abs().max().item() < 1e-5
    probs, ids = lens_top(model, t.residuals)
    assert torch.equal(ids[0, -1], expected[0].argmax(-1))


def test_encoder_fill_mask_predicts_each_mask(tmp_path):
    from tinyllm.models import encoder

    from tinyllm.config import EncoderConfig
    from tinyllm.tokenizer import WordPieceTokenizer

    tok = WordPieceTokenizer.train([shakespeare(20000)], vocab_size=400)
    torch.manual_seed(0)
    model = encoder.Encoder(EncoderConfig(vocab_size=tok.vocab_size, context_length=32, n_layer=2,
                                          n_head=2, n_embd=32))
    d = save_model(model, tok, tmp_path / "bert-tiny")
    inspector = open_inspector(d)
    assert inspector.kind == "encoder" and not inspector.causal
    r = inspector.inspect("to be or [MASK] to [MASK]", top_k=4)
    ids = tok.encode("to be or [MASK] to [MASK]")
    masks = [i for i, t in enumerate(ids) if t == tok.mask_id]
    assert len(masks) == 2
    assert [m["position"] for m in r.fill_mask] == masks
    with torch.no_grad():
        probs = torch.softmax(inspector.model(torch.tensor([ids])), dim=-1)[0]
    for m in r.fill_mask:
        p, i = probs[m["position"]].topk(4)
        assert [e["id"] for e in m["predictions"]] == i.tolist()
        assert np.allclose([e["prob"] for e in m["predictions"]], p.tolist(), atol=1e-5)
    assert np.allclose(r.attention.sum(-1), 1.0, atol=1e-5)
    assert r.next == [] and r.actual == []
    assert len(r.logit_lens) == 2 and r.logit_lens[-1][masks[0]]["id"] == r.fill_mask[0][
        "predictions"][0]["id"]
    assert list(r.to_json()) == ["tokens", "next", "actual", "attention", "logit_lens", "fill_mask"]
    none = inspector.inspect("to be or not")
    assert none.fill_mask == [] and any("[MASK]" in n for n in none.notes)


def test_lens_in_chunks_and_with_the_models_logits(model, monkeypatch):
    """The batched lens gives the same answer whatever the chunk size, and reusing the model's
    logits for the last layer changes nothing."""
    from tinyllm.models import inspect as inspect_mod

    t = trace(model, torch.randint(0, 97, (2, 21), generator=torch.Generator().manual_seed(4)))
    whole = lens_top(model, t.residuals)
    monkeypatch.setattr(inspect_mod, "LENS_CHUNK", 97 * 5)     # 5 rows at a time
    chunked = lens_top(model, t.residuals)
    reused = lens_top(model, t.residuals, t.logits)
    for other in (chunked, reused):
        assert torch.equal(whole[1], other[1])
        assert torch.allclose(whole[0], other[0], atol=1e-6)
