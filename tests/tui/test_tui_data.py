"""Data screen: every sample data set opens, token counts and labels, search, a 100k-row file."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tinyllm_tui.app import TinyLLMApp
from tinyllm_tui.datafile import DataFileError, load_dataset
from tinyllm_tui.screens import data as data_screen

from tui_fakes import HANG_SECONDS, text_of, wait_for

DATA = Path(__file__).resolve().parents[2] / "tinyllm" / "bundled" / "data"
SIZE = (130, 40)

# file -> (kind, rows, first cells, label counts)
SAMPLES = {
    "SMSSpamCollection.tsv": ("classification", 5574, ("1", "ham"), {"ham": 4827, "spam": 747}),
    "tinyshakespeare.txt": ("text", 32777, ("1", "First Citizen:"), {}),
    "instruction-data.json": ("instruction", 1100, ("1", "Evaluate the following phrase by "
                                                    "transforming it into the spelling given."), {}),
    "the-verdict.txt": ("text", 83, ("1",), {}),
}


def data_app(path) -> TinyLLMApp:
    return TinyLLMApp(screen="data", data=str(path))


def loaded(app, rows: int) -> bool:
    screen = app.screen
    return screen.ds is not None and len(screen.ds) == rows and screen.counts is not None


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_sample_data_set_opens(name):
    kind, rows, first, labels = SAMPLES[name]

    async def scenario():
        app = data_app(DATA / name)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: loaded(app, rows))
            screen = app.screen
            assert screen.ds.kind == kind
            table = screen.query_one("#data-table")
            assert table.row_count == min(rows, 100)                   # one page at a time
            assert tuple(table.get_row_at(0)[:len(first)]) == first
            assert len(screen.counts) == rows and min(screen.counts) >= 1
            assert dict(screen.ds.label_counts()) == labels
            if labels:
                dist = text_of(screen.query_one("#label-dist"))
                assert "4,827" in dist and "86.6%" in dist
            summary = text_of(screen.query_one("#data-summary"))
            assert f"{rows:,} rows" in summary and "tokens:" in summary
            await wait_for(pilot, lambda: "tokens," in text_of(screen.query_one("#token-preview")))
            assert "]" in text_of(screen.query_one("#data-page"))   # "[ and ] change page" shown
    asyncio.run(scenario())


def test_search_pages_and_tokenizer_switch():
    async def scenario():
        app = data_app(DATA / "SMSSpamCollection.tsv")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: loaded(app, 5574))
            screen = app.screen
            gpt2_total = sum(screen.counts)
            table = screen.query_one("#data-table")
            table.focus()
            await pilot.press("right_square_bracket")
            assert table.get_row_at(0)[0] == "101"
            await pilot.press("left_square_bracket")
            assert table.get_row_at(0)[0] == "1"
            await pilot.press("ctrl+f")
            await pilot.press(*"jurong")
            expected = sum("jurong" in r[2].lower() for r in screen.ds.rows)
            await wait_for(pilot, lambda: len(screen.view) == expected)   # the last keystroke's
            assert all("jurong" in table.get_row_at(i)[2].lower() for i in range(table.row_count))
            screen.query_one("#data-tokenizer").value = "char"
            await wait_for(pilot, lambda: screen.tokenizer is not None and
                           screen.tokenizer.name == "char")
            assert sum(screen.counts) > gpt2_total      # characters outnumber BPE tokens
    asyncio.run(scenario())


def test_hundred_thousand_rows_open_without_freezing(tmp_path, monkeypatch):
    """The file is read, and its tokens counted, in worker threads: while the read is held
    mid-way the screen still answers keys, and the 100k rows arrive a page at a time."""
    path = tmp_path / "big.tsv"
    lines = [f"{'spam' if i % 7 == 0 else 'ham'}\tmessage number {i} says hello there"
             for i in range(100_000)]
    path.write_text("\n".join(lines) + "\n")
    reading, release = threading.Event(), threading.Event()
    threads: dict[str, threading.Thread] = {}
    real_load, real_tokenizer = data_screen.load_dataset, data_screen.make_tokenizer

    def held_load(path, progress=None):
        threads["load"] = threading.current_thread()
        reading.set()
        assert release.wait(HANG_SECONDS), "the test never let the read go on"
        return real_load(path, progress)

    def recorded_tokenizer(choice, ds):
        threads["count"] = threading.current_thread()
        return real_tokenizer(choice, ds)

    monkeypatch.setattr(data_screen, "load_dataset", held_load)
    monkeypatch.setattr(data_screen, "make_tokenizer", recorded_tokenizer)

    async def scenario():
        app = TinyLLMApp(screen="data")
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            screen.query_one("#data-path").value = str(path)
            screen.query_one("#data-path").focus()
            await pilot.press("enter")
            await wait_for(pilot, reading.is_set)
            # the read is under way (held in its worker): the UI thread still answers key presses
            await pilot.press("ctrl+f")
            assert app.focused is screen.query_one("#data-search")
            await pilot.press(*"abc")
            assert screen.query_one("#data-search").value == "abc"
            assert screen.ds is None and "loading" in text_of(screen.query_one("#data-page"))
            release.set()
            await wait_for(pilot, lambda: loaded(app, 100_000))
            ui = threading.current_thread()
            assert threads["load"] is not ui and threads["count"] is not ui
            assert screen.ds.label_counts()["spam"] == 14286
            assert screen.query_one("#data-table").row_count == 100
            assert screen.query_one("#data-search").value == ""   # a new file clears the search
            screen.query_one("#data-search").value = "99999"
            await wait_for(pilot, lambda: len(screen.view) == 1)
            assert screen.query_one("#data-table").get_row_at(0)[0] == "100000"
    asyncio.run(scenario())


def test_bad_data_file_is_an_error_in_the_ui(tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"text": "fine", "label": "a"}\n{"text": oops\n')

    async def scenario():
        app = data_app(bad)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: any("broken.jsonl:2" in n.message
                                              for n in app._notifications))
            assert app.screen.ds is None and app.is_running
    asyncio.run(scenario())


def test_reader_names_file_and_line(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"fine\nna\xefve\n")
    with pytest.raises(DataFileError, match=r"latin1.txt:2: not UTF-8"):
        load_dataset(bad)
    with pytest.raises(DataFileError, match="no such file"):
        load_dataset(tmp_path / "missing.tsv")
    table = tmp_path / "t.csv"
    table.write_text("id,sentence,category\n1,hello there,greet\n2,bye now,leave\n3,hi,greet\n")
    ds = load_dataset(table)
    assert ds.columns == ["line", "label", "text"] or ds.columns[1:] == ["id", "sentence", "category"]
    assert ds.text_of(0) == "hello there"


def test_token_preview_uses_a_models_wordpiece(tiny_bert_dir):
    import shutil

    from tinyllm import modeldir
    from tinyllm.tokenizer import from_spec
    from tinyllm_tui.screens.data import tokenizer_choices
    from tinyllm_tui.widgets.tokens import token_preview

    shutil.copytree(tiny_bert_dir, modeldir.models_home() / "tiny-bert")
    assert any(v.startswith("model:") and v.endswith("tiny-bert") for _, v in tokenizer_choices())
    tok = from_spec({"type": "wordpiece", "file": "tokenizer.json"}, tiny_bert_dir)
    text = token_preview(tok, "the king").plain
    assert "[CLS] the king [SEP]" in text
