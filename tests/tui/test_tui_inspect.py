"""The Inspect screen (F6): loading in a worker, the token strip, bars, heatmap and lens driven by
keys, Chat's "inspect the last reply", classifiers and errors. On the bundled shakespeare-char
(a trained model, fast enough for the real thing)."""
from __future__ import annotations

import asyncio

from tinyllm_tui.app import TinyLLMApp
from tinyllm_tui.screens.inspect import escape, unescape
from tinyllm_tui.widgets.inspect import Heatmap, LensColumn, NextBars, TokenStrip

from tui_fakes import FakeEngine, text_of, wait_for

SIZE = (120, 40)
PROMPT = "ROMEO:\\nBut soft, what light"       # as typed: \n is a newline
TEXT = "ROMEO:\nBut soft, what light"


def inspect_app(**kw) -> TinyLLMApp:
    return TinyLLMApp(screen="inspect", theme="dark", **kw)


async def loaded(pilot):
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.inspector is not None or not screen.busy)
    return screen


async def inspect(pilot, prompt: str = PROMPT):
    screen = await loaded(pilot)
    box = screen.query_one("#inspect-prompt")
    box.focus()
    box.value = prompt
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.inspection is not None and not screen.busy)
    await pilot.pause()
    return screen


def test_prompt_strip_bars_heatmap_and_lens_follow_the_keys():
    async def scenario():
        app = inspect_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await inspect(pilot)
            r = screen.inspection
            assert "".join(t["text"] for t in r.tokens) == TEXT
            T = len(r.tokens)
            # the last token is selected, the strip has the focus; the layer is the last one
            assert screen.selected == T - 1 and app.focused is screen.query_one(TokenStrip)
            assert (screen.shown_layer, screen.shown_head) == (r.n_layer - 1, None)
            heatmap = screen.query_one(Heatmap)
            assert heatmap.selected == T - 1 and heatmap.shown_layer == r.n_layer - 1
            assert "mean of heads" in text_of(screen.query_one("#heatmap-title"))
            # ← moves the selection: the bars are that position's top next tokens, the one that
            # follows marked ✓; the lens column is that position's
            await pilot.press("left", "left")
            pos = T - 3
            assert screen.selected == pos and heatmap.selected == pos
            bars = text_of(screen.query_one(NextBars)).splitlines()
            assert len(bars) == len(r.next[pos]) == 8
            for line, e in zip(bars, r.next[pos]):
                assert line.rstrip().endswith(f"{e['prob']:5.3f}")
            follows = r.tokens[pos + 1]["id"]
            marked = [line for line in bars if line.startswith("✓")]
            assert marked == [bars[[e["id"] for e in r.next[pos]].index(follows)]] \
                if follows in [e["id"] for e in r.next[pos]] else marked == []
            lens = text_of(screen.query_one(LensColumn)).splitlines()
            assert len(lens) == r.n_layer
            assert lens[-1].rstrip().endswith(f"{r.logit_lens[-1][pos]['prob']:5.3f}")
            summary = text_of(screen.query_one("#inspect-position"))
            a = r.actual[pos]
            assert summary.startswith(f"#{pos} ") and f"p {a['prob']:.3f}, rank {a['rank']}" in summary
            # the marked query row in the heatmap
            assert f"{pos}▶" in heatmap.render().plain
            await pilot.press("home")
            assert screen.selected == 0
            await pilot.press("end")
            assert screen.selected == T - 1
            # ↑/↓ change the layer (wrapping), [ and ] the head, the mean after the last head
            await pilot.press("up")
            assert screen.shown_layer == r.n_layer - 2 and heatmap.shown_layer == r.n_layer - 2
            await pilot.press("down", "down")
            assert screen.shown_layer == 0
            await pilot.press("right_square_bracket")
            assert screen.shown_head == 0 and heatmap.shown_head == 0
            assert "head 0 (0-3)" in text_of(screen.query_one("#heatmap-title"))
            await pilot.press("left_square_bracket")
            assert screen.shown_head is None
            await pilot.press("left_square_bracket")
            assert screen.shown_head == r.n_head - 1
            await pilot.press("m")
            assert screen.shown_head is None
            # the heatmap draws exactly the chosen weights
            await pilot.press("right_square_bracket", "right_square_bracket")
            assert heatmap.shown_head == 1 and heatmap.inspection is r
            # Ctrl+L goes back to the prompt, where ←/→ edit the text again
            await pilot.press("ctrl+l")
            assert app.focused is screen.query_one("#inspect-prompt")
            await pilot.press("left")
            assert screen.selected == T - 1
    asyncio.run(scenario())


def test_a_new_prompt_and_an_empty_one():
    async def scenario():
        app = inspect_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await inspect(pilot, "To be")
            first = screen.inspection
            screen = await inspect(pilot, "KING HENRY")
            assert screen.inspection is not first and len(screen.inspection.tokens) == 10
            box = screen.query_one("#inspect-prompt")
            box.focus()
            box.value = ""
            await pilot.press("enter")
            await pilot.pause()
            assert any("prompt is empty" in n.message for n in app._notifications)
            assert screen.inspection.tokens[0]["text"] == "K"
    asyncio.run(scenario())


def test_a_prompt_typed_while_the_model_loads_is_inspected_when_it_is_ready():
    async def scenario():
        app = inspect_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            screen.analyse("ROMEO")           # before the worker has finished
            await wait_for(pilot, lambda: screen.inspection is not None)
            assert "".join(t["text"] for t in screen.inspection.tokens) == "ROMEO"
    asyncio.run(scenario())


def test_a_long_prompt_is_cut_and_said():
    async def scenario():
        app = inspect_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await inspect(pilot, "To be, or not to be: that is the question. " * 3)
            assert len(screen.inspection.tokens) == 64
            info = text_of(screen.query_one("#inspect-info"))
            assert "longer than shakespeare-char's 64-token context" in info
            assert "keys" in screen.query_one(Heatmap).render().plain.splitlines()[0] or \
                "queries" in screen.query_one(Heatmap).render().plain.splitlines()[0]
    asyncio.run(scenario())


def test_a_classifier_shows_its_labels_and_attention():
    async def scenario():
        app = inspect_app(model="sms-spam")
        async with app.run_test(size=SIZE) as pilot:
            screen = await inspect(pilot, "WINNER! Claim your free prize now")
            r = screen.inspection
            assert r.kind == "classifier"
            assert text_of(screen.query_one("#next-title")) == "labels"
            bars = text_of(screen.query_one(NextBars))
            assert "spam" in bars and "ham" in bars and "a classifier" in bars
            assert "no logit lens for a classifier" in text_of(screen.query_one(LensColumn))
            assert "▶" in screen.query_one(Heatmap).render().plain
    asyncio.run(scenario())


def test_a_model_that_cannot_load_is_reported():
    async def scenario():
        app = inspect_app(model="no-such-model")
        async with app.run_test(size=SIZE) as pilot:
            screen = await loaded(pilot)
            await wait_for(pilot, lambda: "could not load" in text_of(screen.query_one("#inspect-info")))
            assert screen.inspector is None
            assert any("no-such-model" in n.message for n in app._notifications)
    asyncio.run(scenario())


def test_choosing_another_model_loads_it():
    async def scenario():
        app = inspect_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await inspect(pilot, "free prize")
            screen.query_one("#inspect-model").value = "sms-spam"
            await wait_for(pilot, lambda: screen.inspector is not None and
                           screen.inspector.name == "sms-spam" and
                           screen.inspection.kind == "classifier")
    asyncio.run(scenario())


def test_chat_inspects_its_last_reply():
    engine = FakeEngine(pieces=["\nBut soft", ", what light"], name="shakespeare-char")

    async def scenario():
        app = TinyLLMApp(model="shakespeare-char", theme="dark",
                         engine_factory=lambda model, backend: engine)
        async with app.run_test(size=SIZE) as pilot:
            chat = app.screen
            await pilot.press("ctrl+r")             # nothing to inspect yet
            await pilot.pause()
            assert app.current_mode == "chat"
            assert any("no reply to inspect" in n.message for n in app._notifications)
            await wait_for(pilot, lambda: chat.engine is not None)
            chat.query_one("#prompt").value = "ROMEO:"
            await pilot.press("enter")
            await wait_for(pilot, lambda: not chat.generating and chat.query(".message.assistant"))
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.current_mode == "inspect")
            screen = app.screen
            await wait_for(pilot, lambda: screen.inspection is not None and not screen.busy)
            # a plain language model's transcript: the message, a newline, the reply
            want = "ROMEO:\n\nBut soft, what light"
            assert "".join(t["text"] for t in screen.inspection.tokens) == want
            assert screen.query_one("#inspect-prompt").value == escape(want)
            # back in Chat and again: the open Inspect screen takes the new request
            await pilot.press("f2")
            await wait_for(pilot, lambda: app.current_mode == "chat")
            first = screen.inspection
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.current_mode == "inspect" and
                           screen.inspection is not first and not screen.busy)
    asyncio.run(scenario())


def test_escape_and_unescape():
    for text in ("a\nb", "tab\there", "back\\slash\\n", "", "plain"):
        assert unescape(escape(text)) == text
    assert unescape("ROMEO:\\nBut") == "ROMEO:\nBut"
    assert unescape("a\\x") == "a\\x"
