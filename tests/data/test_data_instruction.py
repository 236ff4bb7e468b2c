"""Instruction data: reading Alpaca JSON/JSONL, error messages, the split, padding and masking."""
from __future__ import annotations

import json

import pytest
import torch

from tinyllm.data.instruction import (Entry, Example, batches,
                                      collate, encode_entries, encode_entry, pad_id_for,
                                      read_instructions, split_entries, trainable)
from tinyllm.errors import DataError, UserError
from tinyllm.data.templates import format_prompt, load_template
from tinyllm.tokenizer import CharTokenizer, get_gpt2

from conftest import SHARED_DATA

EOT = 50256


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---- reading ---------------------------------------------------------------------------------
def test_reads_the_bundled_book_data():
    entries = read_instructions(SHARED_DATA / "instruction-data.json")
    assert len(entries) == 1100
    assert sum(1 for e in entries if e.input) == 325
    assert entries[2].to_dict() == {"instruction": "Convert 45 kilometers to meters.", "input": "",
                                    "output": "45 kilometers is 45000 meters."}


def test_reads_jsonl_with_missing_or_null_input(tmp_path):
    p = write(tmp_path, "d.jsonl", '{"instruction": "a", "output": "b"}\n\n'
                                   '{"instruction": "c", "input": null, "output": "d"}\n')
    entries = read_instructions(p)
    assert [(e.instruction, e.input, e.output) for e in entries] == [("a", "", "b"), ("c", "", "d")]
    assert entries[1].where == "d.jsonl:3"


@pytest.mark.parametrize("name, text, message", [
    ("data.json", json.dumps([{"instruction": "a", "output": "b"}] * 12 + [{"input": "x", "output": "y"}]),
     "data.json: entry [12]: missing 'instruction'"),
    ("data.json", json.dumps([{"instruction": "a"}]), "data.json: entry [0]: missing 'output'"),
    ("data.json", json.dumps([{"instruction": "a", "output": 3}]),
     "data.json: entry [0]: 'output' must be a string, not int"),
    ("data.json", json.dumps([{"instruction": " ", "output": "b"}]), "data.json: entry [0]: 'instruction' is empty"),
    ("data.json", json.dumps(["just text"]), "data.json: entry [0]: expected an object"),
    ("data.json", "[\n  {\"instruction\": \"a\",\n  \"output\": \"b\"\n", "data.json:4:"),
    ("data.json", "", "data.json: empty file"),
    ("data.json", "[]", "data.json: no entries"),
    ("data.jsonl", '{"instruction": "a", "output": "b"}\n{"output": "b"}\n', "data.jsonl:2: missing 'instruction'"),
    ("data.jsonl", '{"instruction": "a", "output": "b"}\n{oops\n', "data.jsonl:2: invalid JSON"),
])
def test_bad_data_names_file_and_entry_or_line(tmp_path, name, text, message):
    p = write(tmp_path, name, text)
    with pytest.raises(DataError) as e:
        read_instructions(p)
    assert message in str(e.value)
    assert e.value.exit_code == 2


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_instructions(tmp_path / "nope.json")
    p = tmp_path / "bin.jsonl"
    p.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff"}\n')
    with pytest.raises(UserError, match=r"bin.jsonl:2: not UTF-8"):
        read_instructions(p)


def test_output_optional_when_asked(tmp_path):
    p = write(tmp_path, "q.jsonl", '{"instruction": "a"}\n')
    assert read_instructions(p, need_output=False)[0].output == ""


# ---- split -----------------------------------------------------------------------------------
def test_split_is_85_10_5_seeded_and_disjoint():
    entries = [Entry(str(i), "", str(i)) for i in range(1100)]
    train, test, val = split_entries(entries, seed=1)
    assert (len(train), len(test), len(val)) == (935, 110, 55)
    names = [e.instruction for e in train + test + val]
    assert sorted(names) == sorted(e.instruction for e in entries)
    again = split_entries(entries, seed=1)
    assert [e.instruction for e in again[1]] == [e.instruction for e in test]
    other = split_entries(entries, seed=2)
    assert [e.instruction for e in other[1]] != [e.instruction for e in test]


# ---- tokenizing --------------------------------------------------------------------------------
def test_encode_entry_prompt_then_response():
    tok = get_gpt2()
    e = Entry("Convert 45 kilometers to meters.", "", "45 kilometers is 45000 meters.")
    ex = encode_entry(e, tok, load_template("alpaca"))
    prompt = format_prompt("alpaca", e.instruction)
    assert ex.ids[:ex.prompt_len] == tok.encode(prompt)
    assert tok.decode(ex.ids) == prompt + e.output
    assert EOT not in ex.ids  # the end-of-text is added by collate


def test_pad_id_needs_an_end_of_text_token():
    assert pad_id_for(get_gpt2()) == EOT
    with pytest.raises(UserError, match="end-of-text"):
        pad_id_for(CharTokenizer(list("abc")))


# ---- collate: exactly the book's custom_collate_fn -------------------------------------------
def test_collate_pads_with_eot_and_masks_all_but_first_padding():
    exs = [Example([0, 1, 2, 3, 4], 2), Example([5, 6], 1), Example([7, 8, 9], 2)]
    inputs, targets = collate(exs, EOT)
    assert inputs.dtype == targets.dtype == torch.long
    assert inputs.tolist() == [[0, 1, 2, 3, 4],
                               [5, 6, EOT, EOT, EOT],
                               [7, 8, 9, EOT, EOT]]
    assert targets.tolist() == [[1, 2, 3, 4, EOT],
                                [6, EOT, -100, -100, -100],
                                [8, 9, EOT, -100, -100]]


def test_collate_masks_prompt_targets():
    exs = [Example([0, 1, 2, 3, 4], 2), Example([5, 6], 1), Example([7, 8, 9], 3)]
    _, targets = collate(exs, EOT, mask_prompt=True)
    # targets predicting prompt tokens 1..prompt_len-1 are hidden; the response and EOT stay
    assert targets.tolist() == [[-100, 2, 3, 4, EOT],
                                [6, EOT, -100, -100, -100],
                                [-100, -100, EOT, -100, -100]]


def test_collate_eot_inside_text_is_not_masked():
    # the book masks by value; masking by position keeps a real end-of-text inside an example
    inputs, targets = collate([Example([1, EOT, 2], 1), Example([3], 1)], EOT)
    assert targets.tolist() == [[EOT, 2, EOT], [EOT, -100, -100]]


def test_collate_truncates_to_max_length():
    inputs, targets = collate([Example(list(range(10)), 3), Example([1, 2], 1)], EOT, max_length=4)
    assert inputs.shape == targets.shape == (2, 4)
    assert targets[0].tolist() == [1, 2, 3, 4] and targets[1].tolist() == [2, EOT, -100, -100]


def test_trainable_drops_examples_whose_prompt_fills_the_window():
    exs = [Example(list(range(10)), 8), Example(list(range(10)), 3)]
    kept, dropped = trainable(exs, max_length=8, mask_prompt=True)
    assert dropped == 1 and kept == [exs[1]]
    assert trainable(exs, 8, mask_prompt=False) == (exs, 0)


def test_batches_cover_everything_in_order():
    tok = get_gpt2()
    entries = [Entry(f"Say {i}.", "", f"{i}") for i in range(10)]
    exs = encode_entries(entries, tok)
    got = list(batches(exs, 4, EOT))
    assert [len(x) for x, _ in got] == [4, 4, 2]
    # the response token of each row: the input where the target is the first end-of-text
    answers = [tok.decode([int(x[b][y[b] == EOT][0])]) for x, y in got for b in range(len(x))]
    assert answers == [str(i) for i in range(10)]
