"""`tinyllm inspect`: the report, its JSON, the PNG, and bad input (exit 2)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.cli import inspect_view as view
from tinyllm.engines.inspect import open_inspector

from conftest import shakespeare


def run(*args, input=None):
    return CliRunner().invoke(main, ["inspect", *args], input=input, catch_exceptions=False)


def test_json_matches_the_inspector(tiny_lm_dir):
    r = run("--model", str(tiny_lm_dir), "--json", "--top-k", "4", "ROMEO")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert list(d) == ["tokens", "next", "actual", "attention", "logit_lens"]
    want = open_inspector(tiny_lm_dir).inspect("ROMEO", top_k=4)
    assert d["tokens"] == want.tokens
    assert [t["text"] for t in d["tokens"]] == list("ROMEO")
    assert d["next"] == want.next and d["actual"] == want.actual
    assert d["logit_lens"] == want.logit_lens
    att = np.array(d["attention"])
    assert att.shape == (2, 2, 5, 5)                        # [layer][head][query][key]
    assert np.allclose(att, want.attention, atol=1e-7)
    assert all(len(row) == 4 for row in d["next"]) and len(d["actual"]) == 4


def test_the_report_for_people(tiny_lm_dir):
    r = run("--model", str(tiny_lm_dir), "--layer", "0", "--head", "1", "To be, or not")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "tiny-lm (decoder, gpt2, 2 layers x 2 heads, context 64): 13 tokens" in out
    assert "next-token odds" in out and "top 5" in out
    assert "attention, layer 0 of 0-1, head 1" in out
    assert "logit lens" in out and "layer 1" in out
    lines = out.splitlines()
    lines = lines[lines.index("attention, layer 0 of 0-1, head 1"):]
    # the heatmap: a row per query, labelled with its position and token, masked above the
    # diagonal (output to a pipe has no colour: shades instead)
    first = next(line for line in lines if line.startswith(" 0 T "))
    assert first[5] == first[6] and first[5] in view.SHADES and first[7:].strip() == ""
    last = next(line for line in lines if line.startswith("12 "))
    assert len(last[5:].rstrip()) == 13 * 2                 # every key seen, 2 columns a cell
    default = run("--model", str(tiny_lm_dir), "To be")
    assert "attention, layer 1 of 0-1, mean of 2 heads" in default.stdout


def test_long_prompts_are_cut_with_a_note(tiny_lm_dir):
    text = shakespeare(100)
    r = run("--model", str(tiny_lm_dir), "--json", text)
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert "".join(t["text"] for t in d["tokens"]) == text[-64:]
    assert "warning: the prompt is 100 tokens, longer than tiny-lm's 64-token context; only its " \
           "last 64 are inspected (36 cut)" in r.stderr
    # a narrow terminal draws the last keys that fit, and says so
    r = CliRunner(env={"COLUMNS": "40"}).invoke(main, ["inspect", "-m", str(tiny_lm_dir), text])
    assert r.exit_code == 0
    assert "showing tokens 29-63 of 64" in r.stdout
    assert all(len(line) <= 40 for line in r.stdout.splitlines())


@pytest.mark.parametrize("args, message", [
    (["--layer", "2"], "--layer 2 is out of range: tiny-lm has 2 layers, numbered 0 to 1"),
    (["--layer", "-1"], "--layer -1 is out of range: tiny-lm has 2 layers, numbered 0 to 1"),
    (["--head", "5"], "--head 5 is out of range: tiny-lm has 2 heads, numbered 0 to 1"),
])
def test_out_of_range_layer_or_head(tiny_lm_dir, args, message):
    r = run("--model", str(tiny_lm_dir), *args, "KING:")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {message}"
    assert r.stdout == ""


def test_empty_prompt_and_other_bad_input(tiny_lm_dir, tmp_path):
    r = run("--model", str(tiny_lm_dir), "")
    assert r.exit_code == 2 and "error: nothing to inspect: the prompt is empty" in r.stderr
    r = run("--model", str(tiny_lm_dir), "-", input="")
    assert r.exit_code == 2 and "prompt is empty" in r.stderr
    r = run("--model", str(tmp_path / "nowhere"), "x")
    assert r.exit_code == 2 and "not found" in r.stderr
    r = run("--model", str(tiny_lm_dir), "--top-k", "0", "x")
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["inspect", "--model", str(tiny_lm_dir)])
    assert r.exit_code == 2 and "PROMPT" in r.output


def test_stdin_prompt(tiny_lm_dir):
    a = run("--model", str(tiny_lm_dir), "--json", "-", input="KING:\n")
    b = run("--model", str(tiny_lm_dir), "--json", "KING:")
    assert a.exit_code == 0 and a.stdout == b.stdout


def test_a_classifier_shows_attention_only(tiny_classifier_dir):
    d = tiny_classifier_dir
    r = run("--model", str(d), "win a prize")
    assert r.exit_code == 0, r.output
    assert "clf (classifier" in r.stdout and "labels: " in r.stdout
    assert "a classifier: attention only" in r.stdout
    assert "attention, layer 1" in r.stdout
    assert "next-token odds:" not in r.stdout and "logit lens:" not in r.stdout
    j = json.loads(run("--model", str(d), "--json", "win").stdout)
    assert j["next"] == [] and j["actual"] == [] and j["logit_lens"] == []
    assert np.array(j["attention"]).shape == (2, 2, 3, 3)
    assert set(j["labels"]) == {"ham", "spam"}


def test_png(tiny_lm_dir, tmp_path):
    out = tmp_path / "att.png"
    r = run("--model", str(tiny_lm_dir), "--png", str(out), "--head", "0", "To be, or not")
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert not list(tmp_path.glob(".*tmp*"))                # written atomically, nothing left


def test_heatmap_windows_and_colour():
    w = np.tril(np.ones((6, 6)))
    w /= w.sum(-1, keepdims=True)
    text, queries, keys = view.heatmap(w, list("abcdef"), width=80)
    assert queries == keys == range(6)
    plain = text.plain.splitlines()
    assert plain[0].strip() == "a b c d e f"                # key labels across the top
    assert plain[1].startswith("0 a ")                      # query rows down the side
    # coloured cells are spaces on a background: one span per cell seen, none above the diagonal
    backgrounds = [s for s in text.spans if str(s.style).startswith("on #")]
    assert sum(s.end - s.start for s in backgrounds) == 21 * 2
    # 8 columns hold 4 keys: those up to the marked query; 3 rows: the ones around it
    text, queries, keys = view.heatmap(w, list("abcdef"), width=8, highlight=4, rows=3)
    assert keys == range(1, 5) and queries == range(3, 6)
    assert "▶" in text.plain


def test_show_token():
    assert view.show_token(" the\n") == "␣the⏎"
    assert view.show_token("") == "∅"
    assert view.show_token("\x00") == "·"
