"""Classification data: readers (TSV/CSV/JSONL/JSON), file:line errors, balancing, stratified splits."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from tinyllm.data import classification as cd
from tinyllm.tasks.base import DataError

from conftest import SHARED_DATA


def write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_sms_collection_headerless_tsv():
    ex = cd.read_examples(SHARED_DATA / "SMSSpamCollection.tsv")
    assert len(ex) == 5574
    assert cd.label_counts(ex) == {"ham": 4827, "spam": 747}
    assert ex[0].label == "ham" and ex[0].text.startswith("Go until jurong point") and ex[0].line == 1
    assert cd.discover_labels(ex) == ["ham", "spam"]


def test_tsv_with_header_any_column_order_and_tabs(tmp_path):
    p = write(tmp_path, "d.tsv", "id\tText\tLabel\n1\thello there\tpos\n\n2\tbad day\tneg\n")
    ex = cd.read_examples(p)
    assert [(e.text, e.label, e.line) for e in ex] == [("hello there", "pos", 2), ("bad day", "neg", 4)]
    # headerless label<TAB>text keeps tabs that are inside the text
    p2 = write(tmp_path, "h.tsv", "spam\twin\tnow\nham\thi\n")
    assert [e.text for e in cd.read_examples(p2)] == ["win\tnow", "hi"]


def test_csv_quotes_multiline_and_named_columns(tmp_path):
    p = write(tmp_path, "d.csv", 'message,category\n"Hello, world",a\n"two\nlines",b\nplain,a\n')
    ex = cd.read_examples(p, text_col="message", label_col="category")
    assert [(e.text, e.label) for e in ex] == [("Hello, world", "a"), ("two\nlines", "b"), ("plain", "a")]
    assert [e.line for e in ex] == [2, 3, 5]


def test_numeric_columns(tmp_path):
    p = write(tmp_path, "d.csv", "x,hello,pos\ny,bye,neg\n")
    ex = cd.read_examples(p, text_col="2", label_col=3)
    assert [(e.text, e.label) for e in ex] == [("hello", "pos"), ("bye", "neg")]


def test_jsonl_and_json(tmp_path):
    p = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": "x"}\n')
    assert [(e.text, e.label, e.line) for e in cd.read_examples(p)] == [("a", "1", 1), ("b", "x", 3)]
    p2 = write(tmp_path, "d.json", json.dumps([{"t": "a", "y": "p"}, {"t": "b", "y": "q"}]))
    assert [(e.text, e.label) for e in cd.read_examples(p2, "t", "y")] == [("a", "p"), ("b", "q")]


@pytest.mark.parametrize("name,content,kwargs,message", [
    ("e.tsv", "", {}, "e.tsv: empty file"),
    ("e.jsonl", "\n\n", {}, "e.jsonl: empty file"),
    ("m.csv", "text,label\nhello,a\nno-label-here\n", {}, "m.csv:3: missing column"),
    ("h.csv", "body,label\nhello,a\n", {"text_col": "text", "label_col": "label"},
     "h.csv:1: missing column 'text'"),
    ("k.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', {}, "k.jsonl:2: missing column 'label'"),
    ("j.jsonl", '{"text": "a", "label": "x"}\n{bad json\n', {}, "j.jsonl:2: invalid JSON"),
    ("l.tsv", "text\tlabel\nhello\t \n", {}, "l.tsv:2: empty label"),
    ("a.json", json.dumps([{"text": "a", "label": "x"}, {"text": "b"}]), {}, "a.json:[2]: missing column"),
])
def test_bad_data_names_file_and_line(tmp_path, name, content, kwargs, message):
    p = write(tmp_path, name, content)
    with pytest.raises(DataError) as e:
        cd.read_examples(p, **kwargs)
    assert message in str(e.value)
    assert e.value.exit_code == 2


def test_not_utf8_and_missing_file(tmp_path):
    p = write(tmp_path, "b.tsv", b"ham\tok\nspam\tbad \xff byte\n", mode="wb")
    with pytest.raises(DataError, match=r"b.tsv:2: not UTF-8"):
        cd.read_examples(p)
    with pytest.raises(DataError, match="no such file"):
        cd.read_examples(tmp_path / "missing.tsv")


def test_unknown_label_check(tmp_path):
    p = write(tmp_path, "d.tsv", "ham\thi\nspam\twin\neggs\tbacon\n")
    ex = cd.read_examples(p)
    with pytest.raises(DataError, match=r"d.tsv:3: unknown label 'eggs'; the model knows: ham, spam"):
        cd.check_labels(ex, ["ham", "spam"], p)


def _toy(n_a=90, n_b=30):
    return [cd.Example(f"a{i}", "a", i) for i in range(n_a)] + \
           [cd.Example(f"b{i}", "b", n_a + i) for i in range(n_b)]


def test_undersample_is_seeded_and_balanced():
    kept, rest = cd.undersample(_toy(), seed=1)
    assert cd.label_counts(kept) == {"a": 30, "b": 30}
    assert len(rest) == 60 and {e.label for e in rest} == {"a"}
    again, _ = cd.undersample(_toy(), seed=1)
    other, _ = cd.undersample(_toy(), seed=2)
    assert [e.text for e in kept] == [e.text for e in again]
    assert [e.text for e in kept] != [e.text for e in other]


def test_stratified_split_keeps_shares_and_is_deterministic():
    train, val, test = cd.stratified_split(_toy(), (0.7, 0.1, 0.2), seed=3)
    assert Counter(e.label for e in train) == {"a": 63, "b": 21}
    assert Counter(e.label for e in val) == {"a": 9, "b": 3}
    assert Counter(e.label for e in test) == {"a": 18, "b": 6}
    seen = [e.text for e in train + val + test]
    assert len(seen) == len(set(seen)) == 120
    train2, _, test2 = cd.stratified_split(_toy(), (0.7, 0.1, 0.2), seed=3)
    assert [e.text for e in test] == [e.text for e in test2]
    with pytest.raises(DataError, match="sum to 1"):
        cd.stratified_split(_toy(), (0.5, 0.1, 0.1))


def test_sms_balanced_split_sizes():
    ex = cd.read_examples(SHARED_DATA / "SMSSpamCollection.tsv")
    kept, rest = cd.undersample(ex, seed=123)
    train, val, test = cd.stratified_split(kept, (0.7, 0.1, 0.2), seed=123)
    assert cd.label_counts(test) == {"ham": 149, "spam": 149}
    assert (len(train), len(val), len(test)) == (1046, 150, 298)
    assert not {e.line for e in test} & {e.line for e in rest}  # left-out ham is never in test

