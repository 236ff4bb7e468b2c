"""The numpy sampling loop and the UTF-8/stop-string streamer shared by the torch and ONNX backends."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tinyllm.runtime.sampling import (Sampler, SamplingConfig, TextStreamer, generate_ids,
                                      stream_text)

LOGITS = np.log(np.array([0.05, 0.40, 0.30, 0.15, 0.10], dtype=np.float32))


def draws(cfg: SamplingConfig, logits=LOGITS, n=2000, context=()) -> Counter:
    s = Sampler(cfg)
    return Counter(s(logits, context) for _ in range(n))


def test_greedy_is_argmax():
    assert Sampler(SamplingConfig(temperature=0))(LOGITS) == 1
    assert set(draws(SamplingConfig(temperature=0), n=20)) == {1}


def test_full_sampling_follows_the_distribution():
    c = draws(SamplingConfig(temperature=1.0, top_k=None, seed=0), n=20000)
    freq = np.array([c[i] for i in range(5)]) / 20000
    assert np.abs(freq - np.exp(LOGITS)).max() < 0.02


def test_top_k_keeps_only_the_k_best():
    c = draws(SamplingConfig(temperature=1.0, top_k=2, seed=0))
    assert set(c) == {1, 2}
    assert c[1] / c[2] == pytest.approx(0.40 / 0.30, rel=0.15)
    assert set(draws(SamplingConfig(temperature=1.0, top_k=1, seed=0), n=50)) == {1}


def test_top_p_keeps_the_smallest_nucleus():
    # sorted probabilities 0.40, 0.30, 0.15, ...: 0.40 + 0.30 = 0.70 covers top_p = 0.65
    assert set(draws(SamplingConfig(temperature=1.0, top_k=None, top_p=0.65, seed=0))) == {1, 2}
    assert set(draws(SamplingConfig(temperature=1.0, top_k=None, top_p=0.3, seed=0))) == {1}
    assert set(draws(SamplingConfig(temperature=1.0, top_k=None, top_p=0.8, seed=0))) == {1, 2, 3}


def test_temperature_sharpens():
    cold = draws(SamplingConfig(temperature=0.2, top_k=None, seed=0))
    hot = draws(SamplingConfig(temperature=3.0, top_k=None, seed=0))
    assert cold[1] > hot[1] and cold[0] < hot[0]


def test_repetition_penalty_discourages_seen_tokens():
    cfg = SamplingConfig(temperature=0, repetition_penalty=2.0)
    logits = np.array([1.0, 3.0, 2.0, -1.0], dtype=np.float32)
    assert Sampler(cfg)(logits, context=[]) == 1
    assert Sampler(cfg)(logits, context=[1, 1]) == 2      # 3/2 = 1.5 < 2
    assert Sampler(cfg)(logits, context=[1, 2]) == 1      # 1.5 still beats 1.0 and 1.0
    strong = SamplingConfig(temperature=0, repetition_penalty=4.0)
    assert Sampler(strong)(logits, context=[1, 2]) == 0   # 0.75 and 0.5 now lose to 1.0
    negative = np.array([-1.0, -0.6, -5.0], dtype=np.float32)
    assert Sampler(cfg)(negative, context=[1]) == 0       # -0.6 * 2 = -1.2 < -1.0
    assert logits[1] == 3.0                                # the caller's array is untouched


def test_seed_reproducibility():
    cfg = SamplingConfig(temperature=1.0, top_k=None, seed=42)
    a = [Sampler(cfg)(LOGITS) for _ in range(1)] + list(draws(cfg, n=200).elements())
    b = [Sampler(cfg)(LOGITS) for _ in range(1)] + list(draws(cfg, n=200).elements())
    assert a == b
    s1, s2, s3 = Sampler(cfg), Sampler(cfg), Sampler(SamplingConfig(temperature=1.0, seed=7))
    seq1 = [s1(LOGITS) for _ in range(50)]
    assert seq1 == [s2(LOGITS) for _ in range(50)]
    assert seq1 != [s3(LOGITS) for _ in range(50)]


@pytest.mark.parametrize("kw", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5),
                                dict(top_k=-1), dict(max_new_tokens=-1),
                                dict(repetition_penalty=0)])
def test_bad_config_is_rejected(kw):
    with pytest.raises(ValueError):
        SamplingConfig(**kw)


class FakeModel:
    """A backend whose next token is (last token + 1) % V, recording prefill calls."""

    def __init__(self, vocab=10):
        self.vocab = vocab
        self.prefills: list[list[int]] = []
        self.steps: list[int] = []
        self.length = 0

    def logits(self, last: int) -> np.ndarray:
        out = np.zeros(self.vocab, dtype=np.float32)
        out[(last + 1) % self.vocab] = 10.0
        return out

    def prefill(self, ids):
        self.prefills.append(list(ids))
        self.length = len(ids)
        self.max_length = max(getattr(self, "max_length", 0), self.length)
        return self.logits(ids[-1])

    def step(self, tok):
        self.steps.append(tok)
        self.length += 1
        self.max_length = max(self.max_length, self.length)
        return self.logits(tok)


def test_generate_ids_loop_and_max_new_tokens():
    fm = FakeModel()
    out = list(generate_ids(fm.prefill, fm.step, [3], SamplingConfig(temperature=0,
                                                                    max_new_tokens=5)))
    assert out == [4, 5, 6, 7, 8]
    assert fm.prefills == [[3]] and fm.steps == [4, 5, 6, 7]  # no step after the last token
    assert list(generate_ids(fm.prefill, fm.step, [3], SamplingConfig(max_new_tokens=0))) == []
    with pytest.raises(ValueError, match="empty"):
        list(generate_ids(fm.prefill, fm.step, [], SamplingConfig()))


def test_generate_ids_stops_at_eos():
    fm = FakeModel()
    cfg = SamplingConfig(temperature=0, max_new_tokens=20)
    assert list(generate_ids(fm.prefill, fm.step, [5], cfg, eos_id=8)) == [6, 7]
    cfg.stop_at_eos = False
    assert list(generate_ids(fm.prefill, fm.step, [5], cfg, eos_id=8))[:4] == [6, 7, 8, 9]


def test_sliding_window_rebuilds_from_the_last_half():
    fm = FakeModel(vocab=100)
    cfg = SamplingConfig(temperature=0, max_new_tokens=12)
    out = list(generate_ids(fm.prefill, fm.step, [0, 1, 2, 3, 4, 5], cfg, context_length=8))
    assert out == list(range(6, 18))
    assert fm.max_length == 8                             # never more than the context
    assert fm.prefills[0] == [0, 1, 2, 3, 4, 5]
    assert fm.prefills[1] == [5, 6, 7, 8]                 # cache full at 8: rebuild from last 4
    assert fm.prefills[2] == [10, 11, 12, 13]
    # a prompt longer than the window starts from its last half
    fm2 = FakeModel(vocab=100)
    list(generate_ids(fm2.prefill, fm2.step, list(range(20)), cfg, context_length=8))
    assert fm2.prefills[0] == [16, 17, 18, 19]


def utf8_pieces(text: str) -> list[bytes]:
    """Split text into one-byte 'tokens', so every multi-byte character spans several tokens."""
    return [bytes([b]) for b in text.encode("utf-8")]


def test_streaming_never_emits_broken_utf8():
    text = "héllo 😀 日本 e\u0301!"
    table = utf8_pieces(text)
    pieces = list(stream_text(range(len(table)), table.__getitem__))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # the emoji's 4 bytes produce nothing until the last one arrives
    streamer = TextStreamer(table.__getitem__)
    start = text.encode("utf-8").index("😀".encode("utf-8"))
    assert [streamer.feed(i) for i in range(start)][-1] == " "
    assert [streamer.feed(start + k) for k in range(4)] == ["", "", "", "😀"]


def test_streaming_invalid_bytes_become_replacement_chars():
    table = [b"ok ", b"\xff", b"\xe6\x97", b" end"]
    assert "".join(stream_text(range(4), table.__getitem__)) == "ok \ufffd\ufffd end"


def test_stop_string_across_token_boundaries():
    table = [b"Hello", b" wor", b"ld", b"\nUs", b"er:", b" more"]
    pieces = list(stream_text(range(6), table.__getitem__, stop=["\nUser:"]))
    assert "".join(pieces) == "Hello world"
    # the held-back "\nUs" never leaks out before we know it is a stop string
    assert not any("\n" in p for p in pieces)


def test_stop_prefix_that_is_not_a_stop_is_released():
    table = [b"a\nU", b"nder", b" sky"]
    assert "".join(stream_text(range(3), table.__getitem__, stop=["\nUser:"])) == "a\nUnder sky"
    table = [b"x\nUs"]  # held back at the end, then flushed
    assert "".join(stream_text(range(1), table.__getitem__, stop=["\nUser:"])) == "x\nUs"


def test_stop_inside_one_token_and_multiple_stops():
    table = [b"one. two", b"###three"]
    assert "".join(stream_text(range(2), table.__getitem__, stop=["###", "two"])) == "one. "


def test_stop_string_with_multibyte_split():
    text = "数据😀停止 after"
    table = utf8_pieces(text)
    assert "".join(stream_text(range(len(table)), table.__getitem__, stop=["停止"])) == "数据😀"


def test_streaming_with_a_real_tokenizer():
    from tinyllm.tokenizer import get_gpt2

    tok = get_gpt2()
    text = "Family: 👩‍👩‍👧‍👦 and 日本語"
    ids = tok.encode(text)
    # several of these ids are partial UTF-8 sequences on their own
    assert any(b"\xef\xbf\xbd" in tok.decode([i]).encode() for i in ids)
    pieces = list(stream_text(ids, tok.token_bytes))
    assert "".join(pieces) == text and all("\ufffd" not in p for p in pieces)
