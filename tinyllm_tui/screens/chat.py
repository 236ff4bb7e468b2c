"""Chat: talk to a model, with its reply streaming in from a worker thread.

The conversation is kept as messages and the engine answers all of them (``Engine.chat``): chat
models render them with their chat template (with the system prompt from the side panel), instruct
models answer the last one through their prompt template, language models continue the
transcript; classifiers answer with a label and probabilities, and embedders (encoders
without a classifier) with the nearest of the lines entered so far. The default model is
smollm2-135m-instruct, imported from its package on first use (progress shows above the
messages). Conversations, system prompt included, are saved in ``$TINYLLM_HOME/conversations``
after every reply.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Static
from textual.worker import Worker, get_current_worker

from tinyllm.units import human
from tinyllm_tui.conversations import Conversation, Message
from tinyllm_tui.fmt import describe_error
from tinyllm_tui.screens.base import TinyScreen
from tinyllm_tui.widgets.message import MessageView
from tinyllm_tui.widgets.model_picker import ModelPicker
from tinyllm_tui.widgets.sampling import SamplingPanel

FLUSH_INTERVAL = 1 / 30  # seconds between screen updates while a reply streams


class ChatScreen(TinyScreen):
    MODE = "chat"
    BINDINGS = [
        Binding("escape", "cancel", "Stop"),
        Binding("ctrl+n", "new_conversation", "New"),
        Binding("ctrl+o", "open_conversation", "Open"),
        Binding("ctrl+s", "export_markdown", "Export .md"),
        Binding("ctrl+r", "inspect_reply", "Inspect reply"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.engine: Any = None                  # the loaded Engine (or a test's fake)
        self.engine_key: tuple[str, str] | None = None   # (model, backend) it was opened with
        self.conversation = Conversation()
        self.generating = False
        self.loading = False                     # a model is being opened
        self._gen_worker: Worker | None = None
        self._reply: MessageView | None = None
        self._pending: list[str] = []            # streamed text not yet on screen
        self._queued: tuple[str, dict, MessageView] | None = None  # sent on Enter while loading
        self._lock = threading.Lock()
        self._flusher = None
        self._vectors: dict[str, Any] = {}      # embedder: the vector of each line entered

    # ---- layout -------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        from tinyllm.convert.provided import default_chat_model

        app = self.app
        with Horizontal(id="chat-body"):
            with VerticalScroll(id="chat-side", classes="side"):
                yield ModelPicker(app.model_ref or default_chat_model(), app.backend_choice,
                                  id="model-picker")
                yield Label("sampling", classes="section")
                yield SamplingPanel(id="sampling")
                yield Label("system prompt", classes="section")
                yield Input(placeholder="(the model's own)", id="system-prompt", compact=True)
            with Vertical(id="chat-main"):
                yield Static("no model loaded", id="chat-model-info", markup=False)
                yield VerticalScroll(id="messages")
                yield Static("", id="chat-status", markup=False)
                yield Input(placeholder="Type a prompt and press Enter (Esc stops a reply)",
                            id="prompt", select_on_focus=False)

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).focus()
        picker = self.query_one(ModelPicker)
        # after the first paint: importing torch in the worker would hold the GIL and delay it
        self.call_after_refresh(self.load_model, picker._model, picker._backend)

    def screen_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Chat: new conversation", "Start an empty conversation",
                            self.action_new_conversation)
        yield SystemCommand("Chat: open conversation", "Reopen a saved conversation",
                            self.action_open_conversation)
        yield SystemCommand("Chat: export as Markdown", "Write this conversation to a .md file",
                            self.action_export_markdown)
        yield SystemCommand("Chat: inspect the last reply", "Tokens, next-token odds, attention "
                            "and the logit lens of the last exchange", self.action_inspect_reply)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.generating   # "Stop" shows in the footer only while generating
        return True

    # ---- model loading ------------------------------------------------------------------------
    def on_model_picker_chosen(self, event: ModelPicker.Chosen) -> None:
        if (event.model, event.backend) != self.engine_key:
            self.load_model(event.model, event.backend)

    def load_model(self, model: str, backend: str, keep_conversation: bool = False) -> None:
        """Open ``model``; another model than the conversation's starts a new conversation (its
        messages were answered by the old one), unless ``keep_conversation`` (a reopened one)."""
        if self.generating:
            self.error("stop the current reply (Esc) before switching models")
            return
        conv = self.conversation
        if not keep_conversation and conv.messages and conv.model and conv.model != model:
            self._drop_queued("the model changed before it was sent")
            self.start_conversation(f"new conversation with {model} (the last one, with "
                                    f"{conv.model}, is saved: Ctrl+O reopens it)")
        self.engine, self.engine_key, self.loading = None, (model, backend), True
        self.query_one("#chat-model-info", Static).update(f"loading {model} ({backend})…")
        self._load_engine(model, backend)

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def _load_engine(self, model: str, backend: str) -> None:
        from tinyllm.convert.provided import ensure_model, is_pending
        from tinyllm_tui.app import default_engine_factory

        worker = get_current_worker()
        t0 = time.perf_counter()
        info = self.query_one("#chat-model-info", Static)

        def show(text: str) -> None:
            if not worker.is_cancelled:
                self.app.call_from_thread(info.update, text)

        try:
            # a provided model's first use: import it, showing progress (tests' factories skip it)
            if self.app.engine_factory is default_engine_factory and is_pending(model):
                ensure_model(model, log=show, progress=lambda done, total: show(
                    f"first use of {model}: importing, {done}/{total} tensors…"))
            engine = self.app.engine_factory(model, None if backend == "auto" else backend)
        except BaseException as e:  # a model that fails to load is reported, never a crash
            if not worker.is_cancelled:
                self.app.call_from_thread(self._engine_failed, model, describe_error(e))
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._engine_ready, engine, (model, backend),
                                      time.perf_counter() - t0)

    def _engine_ready(self, engine: Any, key: tuple[str, str], seconds: float) -> None:
        if key != self.engine_key:
            return
        self.engine, self.loading = engine, False
        if hasattr(engine, "log"):   # what the engine says (a prompt cut at the context, ...)
            engine.log = self._engine_note
        self.query_one("#chat-model-info", Static).update(model_summary(engine, seconds))
        self.query_one(ModelPicker).refresh_models()
        if self._queued is not None:   # the prompt typed while the model loaded goes now
            text, settings, view = self._queued
            self._queued = None
            view.pending = False
            view.refresh_view()
            self._start_reply(text, settings)

    def _engine_failed(self, model: str, message: str) -> None:
        if self.engine_key and self.engine_key[0] != model:
            return   # a model chosen since is loading
        self.loading = False
        self.query_one("#chat-model-info", Static).update(f"could not load {model}: {message}")
        self.error(f"could not load {model}: {message}")
        self._drop_queued(f"{model} could not be loaded")

    def _engine_note(self, message: str) -> None:
        """The engine's ``log=``: its notes and warnings as notifications (from any thread)."""
        warning = message.startswith("warning:")

        def show() -> None:
            self.app.notify(message.removeprefix("warning:").strip(),
                            title="warning" if warning else "note",
                            severity="warning" if warning else "information")
        try:
            self.app.call_from_thread(show)
        except RuntimeError:   # already on the app's thread
            show()

    def _drop_queued(self, why: str) -> None:
        """Take back a prompt queued while loading: off the conversation, back into the box."""
        if self._queued is None:
            return
        text, _, view = self._queued
        self._queued = None
        if view.message in self.conversation.messages:
            self.conversation.messages.remove(view.message)
        view.remove()
        prompt = self.query_one("#prompt", Input)
        if not prompt.value:
            prompt.value = text
        self.query_one("#chat-status", Static).update(f"not sent: {why}; your prompt is back "
                                                     "in the box")

    # ---- sending and streaming ----------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt":
            return
        event.stop()
        text = event.value
        if not text.strip():
            return
        if self.generating:
            self.app.notify("a reply is still streaming; Esc stops it", severity="warning")
            return
        if self._queued is not None:
            self.app.notify("a prompt is already waiting for the model to load",
                            severity="warning")
            return
        if self.engine is None and not self.loading:
            self.error(f"{self.engine_key[0]} could not be loaded; choose another model"
                       if self.engine_key else "choose a model first")
            return
        from tinyllm.errors import UserError

        try:
            settings = self.query_one(SamplingPanel).values()
        except UserError as e:
            self.error(str(e))
            return
        event.input.value = ""
        if self.engine is None:   # still loading: shown as pending, sent when the model is ready
            view = self._mount_message(self.conversation.add(Message("user", text)))
            view.pending = True
            view.refresh_view()
            self._queued = (text, settings, view)
            self.query_one("#chat-status", Static).update(
                f"waiting for {self.engine_key[0]} to load; your prompt is sent when it is ready")
            return
        self._mount_message(self.conversation.add(Message("user", text)))
        self._start_reply(text, settings)

    def _start_reply(self, text: str, settings: dict[str, Any]) -> None:
        """Stream the engine's reply to ``text`` (already in the conversation) into a new message."""
        conv = self.conversation
        conv.model, conv.backend = self.engine_key or ("", "auto")
        conv.sampling = settings
        conv.system = self.query_one("#system-prompt", Input).value.strip()
        history = conv.chat_messages()   # ends with the user message ``text``, already added
        self._reply = self._mount_message(conv.add(Message("assistant", "")))
        self._reply.streaming = True
        self.generating = True
        self.refresh_bindings()
        self.query_one("#chat-status", Static).update("generating… (Esc to stop)")
        self._flusher = self.set_interval(FLUSH_INTERVAL, self._flush)
        self._gen_worker = self._generate(self.engine, text, settings, history)

    def _mount_message(self, message: Message) -> MessageView:
        view = MessageView(message)
        box = self.query_one("#messages", VerticalScroll)
        box.mount(view)
        box.scroll_end(animate=False)
        return view

    @work(thread=True, group="generate", exit_on_error=False)
    def _generate(self, engine: Any, text: str, settings: dict[str, Any],
                  messages: list[dict[str, str]]) -> None:
        worker = get_current_worker()
        t0, pieces, probs, error, cancelled = time.perf_counter(), 0, None, None, False
        try:
            if getattr(engine, "labels", None):
                p = engine.classify([text])[0]
                probs = {label: float(x) for label, x in zip(engine.labels, p)}
            elif getattr(engine, "is_encoder", False):
                earlier = [m.content for m in self.conversation.messages[:-2] if m.role == "user"]
                with self._lock:
                    self._pending.append(nearest_line(engine, text, earlier, self._vectors))
                pieces = -1  # not tokens: an answer computed at once
            else:
                from tinyllm.runtime.sampling import SamplingConfig

                cfg = SamplingConfig(**settings)
                chat = getattr(engine, "chat", None)
                stream = chat(messages, cfg) if chat else engine.generate(text, cfg)
                try:
                    for piece in stream:
                        if worker.is_cancelled:
                            cancelled = True
                            break
                        with self._lock:
                            self._pending.append(piece)
                        pieces += 1
                finally:
                    close = getattr(stream, "close", None)
                    if close:
                        close()
        except BaseException as e:  # shown in the conversation, never a crash
            error = describe_error(e)
        cancelled = cancelled or worker.is_cancelled
        try:
            self.app.call_from_thread(self._generation_done, pieces, time.perf_counter() - t0,
                                      probs, error, cancelled)
        except RuntimeError:  # the app closed while we were generating
            pass

    def _flush(self) -> None:
        with self._lock:
            text, self._pending = "".join(self._pending), []
        if text and self._reply is not None:
            box = self.query_one("#messages", VerticalScroll)
            following = box.max_scroll_y - box.scroll_y < 3   # the user did not scroll up to read
            self._reply.append(text)
            if following:
                box.scroll_end(animate=False)

    def _generation_done(self, pieces: int, seconds: float, probs: dict | None, error: str | None,
                         cancelled: bool) -> None:
        if self._flusher is not None:
            self._flusher.stop()
        self._flush()
        reply = self._reply
        self.generating, self._reply, self._gen_worker = False, None, None
        self.refresh_bindings()
        status = self.query_one("#chat-status", Static)
        if reply is not None:
            reply.streaming = False
            msg = reply.message
            if probs:
                msg.probs = probs
                msg.content = max(probs, key=probs.get)
            msg.cancelled = cancelled
            if error:
                msg.role, msg.content = "error", error
                reply.set_classes("message error")
                reply.border_title = "error"
            reply.refresh_view()
        if error:
            status.update("")
            self.error(error)
        elif probs:
            status.update(f"classified in {seconds * 1000:.0f} ms")
        elif pieces < 0:
            status.update(f"embedded in {seconds * 1000:.0f} ms")
        else:
            rate = pieces / seconds if seconds > 0 else 0.0
            status.update(f"{'stopped after' if cancelled else 'done:'} {pieces} tokens in "
                          f"{seconds:.1f} s ({rate:.0f} tokens/s)")
        self._save()

    def action_cancel(self) -> None:
        if self._gen_worker is not None and self.generating:
            self._gen_worker.cancel()
            self.query_one("#chat-status", Static).update("stopping…")

    # ---- inspecting ---------------------------------------------------------------------------
    def action_inspect_reply(self) -> None:
        """Open Inspect on the last exchange: the conversation up to the last reply, as the model
        read and wrote it (its chat template, prompt template or transcript)."""
        if self.generating:
            self.error("stop the current reply (Esc) first")
            return
        messages = self.conversation.chat_messages()
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant" and m["content"]),
                   default=None)
        if last is None or self.engine_key is None:
            self.error("no reply to inspect yet")
            return
        if getattr(self.engine, "labels", None):
            self.error("a classifier's answer has no text to inspect; type the message in "
                       "Inspect (F6) to see its attention")
            return
        # the last user message and its reply, with the system prompt the model saw
        system = [m for m in messages[:1] if m["role"] == "system"]
        start = max((i for i in range(last) if messages[i]["role"] == "user"), default=len(system))
        self.app.inspect_request = {"model": self.engine_key[0],
                                    "messages": system + messages[start:last + 1]}
        self.app.switch_mode("inspect")

    # ---- conversations ------------------------------------------------------------------------
    def _save(self) -> None:
        try:
            self.conversation.save()
        except OSError as e:
            self.error(f"could not save the conversation: {e}")

    def action_new_conversation(self) -> None:
        if self.generating:
            self.error("stop the current reply (Esc) first")
            return
        self._drop_queued("a new conversation was started")
        self.start_conversation("new conversation")
        self.query_one("#prompt", Input).focus()

    def start_conversation(self, status: str) -> None:
        """An empty conversation on screen (the old one stays saved)."""
        self.conversation = Conversation(system=self.query_one("#system-prompt", Input).value.strip())
        self._vectors.clear()  # an embedder's vectors belong to the conversation (and its model)
        self.query_one("#messages", VerticalScroll).remove_children()
        self.query_one("#chat-status", Static).update(status)

    def action_open_conversation(self) -> None:
        from tinyllm_tui.screens.dialogs import ConversationPicker

        if self.generating:
            self.error("stop the current reply (Esc) first")
            return
        self._drop_queued("another conversation was opened")
        self.app.push_screen(ConversationPicker(), self.open_conversation)

    def open_conversation(self, path: str | None) -> None:
        if not path:
            return
        from tinyllm.errors import UserError

        try:
            conv = Conversation.load(path)
        except UserError as e:
            self.error(str(e))
            return
        self.conversation = conv
        box = self.query_one("#messages", VerticalScroll)
        box.remove_children()
        box.mount_all([MessageView(m) for m in conv.messages])
        box.scroll_end(animate=False)
        self.query_one(SamplingPanel).set_values(conv.sampling)
        self.query_one("#system-prompt", Input).value = conv.system
        if conv.model:
            picker = self.query_one(ModelPicker)
            picker.set_current(conv.model, conv.backend, announce=False)
            if (conv.model, picker.backend) != self.engine_key:  # its own model, its messages kept
                self.load_model(conv.model, picker.backend, keep_conversation=True)
        self.query_one("#chat-status", Static).update(f"reopened {conv.title or conv.id}")

    def action_export_markdown(self) -> None:
        if not self.conversation.messages:
            self.error("nothing to export yet")
            return
        try:
            path = self.conversation.export_markdown()
        except OSError as e:
            self.error(f"could not export: {e}")
            return
        self.app.notify(f"exported to {path}", title="Markdown")


def nearest_line(engine: Any, text: str, earlier: list[str], cache: dict[str, Any]) -> str:
    """An embedder's answer: which of the ``earlier`` lines is closest to ``text`` in meaning
    (cosine of their embeddings; ``cache`` keeps each line's vector)."""
    todo = [t for t in dict.fromkeys([text, *earlier]) if t not in cache]
    if todo:
        for t, v in zip(todo, engine.embed(todo, normalize=True)):
            cache[t] = v
    if not earlier:
        return ("(an embedding model: it answers each line with the nearest of the lines "
                "entered before it; type another)")
    scored = sorted(((float(cache[text] @ cache[t]), t) for t in set(earlier)), reverse=True)
    best, line = scored[0]
    more = "".join(f"\n  {s:.3f}  {t}" for s, t in scored[1:3])
    return f"nearest earlier line (cosine {best:.3f}):\n  {line}" + more


def model_summary(engine: Any, seconds: float) -> str:
    """One line about a loaded model: name, task, backend, size, tokenizer."""
    info = getattr(engine, "info", None)
    name = getattr(info, "name", "model")
    parts = [name, getattr(engine, "task", "lm"), getattr(engine, "backend", "?")]
    try:
        cfg = info.model_config
        parts.append(f"{human(cfg.num_params())} params, context {cfg.context_length}")
    except Exception:
        pass
    if getattr(engine, "labels", None):
        parts.append("labels: " + ", ".join(engine.labels))
    return " · ".join(parts) + f"  (loaded in {seconds:.1f} s)"
