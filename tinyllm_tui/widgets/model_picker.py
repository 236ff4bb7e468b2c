"""Pick a model (bundled, in ``$TINYLLM_HOME/models``, or by path) and a backend."""
from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select

from tinyllm import modeldir

BACKENDS = [("auto (onnx if exported)", "auto"), ("torch", "torch"), ("onnx", "onnx")]


class ModelPicker(Vertical):
    """A Select of known models, a path Input and a backend Select; posts ``Chosen``."""

    @dataclass
    class Chosen(Message):
        model: str          # a model name or a path
        backend: str        # "auto", "torch" or "onnx"

    def __init__(self, model: str | None = None, backend: str | None = None, **kw):
        super().__init__(**kw)
        self._model = model or modeldir.DEFAULT_LM
        self._backend = backend or "auto"
        self._known: list[tuple[str, str]] | None = None

    def compose(self) -> ComposeResult:
        # the full list is read from disk after the first paint; until then only the current model
        by_name = "/" not in self._model and not self._model.startswith(".")
        yield Label("model", classes="field-label")
        yield Select([(self._model, self._model)] if by_name else [], id="model-select",
                     allow_blank=True, prompt="(choose a model)", compact=True,
                     value=self._model if by_name else Select.NULL)
        yield Input("" if by_name else self._model, placeholder="or a path, then Enter",
                    id="model-path", compact=True, select_on_focus=False)
        yield Label("backend", classes="field-label")
        yield Select(BACKENDS, id="backend-select", allow_blank=False, value=self._backend,
                     compact=True)

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_refresh)

    def _first_refresh(self) -> None:
        self.refresh_models()
        if self.query_one("#model-select", Select).value is Select.NULL:
            self.set_current(self._model, announce=False)   # not a known name: show it as a path

    def _options(self, reread: bool = False) -> list[tuple[str, str]]:
        """(label, name) of every known model; read from disk once, then on ``refresh_models``."""
        if reread or self._known is None:
            # short labels: the side panel is narrow, and a cut name is no name
            known = modeldir.list_models()
            names = {m.name for m in known}
            self._known = [(f"{m.name} ({m.task})", m.name) for m in known]
            self._known += [(f"{name} (chat; imported on first use)", name)
                            for name in modeldir.PROVIDED
                            if name not in names and modeldir.provided_file(name)]
        return self._known

    def refresh_models(self) -> None:
        select = self.query_one("#model-select", Select)
        current = select.value
        with select.prevent(Select.Changed):   # the same choice, a fresh list: nothing to announce
            select.set_options(self._options(reread=True))
            if current is not Select.NULL and any(v == current for _, v in self._options()):
                select.value = current

    @property
    def backend(self) -> str:
        return str(self.query_one("#backend-select", Select).value)

    def set_current(self, model: str, backend: str | None = None, announce: bool = True) -> None:
        """Show ``model`` as chosen: in the Select when it is a known name, else in the path box."""
        select = self.query_one("#model-select", Select)
        path = self.query_one("#model-path", Input)
        with select.prevent(Select.Changed), path.prevent(Input.Changed):
            if any(v == model for _, v in self._options()):
                select.value = model
                path.value = ""
            else:
                select.clear()
                path.value = model
        if backend:
            sel = self.query_one("#backend-select", Select)
            with sel.prevent(Select.Changed):
                sel.value = backend
        self._model = model
        if announce:
            self.post_message(self.Chosen(model, self.backend))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "model-select" and event.value is not Select.NULL:
            self.query_one("#model-path", Input).value = ""
            self._model = str(event.value)
        self.post_message(self.Chosen(self._model, self.backend))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "model-path":
            return
        event.stop()
        if event.value.strip():
            self._model = event.value.strip()
            with self.query_one("#model-select", Select).prevent(Select.Changed):
                self.query_one("#model-select", Select).clear()
            self.post_message(self.Chosen(self._model, self.backend))
