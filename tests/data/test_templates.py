"""Prompt templates: alpaca text, YAML templates, response extraction, stop strings, no torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tinyllm.config import ConfigError
from tinyllm.data import templates
from tinyllm.data.templates import (TemplateError, extract_response, format_prompt,
                                       load_template, stop_strings)

BOOK_PREAMBLE = ("Below is an instruction that describes a task. Write a response that "
                 "appropriately completes the request.")


def test_alpaca_is_default_and_matches_the_book():
    # the book's format_input() + "\n\n### Response:\n"
    expected = (f"{BOOK_PREAMBLE}\n\n### Instruction:\nEdit the following sentence for grammar."
                "\n\n### Input:\nHe go to the park every day.\n\n### Response:\n")
    assert format_prompt(None, "Edit the following sentence for grammar.",
                         "He go to the park every day.") == expected
    assert format_prompt("alpaca", "Edit the following sentence for grammar.",
                         "He go to the park every day.") == expected


def test_empty_input_leaves_out_the_input_block():
    text = format_prompt("alpaca", "Convert 45 kilometers to meters.", "")
    assert text == (f"{BOOK_PREAMBLE}\n\n### Instruction:\nConvert 45 kilometers to meters."
                    "\n\n### Response:\n")
    assert "### Input" not in format_prompt("alpaca", "x", "   ")


def test_braces_in_user_text_are_kept_verbatim():
    text = format_prompt("alpaca", "Fill {input} and {x}", "a {instruction} b")
    assert "Fill {input} and {x}" in text and "a {instruction} b" in text


def test_builtin_phi3_and_listing():
    assert {"alpaca", "phi3"} <= set(templates.builtin_names())
    assert format_prompt("phi3", "Say hi.", "") == "<|user|>\nSay hi.\n<|assistant|>\n"
    assert format_prompt("phi3", "Say hi.", "to Bob") == "<|user|>\nSay hi.\nto Bob\n<|assistant|>\n"
    assert load_template("phi3").response == "\n<|assistant|>\n"


def test_yaml_file_template_and_round_trip_through_config(tmp_path):
    f = tmp_path / "qa.yaml"
    f.write_text('prompt: "Q: {instruction}"\ninput: " ({input})"\nresponse: "\\nA:"\n'
                 'stop: ["\\nQ:"]\n', encoding="utf-8")
    t = load_template(str(f))
    assert t.name == "qa"
    assert format_prompt(t, "2+2?", "") == "Q: 2+2?\nA:"
    assert format_prompt(t, "add", "2 and 2") == "Q: add (2 and 2)\nA:"
    # what a model directory stores under `template:` loads back to the same template
    again = load_template(t.to_dict())
    assert again == t and stop_strings(again) == ["\nQ:"]


@pytest.mark.parametrize("body, message", [
    ("input: x\n", "missing 'prompt'"),
    ('prompt: "no field"\n', "must contain {instruction}"),
    ('prompt: "{instruction}"\ninput: "no field"\n', "'input' must contain {input}"),
    ('prompt: "{instruction}"\nstop: [1]\n', "'stop' must be a list"),
    ('prompt: "{instruction}"\ncolour: red\n', "unknown key(s) colour"),
    ("prompt: [1, 2]\n", "'prompt' must be a string"),
    ("prompt: '{instruction}\n", "invalid YAML"),
])
def test_bad_template_files_name_the_file(tmp_path, body, message):
    f = tmp_path / "bad.yaml"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as e:  # TemplateError, or read_yaml's ConfigError
        load_template(f)
    assert str(f) in str(e.value) and message in str(e.value)
    assert e.value.exit_code == 2


def test_unknown_name_lists_builtins(tmp_path):
    with pytest.raises(TemplateError, match="alpaca"):
        load_template("vicuna")
    with pytest.raises(TemplateError, match="no such template file"):
        load_template(tmp_path / "missing.yaml")


def test_extract_response():
    prompt = format_prompt("alpaca", "Name a color.")
    generated = prompt + "Blue.\n\n### Instruction:\nName another"
    assert extract_response("alpaca", generated, prompt) == "Blue."
    # without the prompt: everything after the last response marker
    assert extract_response("alpaca", "junk ### Response:\n  Red. \n\n### Input:\nx") == "Red."
    # already only the response
    assert extract_response("alpaca", " Green.\n") == "Green."


def test_stop_strings_cut_the_stream_with_the_real_streamer():
    from tinyllm.runtime.sampling import stream_text
    from tinyllm.tokenizer import CharTokenizer

    tok = CharTokenizer(sorted(set("abc #\nInstruction:")))
    ids = tok.encode("abc\n\n### Instruction: more")
    assert "".join(stream_text(ids, tok.token_bytes, stop_strings("alpaca"))) == "abc"


def test_templates_module_imports_without_torch():
    code = ("import sys, tinyllm.data.templates as t; t.format_prompt(None, 'x'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
