"""Inspect: look inside a model on a prompt, as ``tinyllm inspect`` does, and move around in it.

Type a prompt and press Enter: the tokens appear as a strip coloured by surprise (how unexpected
each token was to the model, in bits); moving along it (←/→) shows what the model expected after
the selected token (the top-k next tokens as bars, the one that follows marked ✓) and the logit
lens at that position (each layer's top token). ↑/↓ choose the layer and [ / ] the head (m: the
mean over heads) of the attention heatmap, redrawn at once. From Chat, Ctrl+R inspects the last
reply. The model loads (and torch imports) in a worker when the screen is first opened.
"""
from __future__ import annotations

import time
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static
from textual.worker import get_current_worker

from tinyllm import modeldir
from tinyllm_tui.fmt import describe_error
from tinyllm_tui.screens.base import TinyScreen
from tinyllm_tui.widgets.inspect import Heatmap, LensColumn, NextBars, TokenStrip

TOP_K = 8   # next tokens shown as bars

HINT = ("Type a prompt above and press Enter (\\n in the box is a newline).\n\n"
        "The tokens then appear coloured by surprise: green is what the model expected, red what "
        "surprised it. On the tokens, ←/→ move the selection: the bars show what the model "
        "expected after the selected token (✓ the one that follows) and the logit lens each "
        "layer's guess there. ↑/↓ change the layer of this attention heatmap, [ and ] the head "
        "(m: the mean over heads). Tab moves between the prompt and the tokens; Ctrl+L back to "
        "the prompt. From Chat, Ctrl+R inspects the last reply.")


def unescape(text: str) -> str:
    """The prompt box's one line as text: \\n is a newline, \\t a tab, \\\\ a backslash."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def escape(text: str) -> str:
    """Text for the one-line prompt box (the inverse of :func:`unescape`)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def default_inspector_factory(model: str):
    """Open ``model`` for inspection (torch loads here, in the screen's worker)."""
    from tinyllm.engines.inspect import open_inspector

    return open_inspector(model)


class InspectScreen(TinyScreen):
    MODE = "inspect"
    BINDINGS = [
        Binding("up", "layer(-1)", "Layer", key_display="↑↓"),
        Binding("down", "layer(1)", "Layer", show=False),
        Binding("pageup", "head(-1)", "Head -", show=False),
        Binding("pagedown", "head(1)", "Head +", show=False),
        Binding("ctrl+l", "focus_prompt", "Prompt"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.inspector: Any = None          # the loaded Inspector
        self.model_ref: str | None = None   # the model it was (or is being) opened for
        self.inspection: Any = None         # the last Inspection shown
        self.selected = 0                   # the selected token
        self.shown_layer = 0                # the layer and head the heatmap draws
        self.shown_head: int | None = None  # None: the mean over heads
        self.busy = False                   # loading or analysing
        # what to inspect once the model is loaded: a prompt, or a conversation's messages
        self._pending: str | list[dict] | None = None

    # ---- layout -------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Horizontal(id="inspect-bar"):
            yield Select([], id="inspect-model", allow_blank=True, prompt="(model)", compact=True)
            yield Input(placeholder="a prompt to inspect, then Enter", id="inspect-prompt",
                        select_on_focus=False)
        yield Static("", id="inspect-info", markup=False)
        yield TokenStrip("", id="token-strip")
        yield Static("", id="inspect-position", markup=False)
        with Horizontal(id="inspect-body"):
            with VerticalScroll(id="inspect-side", classes="side"):
                yield Label("next tokens", classes="section", id="next-title")
                yield NextBars("(after a prompt)", id="next-bars", classes="placeholder")
                yield Label("logit lens", classes="section")
                yield LensColumn("(after a prompt)", id="lens-column", classes="placeholder")
            with Vertical(id="inspect-main"):
                yield Static("", id="heatmap-title", markup=False)
                yield Static(HINT, id="inspect-hint", markup=False)
                yield Heatmap(id="heatmap")

    def on_mount(self) -> None:
        self.query_one("#inspect-prompt", Input).focus()
        request = self._take_request()
        model = request["model"] if request else self.app.model_ref or modeldir.DEFAULT_LM
        if request:
            self._pending = request["messages"]
        self._fill_models(model)
        self.model_ref, self.busy = model, True
        # after the first paint: importing torch in the worker would hold the GIL and delay it
        self.call_after_refresh(self.load_model, model)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        request = self._take_request()
        if request is not None:
            self.inspect_conversation(request["model"], request["messages"])

    def _take_request(self) -> dict | None:
        """What Chat asked to inspect (``{"model", "messages"}``, its last reply), once."""
        request = getattr(self.app, "inspect_request", None)
        self.app.inspect_request = None
        return request

    def _fill_models(self, current: str) -> None:
        select = self.query_one("#inspect-model", Select)
        names = [(f"{m.name} ({m.task})", m.name) for m in modeldir.list_models() if not m.problem]
        if not any(v == current for _, v in names):
            names.insert(0, (current, current))
        with select.prevent(Select.Changed):
            select.set_options(names)
            select.value = current

    # ---- the model ----------------------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "inspect-model" and event.value is not Select.NULL \
                and event.value != self.model_ref:
            event.stop()
            self.load_model(str(event.value))

    def load_model(self, model: str) -> None:
        self.inspector, self.model_ref, self.busy = None, model, True
        self.query_one("#inspect-info", Static).update(f"loading {model}…")
        self._load(model)

    @work(thread=True, exclusive=True, group="inspect-load", exit_on_error=False)
    def _load(self, model: str) -> None:
        from tinyllm.convert.provided import ensure_model, is_pending

        worker = get_current_worker()
        info = self.query_one("#inspect-info", Static)

        def show(text: str) -> None:
            if not worker.is_cancelled:
                self.app.call_from_thread(info.update, text)

        t0 = time.perf_counter()
        try:
            if is_pending(model):   # a provided model's first use: import it, with progress
                ensure_model(model, log=show, progress=lambda done, total: show(
                    f"first use of {model}: importing, {done}/{total} tensors…"))
            factory = getattr(self.app, "inspector_factory", None) or default_inspector_factory
            inspector = factory(model)
        except BaseException as e:   # reported, never a crash
            if not worker.is_cancelled:
                self.app.call_from_thread(self._failed, model, describe_error(e))
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._loaded, model, inspector, time.perf_counter() - t0)

    def _loaded(self, model: str, inspector: Any, seconds: float) -> None:
        if model != self.model_ref:
            return
        self.inspector, self.busy = inspector, False
        cfg = inspector.config
        self.shown_layer, self.shown_head = cfg.n_layer - 1, None
        self.query_one("#inspect-info", Static).update(
            f"{inspector.name}: {inspector.kind}, {cfg.n_layer} layers x {cfg.n_head} heads, "
            f"context {cfg.context_length} (loaded in {seconds:.1f} s)")
        pending, self._pending = self._pending, None
        if isinstance(pending, list):
            self.inspect_conversation(model, pending)
            return
        text = pending if pending is not None else \
            unescape(self.query_one("#inspect-prompt", Input).value)
        if text:
            self.analyse(text)

    def _failed(self, model: str, message: str) -> None:
        if model != self.model_ref:
            return
        self.busy = False
        self.query_one("#inspect-info", Static).update(f"could not load {model}: {message}")
        self.error(f"could not load {model}: {message}")

    # ---- analysing ----------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "inspect-prompt":
            return
        event.stop()
        if not event.value:
            self.error("nothing to inspect: the prompt is empty")
            return
        self.analyse(unescape(event.value))

    def analyse(self, text: str) -> None:
        if self.inspector is None:
            self._pending = text   # inspected as soon as the model is loaded
            if not self.busy and self.model_ref:
                self.load_model(self.model_ref)
            return
        self.busy = True
        self.query_one("#inspect-info", Static).update(f"inspecting {len(text):,} characters…")
        self._analyse(self.inspector, text)

    @work(thread=True, exclusive=True, group="inspect-run", exit_on_error=False)
    def _analyse(self, inspector: Any, text: str) -> None:
        worker = get_current_worker()
        t0 = time.perf_counter()
        try:
            result = inspector.inspect(text, top_k=TOP_K)
        except BaseException as e:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._analysis_failed, describe_error(e))
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_result, inspector, result,
                                      time.perf_counter() - t0)

    def _analysis_failed(self, message: str) -> None:
        self.busy = False
        self.query_one("#inspect-info", Static).update(message)
        self.error(message)

    def _show_result(self, inspector: Any, result: Any, seconds: float) -> None:
        if inspector is not self.inspector:
            return
        self.busy = False
        self.inspection = result
        self.selected = len(result.tokens) - 1
        self.shown_layer = min(self.shown_layer, result.n_layer - 1)
        if self.shown_head is not None and self.shown_head >= result.n_head:
            self.shown_head = None
        from rich.text import Text

        from tinyllm.cli.inspect_view import surprise_legend

        notes = " ".join(n.removeprefix("warning: ").removeprefix("note: ") for n in result.notes)
        info = Text(f"{result.kind}, {len(result.tokens)} tokens in {seconds * 1000:.0f} ms  ")
        if result.actual:
            info.append_text(surprise_legend())
        if notes:
            info.append(f"\n{notes}")
        self.query_one("#inspect-info", Static).update(info)
        self.query_one("#next-title", Label).update(
            "labels" if result.labels is not None else
            "next tokens" if result.next else "fill-mask")
        self.query_one("#inspect-hint").display = False
        for placeholder in self.query(".placeholder"):
            placeholder.remove_class("placeholder")
        self.query_one(TokenStrip).focus()
        self.refresh_bindings()
        self.redraw()

    # ---- moving around ------------------------------------------------------------------------
    def redraw(self) -> None:
        """Everything that depends on the selected token, layer and head."""
        r = self.inspection
        if r is None:
            return
        self.query_one(TokenStrip).show(r, self.selected)
        from tinyllm.cli.inspect_view import position_summary

        self.query_one("#inspect-position", Static).update(position_summary(r, self.selected))
        self.query_one(NextBars).show(r, self.selected)
        self.query_one(LensColumn).show(r, self.selected)
        head = "mean of heads" if self.shown_head is None else f"head {self.shown_head}"
        self.query_one("#heatmap-title", Static).update(
            f"attention · layer {self.shown_layer} (0-{r.n_layer - 1}) · {head} "
            f"(0-{r.n_head - 1})")
        self.query_one(Heatmap).show(r, self.shown_layer, self.shown_head, self.selected)

    def action_move(self, delta: int) -> None:
        if self.inspection is not None:
            self.selected = max(0, min(len(self.inspection.tokens) - 1, self.selected + delta))
            self.redraw()

    def action_move_to(self, position: int) -> None:
        if self.inspection is not None:
            self.selected = position % len(self.inspection.tokens)
            self.redraw()

    def action_layer(self, delta: int) -> None:
        if self.inspection is not None:
            self.shown_layer = (self.shown_layer + delta) % self.inspection.n_layer
            self.redraw()

    def action_head(self, delta: int) -> None:
        """Cycle mean -> 0 -> 1 -> ... -> n_head-1 -> mean (backwards with -1)."""
        if self.inspection is None:
            return
        n = self.inspection.n_head
        current = n if self.shown_head is None else self.shown_head      # the mean sits after the last head
        nxt = (current + delta) % (n + 1)
        self.shown_head = None if nxt == n else nxt
        self.redraw()

    def action_mean(self) -> None:
        if self.inspection is not None:
            self.shown_head = None
            self.redraw()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("layer", "head"):
            return self.inspection is not None   # shown in the footer once there is a picture
        return True

    def action_focus_prompt(self) -> None:
        self.query_one("#inspect-prompt", Input).focus()

    # ---- from Chat ----------------------------------------------------------------------------
    def inspect_conversation(self, model: str, messages: list[dict]) -> None:
        """Inspect the text the model read and wrote in a conversation (Chat's last reply),
        loading ``model`` first when another one is open."""
        if self.inspector is None or model != self.model_ref:
            self._pending = messages
            if model != self.model_ref or not self.busy:
                self._fill_models(model)
                self.load_model(model)
            return
        try:
            text = self.inspector.conversation_text(messages)
        except Exception as e:   # a chat template that fails to render
            self.error(describe_error(e))
            return
        self.query_one("#inspect-prompt", Input).value = escape(text)
        self.analyse(text)
