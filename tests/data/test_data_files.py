"""The one file reader (tinyllm.data.files): UTF-8 with file:line errors, JSON/JSONL records, refusals."""
from __future__ import annotations

import json
import os

import pytest

from tinyllm.data import files
from tinyllm.data.classification import read_examples
from tinyllm.data.instruction import read_instructions
from tinyllm.errors import DataError
from tinyllm_tui.datafile import load_dataset


def test_text_with_a_bom_and_crlf_lines(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\xef\xbb\xbfone\r\n\r\n  \ntwo\r\nthree")
    text = files.read_text(p)
    assert text == "one\r\n\r\n  \ntwo\r\nthree"
    assert list(files.iter_lines(text)) == [(1, "one"), (4, "two"), (5, "three")]


def test_bad_utf8_names_file_line_byte_and_offset(tmp_path):
    p = tmp_path / "latin1.tsv"
    p.write_bytes(b"ham\tok\r\nspam\tcaf\xe9\n")
    with pytest.raises(DataError) as e:
        files.read_text(p)
    assert str(e.value) == (f"{p}:2: not UTF-8 text (byte 0xe9 at byte offset 16: "
                            "invalid continuation byte)")
    assert e.value.exit_code == 2


def test_bad_utf8_after_a_bom_counts_the_bom_bytes(tmp_path):
    p = tmp_path / "b.txt"
    p.write_bytes(b"\xef\xbb\xbfa\n\xff\n")
    with pytest.raises(DataError, match=r"b.txt:2: not UTF-8 text \(byte 0xff at byte offset 5"):
        files.read_text(p)


def test_jsonl_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n{"a": oops}\n', encoding="utf-8")
    records = files.read_jsonl(p)
    assert next(records) == (1, {"a": 1}) and next(records) == (3, {"a": 2})
    with pytest.raises(DataError, match=r"d.jsonl:4: invalid JSON \(Expecting value at column 7\)"):
        next(records)


def test_a_pretty_printed_object_is_refused_with_a_hint(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"instruction": "a", "output": "b"}, indent=2), encoding="utf-8")
    with pytest.raises(DataError, match=r"d.json:1: invalid JSON .*one JSON object per line"):
        list(files.parse_records(p, files.read_text(p))[1])


def test_records_are_told_apart_by_content_not_name(tmp_path):
    array = '[{"a": 1},\n {"a": 2}]'
    assert files.parse_records("x.jsonl", array)[0] == "json"
    assert list(files.parse_records("x.jsonl", array)[1]) == [(1, {"a": 1}), (2, {"a": 2})]
    kind, records = files.parse_records("x.json", '{"a": 1}\n{"a": 2}\n')
    assert kind == "jsonl" and [n for n, _ in records] == [1, 2]
    with pytest.raises(DataError, match=r"x.json:2: invalid JSON"):
        files.parse_records("x.json", '[{"a": 1},\n {"a": }]')


@pytest.mark.parametrize("read", [files.read_text, read_examples, read_instructions, load_dataset],
                         ids=["read_text", "classification", "instruction", "tui"])
def test_every_reader_refuses_a_device_and_a_directory(tmp_path, read):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(DataError, match=r"^/dev/zero: not a regular file"):
        read("/dev/zero")
    with pytest.raises(DataError, match=r": is a directory, not a"):
        read(tmp_path)
    with pytest.raises(DataError, match=r"nope.tsv: no such file"):
        read(tmp_path / "nope.tsv")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        files.read_text(fifo)


def test_files_over_the_size_limit_are_refused(tmp_path):
    p = tmp_path / "big.txt"
    p.write_bytes(b"x" * 3000)
    assert len(files.read_text(p, limit=3000)) == 3000
    with pytest.raises(DataError, match=r"big.txt: 2.9 KiB, larger than the 2.0 KiB a data file may be"):
        files.read_text(p, limit=2048)


def test_the_chunked_corpus_reader_refuses_what_read_text_refuses(tmp_path):
    from tinyllm.data.text import iter_text_chunks

    with pytest.raises(DataError, match=r"^/dev/zero: not a regular file"):
        next(iter_text_chunks("/dev/zero"))
    with pytest.raises(DataError, match="is a directory, not a text file"):
        next(iter_text_chunks(tmp_path))


def test_cli_and_tui_read_an_instruction_file_alike(tmp_path):
    """One answer for a JSON file: an array of entries, or one entry per line."""
    one_line = tmp_path / "one.json"
    one_line.write_text('{"instruction": "Say hi.", "input": "", "output": "hi"}\n', encoding="utf-8")
    assert [e.output for e in read_instructions(one_line)] == ["hi"]
    ds = load_dataset(one_line)
    assert ds.kind == "instruction" and len(ds) == 1
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [{"instruction": "a", "output": "b"}]}, indent=1),
                       encoding="utf-8")
    with pytest.raises(DataError, match="wrapped.json:1: invalid JSON") as cli:
        read_instructions(wrapped)
    with pytest.raises(DataError) as tui:
        load_dataset(wrapped)
    assert str(tui.value) == str(cli.value)
