"""`tinyllm classify` in pipelines: order, empty lines, long lines, bad bytes, streaming, broken pipe."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tinyllm import modeldir
from tinyllm.cli import main
from tinyllm.cli.classify_cmd import read_batches

from conftest import SHARED_DATA


@pytest.fixture(scope="module")
def clf_dir(tmp_path_factory):
    """A randomly initialised 3-class classifier with a char tokenizer (no end-of-text: pad 0)."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import CharTokenizer

    torch.manual_seed(1)
    text = (SHARED_DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")[:5000]
    tok = CharTokenizer.train(text)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=24, n_layer=1, n_head=2,
                            n_embd=16, n_classes=3))
    torch.nn.init.normal_(model.cls_head.weight, std=1.0)  # spread the predictions over the labels
    return save_model(model, tok, tmp_path_factory.mktemp("clf") / "clf", task="classify",
                      extra={"labels": ["a", "b", "c"]})


def expected(clf_dir, texts):
    from tinyllm.engines import open_engine

    eng = open_engine(clf_dir, "torch")
    return [eng.labels[i] for i in eng.classify(texts).argmax(1)], eng


MIXED = ["first line", "", "Second, with\ttab", "x" * 5000, "   ", "last one\r"]


def test_order_empty_long_and_crlf(clf_dir):
    stdin = "\n".join(MIXED).encode() + b"\n"
    r = CliRunner().invoke(main, ["classify", "--model", str(clf_dir), "--batch-size", "2"],
                           input=stdin)
    assert r.exit_code == 0, r.output
    lines = r.stdout.split("\n")[:-1]
    assert len(lines) == len(MIXED)
    texts = [t.rstrip("\r") for t in MIXED]
    labels, _ = expected(clf_dir, [t for t in texts if t.strip()])
    got = [ln.split("\t", 1) for ln in lines]
    assert [g[1] for g in got] == texts                       # same order, text echoed
    assert got[1][0] == "" and got[4][0] == ""                # empty/blank -> empty label
    assert [g[0] for g in got if g[0]] == labels              # as the engine classifies them


def test_jsonl_format_and_probabilities(clf_dir):
    texts = ["hello", "", "world peace", "ünïcödé ✓"]
    r = CliRunner().invoke(main, ["classify", "--model", str(clf_dir), "--format", "jsonl"],
                           input="\n".join(texts) + "\n")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["text"] for x in rows] == texts
    assert rows[1] == {"text": "", "label": None, "probs": None}
    labels, eng = expected(clf_dir, ["hello", "world peace", "ünïcödé ✓"])
    assert [rows[i]["label"] for i in (0, 2, 3)] == labels
    for i in (0, 2, 3):
        p = rows[i]["probs"]
        assert list(p) == ["a", "b", "c"] and abs(sum(p.values()) - 1) < 1e-4
        assert max(p, key=p.get) == rows[i]["label"]


def test_invalid_utf8_is_replaced_and_warned_once(clf_dir):
    stdin = b"ok\n\xff\xfe bad\nalso \xc3 broken\nfine\n"
    p = subprocess.run([sys.executable, "-m", "tinyllm", "classify", "--model", str(clf_dir)],
                       input=stdin, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode("utf-8").splitlines()
    assert len(out) == 4
    assert out[1].split("\t", 1)[1] == "\ufffd\ufffd bad"
    assert out[2].split("\t", 1)[1] == "also \ufffd broken"
    err = p.stderr.decode()
    assert err.count("not valid UTF-8") == 1 and "line 2" in err


def test_streams_each_batch_without_waiting_for_eof(clf_dir):
    p = subprocess.Popen([sys.executable, "-m", "tinyllm", "classify", "--model", str(clf_dir),
                          "--batch-size", "64"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        got = []
        for msg in (b"first message\n", b"second message\n"):
            p.stdin.write(msg)
            p.stdin.flush()
            ready, _, _ = select.select([p.stdout], [], [], 300)  # answered while stdin is open
            assert ready, "no output line before end of input"
            got.append(p.stdout.readline().decode())
        assert got[0].endswith("\tfirst message\n") and got[1].endswith("\tsecond message\n")
    finally:
        p.stdin.close()
        p.wait(timeout=300)
    assert p.returncode == 0


def test_broken_pipe_is_quiet(clf_dir, tmp_path):
    data = tmp_path / "many.txt"
    data.write_text("".join(f"message number {i}\n" for i in range(20000)))
    with open(data, "rb") as f:
        p = subprocess.Popen([sys.executable, "-m", "tinyllm", "classify", "--model", str(clf_dir)],
                             stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = p.stdout.readline()
        p.stdout.close()  # like `| head -n 1`
        _, err = p.communicate(timeout=120)
    assert first.endswith(b"\tmessage number 0\n")
    assert p.returncode == 0
    assert b"Traceback" not in err and b"Exception ignored" not in err and err.strip() == b""


def test_not_a_classifier_exits_2(tiny_lm_dir):
    r = CliRunner().invoke(main, ["classify", "--model", str(tiny_lm_dir)], input="hi\n")
    assert r.exit_code == 2 and "not a classifier" in r.output


def test_read_batches_takes_what_is_ready(tmp_path):
    r, w = os.pipe()
    os.set_blocking(r, False)  # a read with nothing in the pipe raises instead of waiting
    os.write(w, b"a\nb\nc")
    gen = read_batches(r, 2)
    assert next(gen) == [b"a", b"b"]
    os.write(w, b"d\n")                   # in the pipe once write returns
    assert next(gen) == [b"cd"]           # no waiting for a full batch (no read of an empty pipe)
    os.set_blocking(r, True)
    os.close(w)
    assert list(gen) == []
    os.close(r)


def test_classify_module_does_not_import_torch():
    code = ("import sys, tinyllm.cli.classify_cmd, tinyllm.runtime.textbatch, tinyllm.tasks.classify; "
            "print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.stdout.strip() == "False", p.stderr


def test_textbatch_encoding_matches_contract(clf_dir):
    from tinyllm.runtime.textbatch import encode_batch, pad_id_of
    from tinyllm.tokenizer import from_spec

    tok = from_spec({"type": "char", "file": "tokenizer.json"}, clf_dir)
    ids, lengths = encode_batch(tok, ["abc", "", "x" * 100], 24)
    assert ids.dtype == np.int64 and ids.shape == (3, 24)
    assert lengths.tolist() == [3, 1, 24]
    assert (ids[0, 3:] == pad_id_of(tok)).all() and ids[1, 0] == pad_id_of(tok)


def test_length_batches_take_every_index_once_shortest_first():
    from tinyllm.runtime.textbatch import length_batches

    items = ["ccc", "a", "", "bb", "dddd", "a"]
    batches = list(length_batches(items, 4))
    assert batches == [[2, 1, 5, 3], [0, 4]]      # lengths 0 1 1 2 | 3 4, ties in input order
    assert list(length_batches([], 4)) == []


@pytest.mark.skipif(not (modeldir.BUNDLED_MODELS / modeldir.DEFAULT_CLASSIFIER / "config.yaml").is_file(),
                    reason="bundled sms-spam model not built (make models)")
def test_default_model_is_the_bundled_spam_classifier():
    r = CliRunner().invoke(main, ["classify"], input=(
        "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461 now\n"
        "Ok, see you at the station at 6 then\n"))
    assert r.exit_code == 0, r.output
    assert [ln.split("\t")[0] for ln in r.stdout.splitlines()] == ["spam", "ham"]
