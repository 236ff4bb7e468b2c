"""GPT model: KV cache equals full recompute, classification pooling, parameter counts, shapes."""
from __future__ import annotations

import pytest
import torch

from tinyllm.config import ModelConfig, preset
from tinyllm.models.decoder import GPT


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=97, context_length=48, n_layer=2, n_head=4, n_embd=32)
    cfg.update(kw)
    return GPT(ModelConfig(**cfg)).eval()


@torch.no_grad()
def test_forward_shapes_and_last_only():
    m = tiny()
    idx = torch.randint(0, 97, (3, 11))
    logits = m(idx)
    assert logits.shape == (3, 11, 97)
    last = m(idx, last_only=True)
    assert last.shape == (3, 1, 97)
    torch.testing.assert_close(last[:, 0], logits[:, -1])
    assert m.hidden(idx).shape == (3, 11, 32)


@torch.no_grad()
@pytest.mark.parametrize("batch", [1, 3])
def test_kv_cache_prefill_then_steps_equals_full_recompute(batch):
    m = tiny()
    idx = torch.randint(0, 97, (batch, 30))
    full = m(idx)  # (B, 30, V)
    cache = m.new_cache(batch)
    got = [m(idx[:, :10], cache)]                 # prefill 10 tokens
    for t in range(10, 30):                       # then one token at a time
        got.append(m(idx[:, t:t + 1], cache))
    got = torch.cat(got, dim=1)
    assert cache.pos == 30
    assert (got - full).abs().max().item() < 1e-5


@torch.no_grad()
def test_kv_cache_chunked_prefill_equals_full_recompute():
    m = tiny()
    idx = torch.randint(0, 97, (2, 40))
    full = m(idx)
    cache = m.new_cache(2)
    pieces, start = [], 0
    for size in (7, 1, 12, 5, 1, 14):             # chunks of several tokens after the first
        pieces.append(m(idx[:, start:start + size], cache))
        start += size
    assert start == 40
    assert (torch.cat(pieces, dim=1) - full).abs().max().item() < 1e-5


@torch.no_grad()
def test_kv_cache_reset_reuses_the_buffers():
    m = tiny()
    a, b = torch.randint(0, 97, (1, 9)), torch.randint(0, 97, (1, 13))
    cache = m.new_cache(1)
    m(a, cache)
    cache.reset()
    assert cache.pos == 0
    out = m(b, cache)
    assert (out - m(b)).abs().max().item() < 1e-5


@torch.no_grad()
def test_kv_cache_with_exact_gelu_and_no_bias():
    m = tiny(gelu="exact", bias=False, qkv_bias=False, tie_weights=False)
    idx = torch.randint(0, 97, (1, 20))
    cache = m.new_cache(1)
    steps = torch.cat([m(idx[:, :1], cache)] + [m(idx[:, t:t + 1], cache) for t in range(1, 20)], 1)
    assert (steps - m(idx)).abs().max().item() < 1e-5


def test_context_length_is_enforced():
    m = tiny()
    with pytest.raises(ValueError, match="context length"):
        m(torch.zeros(1, 49, dtype=torch.long))
    cache = m.new_cache(1)
    m(torch.zeros(1, 40, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="context length"):
        m(torch.zeros(1, 9, dtype=torch.long), cache)


@torch.no_grad()
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_classify_right_padding_matches_unpadded(pooling):
    m = tiny(n_classes=3, pooling=pooling)
    seqs = [torch.randint(1, 97, (n,)) for n in (5, 12, 1, 8)]
    T = max(len(s) for s in seqs)
    batch = torch.full((len(seqs), T), 0, dtype=torch.long)  # pad id 0, on the right
    for i, s in enumerate(seqs):
        batch[i, :len(s)] = s
    lengths = torch.tensor([len(s) for s in seqs])
    out = m.classify(batch, lengths)
    assert out.shape == (4, 3)
    for i, s in enumerate(seqs):
        alone = m.classify(s[None])
        assert (out[i] - alone[0]).abs().max().item() < 1e-5


@torch.no_grad()
def test_classify_pooling_definitions():
    m = tiny(n_classes=2, pooling="mean")
    idx = torch.randint(0, 97, (2, 6))
    lengths = torch.tensor([6, 3])
    h = m.hidden(idx)
    want = torch.stack([h[0].mean(0), h[1, :3].mean(0)])
    torch.testing.assert_close(m.classify(idx, lengths), m.cls_head(want))
    m.config.pooling = "last"
    torch.testing.assert_close(m.classify(idx, lengths), m.cls_head(torch.stack([h[0, 5], h[1, 2]])))


def test_classify_without_head_is_an_error():
    with pytest.raises(ValueError, match="no classification head"):
        tiny().classify(torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.parametrize("name", ["gpt2", "gpt2-medium", "distilgpt2", "tiny", "small", "medium"])
def test_param_count_matches_config(name):
    cfg = preset(name)
    with torch.device("meta"):  # shapes only: no memory, no time
        m = GPT(cfg)
    assert m.num_params() == cfg.num_params()
    assert m.num_params(include_embeddings=False) == cfg.num_params(include_embeddings=False)


def test_gpt2_has_124m_parameters():
    assert preset("gpt2").num_params() == 124_439_808
    assert preset("gpt2-medium").num_params() == 354_823_168


@pytest.mark.parametrize("kw", [dict(bias=False), dict(qkv_bias=False), dict(tie_weights=False),
                                dict(n_classes=2), dict(bias=False, tie_weights=False, n_classes=5)])
def test_param_count_variants(kw):
    cfg = ModelConfig(vocab_size=101, context_length=32, n_layer=3, n_head=2, n_embd=16, **kw)
    assert GPT(cfg).num_params() == cfg.num_params()


def test_weight_tying_and_gpt2_init():
    m = tiny(n_layer=4)
    assert m.lm_head.weight is m.tok_emb.weight
    untied = tiny(tie_weights=False)
    assert untied.lm_head.weight is not untied.tok_emb.weight
    big = GPT(ModelConfig(vocab_size=64, context_length=16, n_layer=8, n_head=4, n_embd=256))
    std_fc = big.blocks[0].mlp.fc.weight.std().item()
    std_proj = big.blocks[0].mlp.proj.weight.std().item()
    assert abs(std_fc - 0.02) < 0.002
    assert abs(std_proj - 0.02 / (2 * 8) ** 0.5) < 0.001  # residual projections scaled
    assert big.blocks[0].attn.qkv.bias.abs().sum().item() == 0


def test_loss_ignores_minus_100_and_backprops():
    m = tiny()
    m.train()  # dropout is 0: still deterministic
    idx = torch.randint(0, 97, (2, 8))
    targets = torch.randint(0, 97, (2, 8))
    full = m.loss(idx, targets)
    keep = targets[:, 4:].clone()
    targets[:, :4] = -100
    part = m.loss(idx, targets)
    logits = m(idx)
    want = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 97), keep.reshape(-1))
    torch.testing.assert_close(part, want)
    assert full.item() == pytest.approx(torch.log(torch.tensor(97.0)).item(), rel=0.05)
    part.backward()
    assert m.tok_emb.weight.grad is not None


def test_dropout_only_in_training():
    m = tiny(dropout=0.5)
    idx = torch.randint(0, 97, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(m(idx), m(idx))  # eval mode: deterministic
        m.train()
        assert not torch.allclose(m(idx), m(idx))


def test_flops_per_token_formula():
    cfg = preset("gpt2")
    n = cfg.num_params(include_embeddings=False) + cfg.vocab_size * cfg.n_embd
    assert cfg.flops_per_token() == 6 * n + 12 * 12 * 12 * 64 * 1024
    assert cfg.flops_per_token(seq_len=128) < cfg.flops_per_token()


@torch.no_grad()
def test_decode_layout_changes_only_the_memory_layout(tmp_path):
    m = tiny(n_classes=2)
    fast = tiny(n_classes=2).use_decode_layout()
    assert not fast.blocks[0].mlp.fc.weight.is_contiguous()
    assert fast.lm_head.weight is fast.tok_emb.weight          # still tied
    assert fast.blocks[0].mlp.fc.weight.shape == m.blocks[0].mlp.fc.weight.shape
    idx = torch.randint(0, 97, (2, 20))
    assert (fast(idx) - m(idx)).abs().max().item() < 1e-5
    cache = fast.new_cache(2)
    steps = torch.cat([fast(idx[:, :5], cache)] + [fast(idx[:, t:t + 1], cache) for t in range(5, 20)], 1)
    assert (steps - m(idx)).abs().max().item() < 1e-5
    torch.testing.assert_close(fast.classify(idx), m.classify(idx))
    from tinyllm.checkpoint import load_model, save_model
    from tinyllm.tokenizer import CharTokenizer

    out = save_model(fast, CharTokenizer([chr(65 + i) for i in range(97)]), tmp_path / "m")
    again = load_model(out)
    for k, v in m.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
