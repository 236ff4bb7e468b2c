"""Text corpora: checked chunked reading, token files (memmap, dtype, cache, resume), windows, samplers."""
from __future__ import annotations

import numpy as np
import pytest

from tinyllm.data import text as textmod
from tinyllm.data.batching import EpochSampler, RandomSampler, StepBatches
from tinyllm.data.text import (DataError, SlidingWindowDataset, TokenSpan, iter_text_chunks,
                               prepare_tokens, split_tokens, token_dtype)
from tinyllm.tokenizer import CharTokenizer, get_gpt2

from conftest import SHARED_DATA

VERDICT = (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")


def test_chunks_concatenate_to_the_file_and_cut_after_newlines(tmp_path):
    text = "héllo wörld\n  indented\nnext 🙂 line\n\n\nend\n" * 50
    p = tmp_path / "c.txt"
    p.write_text(text, encoding="utf-8")
    pieces = list(iter_text_chunks(p, chunk_bytes=40))
    assert len(pieces) > 5
    assert "".join(t for _, t in pieces) == text
    assert pieces[-1][0] == p.stat().st_size
    for _, t in pieces[:-1]:  # every cut is after a lone newline
        assert t.endswith("\n") and not t[-2].isspace()


def test_chunked_gpt2_tokens_equal_whole_text_tokens(tmp_path, monkeypatch):
    p = tmp_path / "verdict.txt"
    p.write_text(VERDICT, encoding="utf-8")
    monkeypatch.setattr(textmod, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(textmod.iter_text_chunks, "__defaults__", (0, 1000))
    tok = get_gpt2()
    tf = prepare_tokens(p, tok, tmp_path / "cache")
    assert tf.dtype == np.uint16
    assert tf.read(0, tf.n).tolist() == tok.encode(VERDICT)


def test_invalid_utf8_names_line_and_byte_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"line one\nline two\nbad \xff byte\nmore\n")
    with pytest.raises(DataError) as e:
        list(iter_text_chunks(p))
    msg = str(e.value)
    assert "bad.txt:3: not UTF-8" in msg and "byte offset 22" in msg and "0xff" in msg
    with pytest.raises(DataError, match="bad.txt:3:"):
        prepare_tokens(p, get_gpt2(), tmp_path / "cache")


@pytest.mark.parametrize("content", [b"", b"  \n\n\t \n"])
def test_empty_corpus_is_an_error(tmp_path, content):
    p = tmp_path / "empty.txt"
    p.write_bytes(content)
    with pytest.raises(DataError, match=r"empty\.txt: the corpus is empty"):
        prepare_tokens(p, get_gpt2(), tmp_path / "cache")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="nope.txt: no such file"):
        prepare_tokens(tmp_path / "nope.txt", get_gpt2(), tmp_path / "cache")


def test_token_file_roundtrip_memmap_and_cache_reuse(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text(VERDICT, encoding="utf-8")
    tok = CharTokenizer.train(VERDICT)
    tf = prepare_tokens(p, tok, tmp_path / "cache")
    assert tf.n == len(VERDICT) and tf.dtype == np.uint16
    assert tf.path.stat().st_size == 2 * tf.n  # raw uint16, nothing else
    assert tok.decode(tf.read(0, tf.n).tolist()) == VERDICT
    assert np.array_equal(np.asarray(tf.array()[100:200]), tf.read(100, 100))
    mtime = tf.path.stat().st_mtime_ns
    again = prepare_tokens(p, tok, tmp_path / "cache")
    assert again.path == tf.path and again.path.stat().st_mtime_ns == mtime  # reused
    other = CharTokenizer(sorted(set(VERDICT)) + ["§"])  # another tokenizer: another file
    assert prepare_tokens(p, other, tmp_path / "cache").path != tf.path


def test_large_vocab_uses_uint32():
    assert token_dtype(65535) == np.uint16
    assert token_dtype(65536) == np.uint32
    assert token_dtype(100_000) == np.uint32


def test_interrupted_tokenisation_resumes(tmp_path, monkeypatch):
    text = "".join(f"line {i} of the corpus\n" for i in range(3000))
    p = tmp_path / "big.txt"
    p.write_text(text, encoding="utf-8")
    tok = CharTokenizer.train(text)
    monkeypatch.setattr(textmod, "FLUSH_BYTES", 1)
    monkeypatch.setattr(textmod.iter_text_chunks, "__defaults__", (0, 4096))
    real = textmod.encode_array
    calls = {"n": 0}

    def failing(t, s):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(t, s)

    monkeypatch.setattr(textmod, "encode_array", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_tokens(p, tok, tmp_path / "cache")
    partial = list((tmp_path / "cache").glob("*.partial"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    seen = []
    monkeypatch.setattr(textmod, "encode_array", lambda t, s: (seen.append(s), real(t, s))[1])
    tf = prepare_tokens(p, tok, tmp_path / "cache")
    assert not seen[0].startswith("line 0 ")  # continued where it stopped
    assert tok.decode(tf.read(0, tf.n).tolist()) == text


def test_split_by_position_and_sliding_windows(tmp_path):
    p = tmp_path / "d.txt"
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    p.write_text(text, encoding="utf-8")
    tok = CharTokenizer.train(text)
    tf = prepare_tokens(p, tok, tmp_path / "cache")
    train, val = split_tokens(tf, 0.1)
    assert (train.n, val.n) == (900, 100)
    assert np.array_equal(val.read(0, 100), tf.read(900, 100))  # the validation split is the end
    ds = SlidingWindowDataset(train, max_length=16, stride=8)
    assert len(ds) == (900 - 17) // 8 + 1
    x, y = ds[3]
    assert np.array_equal(x, tf.read(24, 16)) and np.array_equal(y, tf.read(25, 16))
    bx, by = ds.batch([0, 3])
    assert tuple(bx.shape) == (2, 16) and bx.dtype.is_floating_point is False
    assert bx[1].tolist() == x.tolist() and by[1].tolist() == y.tolist()
    assert len(SlidingWindowDataset(train, 16, 1)) == 900 - 16
    ev = ds.eval_indices(5)
    assert ev[0] == 0 and ev[-1] == len(ds) - 1


def test_corpus_shorter_than_one_window():
    span = TokenSpan(path=None, dtype=np.dtype(np.uint16), offset=0, n=10)
    with pytest.raises(DataError, match=r"tiny\.txt: 10 tokens, fewer than one window needs \(16 \+ 1\)"):
        SlidingWindowDataset(span, 16, name="tiny.txt")


def test_samplers_are_pure_functions_of_the_position():
    r = RandomSampler(1000, seed=3)
    a = r.indices(0, 64)
    assert np.array_equal(a, RandomSampler(1000, seed=3).indices(0, 64))
    assert np.array_equal(a[10:20], r.indices(10, 10))
    assert not np.array_equal(a, RandomSampler(1000, seed=4).indices(0, 64))
    assert a.min() >= 0 and a.max() < 1000
    e = EpochSampler(10, seed=1)
    two = e.indices(0, 20)
    assert sorted(two[:10]) == list(range(10)) and sorted(two[10:]) == list(range(10))
    assert not np.array_equal(two[:10], two[10:])  # reshuffled each epoch
    assert np.array_equal(e.indices(7, 6), two[7:13])


def test_step_batches_split_the_global_batch_across_ranks_and_micro_batches():
    s = RandomSampler(10_000, seed=0)
    single = StepBatches(s, lambda i: i, batch_size=8, grad_accum=1)
    for step in range(3):
        ranks = [StepBatches(s, lambda i: i, batch_size=4, grad_accum=1, rank=r, world_size=2)
                 for r in range(2)]
        assert np.array_equal(np.concatenate([b(step, 0) for b in ranks]), single(step, 0))
        accum = StepBatches(s, lambda i: i, batch_size=4, grad_accum=2)
        assert np.array_equal(np.concatenate([accum(step, 0), accum(step, 1)]), single(step, 0))
    assert single.epoch(10) == pytest.approx(80 / 10_000)


def test_random_windows_count_epochs_in_passes_over_the_tokens():
    # 10,000 start positions, windows of 64 tokens: 80 windows cover 80 * 64 tokens
    windows = StepBatches(RandomSampler(10_000, seed=0, span=64), lambda i: i, batch_size=8)
    assert windows.epoch(10) == pytest.approx(80 * 64 / 10_000)
