"""Tokenizers: gpt2 equals tiktoken's gpt2 (built from the shipped files), char and bpe round trips."""
from __future__ import annotations

import json

import pytest

from tinyllm.tokenizer import (BPETokenizer, CharTokenizer, GPT2_DIR, TokenizerError, from_spec,
                               get_gpt2)

from conftest import SHARED_DATA

# official hashes of OpenAI's GPT-2 vocabulary files (as tiktoken_ext.openai_public checks them)
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"

UNICODE_SAMPLES = [
    "Hello, world!",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnew\r\nlines\n\n\n",
    "naïve café — “quotes” … déjà vu",
    "e\u0301 a\u0308 n\u0303 combining marks, Z\u0351\u0325\u0340algo",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "emoji 😀🎉👩‍👩‍👧‍👦 flags 🇫🇷🇯🇵 skin 👍🏽",
    "math ∑∫√∞ ≠ ≤ ≥ and arrows ← → ↔",
    "RTL: שלום עולם مرحبا بالعالم",
    "zero\u200bwidth\u200djoiner\ufeffBOM",
    "<|endoftext|> in the middle <|endoftext|>",
    "code: def f(x):\n    return x ** 2  # comment",
    "numbers 1234567890 3.14159 1e-10 0x1F",
    "'s 't 're 've 'm 'll 'd I'M YOU'RE",
    "\x00\x01 control \x7f chars",
    "",
]


@pytest.fixture(scope="module")
def reference_gpt2(tmp_path_factory):
    """tiktoken's own gpt2 encoding, built by tiktoken's loader from the files shipped in the package."""
    import os

    import tiktoken
    import tiktoken.load
    import tiktoken_ext.openai_public as public

    os.environ["TIKTOKEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("tiktoken"))
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        str(GPT2_DIR / "vocab.bpe"), str(GPT2_DIR / "encoder.json"),
        vocab_bpe_hash=VOCAB_BPE_SHA256, encoder_json_hash=ENCODER_JSON_SHA256)
    return tiktoken.Encoding("gpt2-reference", pat_str=public.r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


def test_gpt2_known_ids():
    tok = get_gpt2()
    assert tok.encode("Hello, world!") == [15496, 11, 995, 0]
    assert tok.encode("<|endoftext|>") == [50256]
    assert tok.eot_id == 50256
    assert tok.vocab_size == 50257
    assert tok.decode([15496, 11, 995, 0]) == "Hello, world!"
    assert from_spec(None) is tok and from_spec("gpt2") is tok


def test_gpt2_equals_tiktoken(reference_gpt2):
    tok = get_gpt2()
    texts = UNICODE_SAMPLES + [(SHARED_DATA / "tinyshakespeare.txt").read_text("utf-8")[:30000],
                               (SHARED_DATA / "SMSSpamCollection.tsv").read_text("utf-8")[:30000]]
    for text in texts:
        assert tok.encode(text) == reference_gpt2.encode(text, allowed_special="all"), text[:40]
    assert tok.encode_batch(texts[:4]) == [tok.encode(t) for t in texts[:4]]


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_gpt2_round_trip_and_token_bytes(text):
    tok = get_gpt2()
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")


def test_char_round_trip_on_unicode():
    corpus = "".join(UNICODE_SAMPLES)
    tok = CharTokenizer.train(corpus)
    for text in UNICODE_SAMPLES:
        ids = tok.encode(text)
        assert len(ids) == len(text)
        assert tok.decode(ids) == text
        assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")
    assert tok.eot_id is None


def test_char_unknown_characters_map_to_unk():
    tok = CharTokenizer.train("abc def")
    assert tok.decode(tok.encode("abz")) == "ab "
    with pytest.raises(TokenizerError, match="empty"):
        CharTokenizer.train("")


@pytest.fixture(scope="module")
def bpe():
    text = (SHARED_DATA / "tinyshakespeare.txt").read_text("utf-8")[:200_000]
    return BPETokenizer.train([text], vocab_size=512)


def test_bpe_trains_to_the_requested_size(bpe):
    assert isinstance(bpe, BPETokenizer)
    assert bpe.vocab_size == 512
    assert bpe.eot_id is not None
    assert len(bpe.encode("ROMEO: what light through yonder window breaks")) < 30  # merges learnt


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_bpe_round_trips_text_it_never_saw(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert b"".join(bpe.token_bytes(i) for i in ids) == text.encode("utf-8")


def test_save_and_load_trained_tokenizers(tmp_path, bpe):
    char = CharTokenizer.train("hello wörld 😀")
    for tok in (char, bpe):
        d = tmp_path / tok.name
        d.mkdir()
        tok.save(d)
        spec = tok.spec()
        assert (d / spec["file"]).is_file()
        again = from_spec(spec, d)
        assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
        for text in ("hello wörld 😀", "😀 hello"):
            assert again.encode(text) == tok.encode(text)
        json.loads((d / spec["file"]).read_text("utf-8"))  # plain JSON on disk


def test_tokenizer_errors_name_the_file(tmp_path):
    with pytest.raises(TokenizerError, match="unknown tokenizer type"):
        from_spec({"type": "sentencepiece"})
    with pytest.raises(TokenizerError, match="give --model"):
        from_spec({"type": "char"})
    with pytest.raises(TokenizerError, match="tokenizer.json: tokenizer file missing"):
        from_spec({"type": "char"}, tmp_path)
    (tmp_path / "tokenizer.json").write_text('{\n  "chars": [\n', "utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer.json:3: invalid JSON"):
        from_spec({"type": "char"}, tmp_path)
    (tmp_path / "bad.json").write_text("not json", "utf-8")
    with pytest.raises(TokenizerError, match="bad.json: not a BPE tokenizer file"):
        from_spec({"type": "bpe", "file": "bad.json"}, tmp_path)
    (tmp_path / "bpe.json").write_text(BPETokenizer.train(["some text"] * 10, 300)._tok.to_str(), "utf-8")
    with pytest.raises(TokenizerError, match="bpe.json: a BPE tokenizer, not WordPiece"):
        from_spec({"type": "wordpiece", "file": "bpe.json"}, tmp_path)


def test_tokenizer_module_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, tinyllm.tokenizer as t; t.get_gpt2().encode('hi'); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
