"""Chat screen: streaming from a worker, Esc cancels, classifiers, errors, saved conversations."""
from __future__ import annotations

import asyncio
import json

from tinyllm.errors import UserError
from tinyllm_tui.app import TinyLLMApp
from tinyllm_tui.conversations import Conversation, conversations_dir
from tinyllm_tui.widgets.message import MessageView

from tui_fakes import FakeEngine, text_of, wait_for

SIZE = (120, 36)


def chat_app(engine, **kw) -> TinyLLMApp:
    return TinyLLMApp(engine_factory=lambda model, backend: engine, **kw)


async def send(pilot, text: str) -> None:
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.engine is not None)
    prompt = screen.query_one("#prompt")
    prompt.focus()
    prompt.value = text
    await pilot.press("enter")


def replies(app):
    return [v.message for v in app.screen.query(".message") if v.message.role != "user"]


def test_streamed_reply_arrives_piece_by_piece(monkeypatch):
    engine = FakeEngine(gated=True)
    pieces = engine.pieces
    full = "".join(pieces)
    updates: list[int] = []          # length of the reply after each screen update
    original = MessageView.append

    def recording_append(self, text):
        original(self, text)
        updates.append(len(self.message.content))
    monkeypatch.setattr(MessageView, "append", recording_append)

    async def scenario():
        app = chat_app(engine)
        async with app.run_test(size=SIZE) as pilot:
            await send(pilot, "Tell me a story")
            await wait_for(pilot, lambda: replies(app))
            # each piece the worker receives reaches the screen while the reply is still streaming
            for k in range(1, len(pieces)):
                engine.release()
                shown = "".join(pieces[:k])
                await wait_for(pilot, lambda: replies(app)[0].content == shown)
                assert app.screen.generating
            engine.release()
            await wait_for(pilot, lambda: not app.screen.generating)
            assert replies(app)[0].content == full
            assert updates == [len("".join(pieces[:k])) for k in range(1, len(pieces) + 1)]
            assert engine.prompts == ["Tell me a story"]
            cfg = engine.configs[0]
            assert (cfg.temperature, cfg.top_k, cfg.max_new_tokens) == (0.8, 200, 200)
            assert "20 tokens" in text_of(app.screen.query_one("#chat-status"))
            # saved after the reply, with both messages
            files = list(conversations_dir().glob("*.json"))
            assert len(files) == 1
            data = json.loads(files[0].read_text())
            assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
            assert data["messages"][1]["content"] == full
    asyncio.run(scenario())


def test_escape_cancels_generation():
    engine = FakeEngine(pieces=["word "] * 400, gated=True)

    async def scenario():
        app = chat_app(engine)
        async with app.run_test(size=SIZE) as pilot:
            await send(pilot, "go on")
            engine.release(3)
            await wait_for(pilot, lambda: replies(app) and replies(app)[0].content == "word " * 3)
            assert app.screen.generating
            await pilot.press("escape")
            # the worker is waiting for its 4th piece: it sees the cancel when that one arrives
            engine.release()
            await wait_for(pilot, lambda: not app.screen.generating)
            reply = replies(app)[0]
            assert reply.cancelled and reply.content == "word " * 3   # the 4th is dropped
            assert engine.closed.is_set()           # the generator was closed, not left running
            assert "stopped after 3 tokens" in text_of(app.screen.query_one("#chat-status"))
            # the UI still works: a second message goes through
            engine.pieces, engine.gate = ["ok"], None
            await send(pilot, "again")
            await wait_for(pilot, lambda: len(replies(app)) == 2 and not app.screen.generating)
            assert replies(app)[1].content == "ok"
    asyncio.run(scenario())


def test_sampling_panel_values_reach_the_engine_and_bad_values_are_refused():
    engine = FakeEngine(pieces=["x"])

    async def scenario():
        app = chat_app(engine)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            screen.query_one("#sampling-temperature").value = "0"
            screen.query_one("#sampling-top_k").value = ""
            screen.query_one("#sampling-top_p").value = "0.9"
            screen.query_one("#sampling-max_new_tokens").value = "7"
            await send(pilot, "hi")
            await wait_for(pilot, lambda: engine.configs and not screen.generating)
            cfg = engine.configs[0]
            assert (cfg.temperature, cfg.top_k, cfg.top_p, cfg.max_new_tokens) == (0, None, 0.9, 7)
            screen.query_one("#sampling-temperature").value = "hot"
            await send(pilot, "again")
            await app.workers.wait_for_complete()                 # a reply would run in a worker
            assert len(engine.configs) == 1                       # refused, not sent
            assert any("temperature" in n.message for n in app._notifications)
            assert screen.query_one("#prompt").value == "again"   # the prompt is kept
    asyncio.run(scenario())


def test_classifier_answers_with_label_and_probabilities():
    engine = FakeEngine(labels=["ham", "spam"], task="classify")

    async def scenario():
        app = chat_app(engine)
        async with app.run_test(size=SIZE) as pilot:
            await send(pilot, "WIN a FREE prize now")
            await wait_for(pilot, lambda: replies(app) and replies(app)[0].probs)
            reply = replies(app)[0]
            assert reply.content == "spam"
            assert reply.probs == {"ham": 0.25, "spam": 0.75}
            text = text_of(app.screen.query(".message").last())
            assert "spam" in text and "75.0%" in text
    asyncio.run(scenario())


def test_model_that_fails_to_load_is_reported_not_a_crash():
    def broken(model, backend):
        raise UserError(f"model {model!r} not found")

    async def scenario():
        app = TinyLLMApp(model="nope", engine_factory=broken)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "could not load" in
                           text_of(app.screen.query_one("#chat-model-info")))
            app.screen.query_one("#prompt").value = "hello"
            app.screen.query_one("#prompt").focus()
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            assert not app.screen.query(".message")
            assert app.is_running
    asyncio.run(scenario())


def test_generation_error_is_shown_in_the_conversation():
    class Exploding(FakeEngine):
        def generate(self, prompt, cfg):
            yield "partial"
            raise RuntimeError("kv cache on fire")

    async def scenario():
        app = chat_app(Exploding())
        async with app.run_test(size=SIZE) as pilot:
            await send(pilot, "hi")
            await wait_for(pilot, lambda: not app.screen.generating and replies(app))
            msg = replies(app)[0]
            assert msg.role == "error" and "kv cache on fire" in msg.content
    asyncio.run(scenario())


def test_conversation_export_markdown_and_reopen():
    engine = FakeEngine(pieces=["To be", " or not"])

    async def scenario():
        app = chat_app(engine)
        async with app.run_test(size=SIZE) as pilot:
            await send(pilot, "Hamlet says")
            await wait_for(pilot, lambda: not app.screen.generating and replies(app))
            conv_id = app.screen.conversation.id
            await pilot.press("ctrl+s")
            md = (conversations_dir() / f"{conv_id}.md").read_text()
            assert "**You:**\n\nHamlet says" in md and "To be or not" in md
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: not app.screen.query(".message"))
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: app.screen.query("#conversation-list"))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen.id != "_default" and
                           hasattr(app.screen, "conversation") and
                           app.screen.conversation.id == conv_id)
            await wait_for(pilot, lambda: [v.message.content for v in app.screen.query(".message")]
                           == ["Hamlet says", "To be or not"])
    asyncio.run(scenario())


def test_conversation_round_trip_and_bad_file(tmp_path):
    conv = Conversation(model="m", sampling={"temperature": 0.5})
    from tinyllm_tui.conversations import Message

    conv.add(Message("user", "first line\nsecond"))
    conv.add(Message("assistant", "spam", probs={"ham": 0.1, "spam": 0.9}))
    back = Conversation.load(conv.save())
    assert back.title == "first line" and back.messages[1].probs == {"ham": 0.1, "spam": 0.9}
    assert "| spam | 0.900 |" in back.to_markdown()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    try:
        Conversation.load(bad)
    except UserError as e:
        assert "bad.json:1" in str(e)
    else:
        raise AssertionError("a broken conversation file must raise UserError")


def test_real_engine_on_a_tiny_model(tiny_lm_dir):
    """The default engine factory (tinyllm.engines.open_engine) streams a real model."""
    async def scenario():
        app = TinyLLMApp(model=str(tiny_lm_dir))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.engine is not None)
            assert screen.engine.backend == "torch"
            screen.query_one("#sampling-max_new_tokens").value = "20"
            await send(pilot, "ROMEO:")
            await wait_for(pilot, lambda: not screen.generating and replies(app))
            assert len(replies(app)[0].content) == 20          # 20 characters from a char model
            assert "tiny-lm · lm · torch" in text_of(screen.query_one("#chat-model-info"))
    asyncio.run(scenario())


def test_enter_while_the_model_loads_is_queued_and_sent_when_ready():
    """A person types as soon as they see the box: the prompt waits, shown as pending."""
    import threading

    ready = threading.Event()
    engine = FakeEngine(pieces=["Hi", " there"])

    def slow(model, backend):
        ready.wait(10)
        return engine

    async def scenario():
        app = TinyLLMApp(engine_factory=slow)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.loading)
            prompt = screen.query_one("#prompt")
            prompt.focus()
            prompt.value = "ROMEO:"
            await pilot.press("enter")
            await pilot.pause(0.05)
            assert prompt.value == ""                              # taken, not left in the box
            views = list(screen.query(".message"))
            assert [v.message.content for v in views] == ["ROMEO:"] and views[0].pending
            assert "waiting for the model" in text_of(views[0])
            assert "sent when it is ready" in text_of(screen.query_one("#chat-status"))
            assert engine.prompts == []
            ready.set()
            await wait_for(pilot, lambda: replies(app) and not screen.generating)
            assert engine.prompts == ["ROMEO:"] and replies(app)[0].content == "Hi there"
            assert not views[0].pending
    asyncio.run(scenario())


def test_a_queued_prompt_comes_back_when_the_model_fails_to_load():
    import threading

    go = threading.Event()

    def broken(model, backend):
        go.wait(10)
        raise UserError(f"model {model!r} not found")

    async def scenario():
        app = TinyLLMApp(model="nope", engine_factory=broken)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.loading)
            screen.query_one("#prompt").value = "hello"
            screen.query_one("#prompt").focus()
            await pilot.press("enter")
            await pilot.pause(0.05)
            go.set()
            await wait_for(pilot, lambda: not screen.loading)
            await pilot.pause(0.05)
            assert not screen.query(".message") and not screen.conversation.messages
            assert screen.query_one("#prompt").value == "hello"
            assert "not sent" in text_of(screen.query_one("#chat-status"))
    asyncio.run(scenario())


def test_switching_model_starts_a_new_conversation():
    engines = {"first": FakeEngine(pieces=["one"], name="first"),
               "second": FakeEngine(pieces=["two"], name="second")}

    async def scenario():
        app = TinyLLMApp(model="first", engine_factory=lambda m, b: engines[m])
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await send(pilot, "hello")
            await wait_for(pilot, lambda: replies(app) and not screen.generating)
            old = screen.conversation
            assert old.model == "first"
            from tinyllm_tui.widgets.model_picker import ModelPicker

            screen.query_one(ModelPicker).set_current("second", announce=True)
            await wait_for(pilot, lambda: screen.engine is engines["second"])
            assert screen.conversation is not old and not screen.conversation.messages
            assert not screen.query(".message")
            assert "Ctrl+O" in text_of(screen.query_one("#chat-status"))
            await send(pilot, "again")
            await wait_for(pilot, lambda: replies(app) and not screen.generating)
            assert screen.conversation.model == "second"
            saved = Conversation.load(old.path)                  # the old one kept its model
            assert saved.model == "first" and [m.content for m in saved.messages] == ["hello", "one"]
    asyncio.run(scenario())


def test_what_the_engine_says_is_shown(tiny_lm_dir):
    """A prompt longer than the context and characters the tokenizer does not know: warnings."""
    async def scenario():
        app = TinyLLMApp(model=str(tiny_lm_dir), backend="torch")
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.engine is not None)
            screen.query_one("#sampling-max_new_tokens").value = "2"
            await send(pilot, "ROMEO: " * 20 + "😀")
            await wait_for(pilot, lambda: replies(app) and not screen.generating)
            await pilot.pause(0.05)
            messages = [n.message for n in app._notifications]
            assert any("longer than the model's 64-token context" in m for m in messages)
            assert any("does not know 1 character" in m and "😀" in m for m in messages)
    asyncio.run(scenario())


def test_the_whole_conversation_and_system_prompt_go_to_the_engine():
    engine = FakeEngine(pieces=["Paris."])

    async def scenario():
        app = chat_app(engine)
        async with app.run_test(size=SIZE) as pilot:
            app.screen.query_one("#system-prompt").value = "Answer briefly."
            await send(pilot, "Capital of France?")
            await wait_for(pilot, lambda: not app.screen.generating and replies(app))
            await send(pilot, "And of Italy?")
            await wait_for(pilot, lambda: not app.screen.generating and len(replies(app)) == 2)
            assert engine.messages[1] == [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "And of Italy?"}]
            saved = Conversation.load(app.screen.conversation.path)
            assert saved.system == "Answer briefly."
            assert saved.chat_messages() == engine.messages[1] + [
                {"role": "assistant", "content": "Paris."}]
            await pilot.press("ctrl+n")  # a new conversation keeps the system prompt field
            await pilot.pause(0.05)
            assert app.screen.conversation.system == "Answer briefly."


def test_embedder_answers_with_the_nearest_earlier_line(tiny_bert_dir):
    """An encoder without a classifier (a real one) answers each line with the closest earlier one."""
    async def scenario():
        app = TinyLLMApp(model=str(tiny_bert_dir))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.engine is not None)
            for line in ("the king is dead", "to be or not to be", "the king is dead!"):
                await send(pilot, line)
                await wait_for(pilot, lambda: not screen.generating)
            answers = [m.content for m in replies(app)]
            assert len(answers) == 3 and "nearest" in answers[0]
            assert "nearest earlier line" in answers[2] and "the king is dead\n" in answers[2] + "\n"
            assert answers[2].splitlines()[1].strip() == "the king is dead"
            assert "embedded in" in text_of(screen.query_one("#chat-status"))
    asyncio.run(scenario())
