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



# ---- headers and columns told by content --------------------------------------------------------
def sms_rows(n=300):
    lines = (SHARED_DATA / "SMSSpamCollection.tsv").read_text(encoding="utf-8").splitlines()[:n]
    return [line.split("\t", 1) for line in lines]


def write_csv(tmp_path, name, header, rows):
    import csv

    p = tmp_path / name
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return p


@pytest.mark.parametrize("order", ["label,text", "text,label"])
def test_a_header_with_other_names_is_a_header_and_the_columns_are_found(tmp_path, order):
    rows = sms_rows()
    if order == "text,label":
        p = write_csv(tmp_path, "d.csv", ["message", "category"], [[t, l] for l, t in rows])
    else:
        p = write_csv(tmp_path, "d.csv", ["category", "message"], rows)
    said = []
    ex = cd.read_examples(p, log=said.append)
    assert len(ex) == 300 and cd.discover_labels(ex) == ["ham", "spam"]   # no "category" label
    assert ex[0].line == 2 and ex[0].text.startswith("Go until jurong")
    assert "'message'" in said[0] and "'category'" in said[0]             # what was chosen, said


def test_headerless_text_label_order_is_told_by_content(tmp_path):
    p = write_csv(tmp_path, "d.csv", None, [[t, l] for l, t in sms_rows()])
    ex = cd.read_examples(p)
    assert len(ex) == 300 and cd.discover_labels(ex) == ["ham", "spam"] and ex[0].line == 1


def test_a_named_column_that_is_not_in_the_header(tmp_path):
    p = write_csv(tmp_path, "d.csv", ["message", "category"], [[t, l] for l, t in sms_rows()])
    with pytest.raises(DataError) as e:
        cd.read_examples(p, text_col="body")
    assert "missing column 'body' (header columns: message, category)" in str(e.value)
    assert "no header" not in str(e.value)
    ex = cd.read_examples(p, text_col="message")       # the other column is the label
    assert cd.discover_labels(ex) == ["ham", "spam"]
    ex = cd.read_examples(p, text_col=1, label_col=2)  # numbers skip the header too
    assert len(ex) == 300 and ex[0].line == 2


def test_columns_that_cannot_be_told_apart_are_refused_naming_the_header(tmp_path):
    # two columns of many values each (repeats: a header, but which is the label?)
    p = write_csv(tmp_path, "e.csv", ["title", "summary"],
                  [["ham", f"text {i}"] if i % 2 else ["spam", f"words {i}"] for i in range(30)]
                  + [[f"t{i}", "x"] for i in range(30)])
    with pytest.raises(DataError) as e:
        cd.read_examples(p)
    assert "e.csv:1: the header row (title, summary)" in str(e.value)
    assert "--text-col and --label-col" in str(e.value) and e.value.exit_code == 2


def test_a_label_column_of_nearly_one_value_per_row_is_refused(tmp_path):
    from tinyllm.tasks.classify import ClassifyTask

    p = write_csv(tmp_path, "d.csv", ["message", "category"], [[t, l] for l, t in sms_rows()])
    ex = cd.read_examples(p, text_col="category", label_col="message")   # swapped by mistake
    with pytest.raises(DataError, match=r"d.csv: 2\d\d distinct labels in 300 rows: is --label-col "
                                        r"the text\?"):
        ClassifyTask().label_set(ex, p)
    assert len(ClassifyTask().label_set(ex, p, allow_many_labels=True)) > 250


def test_cli_finetune_classify_refuses_many_labels_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from tinyllm.cli import main

    p = write_csv(tmp_path, "d.csv", ["message", "category"], [[t, l] for l, t in sms_rows()])
    r = CliRunner().invoke(main, ["finetune", "classify", "--data", str(p), "--out",
                                  str(tmp_path / "m"), "--text-col", "category", "--label-col",
                                  "message"])
    assert r.exit_code == 2 and "distinct labels in 300 rows" in r.output, r.output
    assert "--allow-many-labels" in r.output and not (tmp_path / "m" / "metrics.jsonl").exists()


def test_tui_data_screen_reads_headers_as_the_cli_does(tmp_path):
    from tinyllm_tui.datafile import load_dataset

    p = write_csv(tmp_path, "d.csv", ["message", "category"], [[t, l] for l, t in sms_rows()])
    ds = load_dataset(p)
    assert ds.kind == "classification" and set(ds.label_counts()) == {"ham", "spam"}
    assert any("told by content" in n for n in ds.notes)
