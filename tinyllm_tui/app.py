"""The ``tinyllm-tui`` application: five screens (Chat, Train, Data, Models, Inspect) as Textual
modes.

Start-up stays light: screens are imported when first shown, and torch is imported only by the
worker that loads a model or starts training, never on the way to the first paint.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any, Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tinyllm_tui.themes import DARK, LIGHT, default_theme, theme_choices

SCREENS_BY_MODE = {
    "chat": "tinyllm_tui.screens.chat:ChatScreen",
    "train": "tinyllm_tui.screens.train:TrainScreen",
    "data": "tinyllm_tui.screens.data:DataScreen",
    "models": "tinyllm_tui.screens.models:ModelsScreen",
    "inspect": "tinyllm_tui.screens.inspect:InspectScreen",
}


def _lazy(ref: str) -> Callable[[], Screen]:
    def make() -> Screen:
        module, attr = ref.split(":")
        return getattr(importlib.import_module(module), attr)()
    return make


def default_engine_factory(model: str | None, backend: str | None):
    """Open a model with :func:`tinyllm.engines.open_engine` (torch loads here, lazily)."""
    from tinyllm.engines import open_engine

    return open_engine(model, backend=backend)


class TinyLLMApp(App):
    """tinyllm: chat with, train, inspect and manage small GPT models."""

    TITLE = "tinyllm"
    CSS_PATH = Path(__file__).parent / "tinyllm.tcss"   # absolute: subclasses elsewhere work too
    MODES = {mode: _lazy(ref) for mode, ref in SCREENS_BY_MODE.items()}
    DEFAULT_MODE = "chat"
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("f2", "switch_mode('chat')", "Chat"),
        Binding("f3", "switch_mode('train')", "Train"),
        Binding("f4", "switch_mode('data')", "Data"),
        Binding("f5", "switch_mode('models')", "Models"),
        Binding("f6", "switch_mode('inspect')", "Inspect"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, model: str | None = None, backend: str | None = None,
                 screen: str = "chat", theme: str | None = None, data: str | None = None,
                 attach: str | None = None,
                 engine_factory: Callable[[str | None, str | None], Any] | None = None,
                 trainer_factory: Callable[..., Any] | None = None,
                 inspector_factory: Callable[[str], Any] | None = None):
        # the first screen is the default mode, so no other screen is built (or loads a model) first
        self.DEFAULT_MODE = screen if screen in SCREENS_BY_MODE else "chat"
        super().__init__()
        self.model_ref = model                   # model name or path for Chat (None: the default)
        self.backend_choice = backend            # None (auto), "torch" or "onnx"
        self.start_data = data                   # a data file to open in Data
        self.start_attach = attach               # a run dir (or metrics.jsonl) to follow in Train
        self.engine_factory = engine_factory or default_engine_factory
        self.trainer_factory = trainer_factory   # tests swap the training process for a thread
        self.inspector_factory = inspector_factory   # None: open_inspector (Inspect screen)
        self.inspect_request: dict | None = None     # {"model", "messages"} from Chat, for Inspect
        self.train_screen = None                 # the Train screen, once shown (it may run a run)
        self.register_theme(DARK)
        self.register_theme(LIGHT)
        # set before the first paint: changing the theme later restyles every widget again
        name = default_theme(theme)
        self.theme = name if name in self.available_themes else DARK.name
        self._bad_theme = None if name in self.available_themes else name

    def on_mount(self) -> None:
        if self._bad_theme:
            self.notify(f"unknown theme {self._bad_theme!r}; using {DARK.name}", severity="warning")

    def notify(self, message: str, *, title: str = "", severity="information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications show text as written (file names and errors may contain [brackets])."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    async def action_quit(self) -> None:
        """Quit; a training run started here is stopped (after it saves a checkpoint), so ask
        first. Ctrl+Q again in the question quits."""
        from tinyllm_tui.screens.dialogs import ConfirmDialog

        train = getattr(self, "train_screen", None)
        if train is None or not train.running or isinstance(self.screen, ConfirmDialog):
            self.exit()
            return
        s = train.state
        at = f" at step {s.step:,}/{s.max_steps:,}" if s.max_steps else ""
        self.push_screen(ConfirmDialog(
            f"Training {train.process.out.name} is going{at}. Quitting stops it after it saves a "
            "checkpoint (Ctrl+R resumes it later). Quit?", yes="Stop and quit"),
            lambda yes: self.exit() if yes else None)

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT.name if self.theme == DARK.name else DARK.name

    def action_help(self) -> None:
        from tinyllm_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Keys and what each screen does", self.action_help)
        for mode in SCREENS_BY_MODE:
            yield SystemCommand(f"Go to {mode.title()}", f"Open the {mode.title()} screen",
                                lambda m=mode: self.switch_mode(m))
        yield SystemCommand("Toggle light/dark theme", "Switch between tinyllm-dark and "
                            "tinyllm-light", self.action_toggle_theme)
        commands = getattr(screen, "screen_commands", None)
        if commands:
            yield from commands()


def main(argv: list[str] | None = None) -> None:
    """tinyllm-tui: the terminal app (Chat, Train, Data, Models, Inspect). F1 for help, Ctrl+P for
    commands."""
    ap = argparse.ArgumentParser(prog="tinyllm-tui", description=main.__doc__)
    ap.add_argument("--model", "-m", help="model name or path for Chat and Inspect (default: "
                    "bundled shakespeare-char)")
    ap.add_argument("--backend", choices=("torch", "onnx"), help="default: onnx when the model has "
                    "model.onnx, else torch")
    ap.add_argument("--screen", choices=tuple(SCREENS_BY_MODE), default="chat",
                    help="screen to open first")
    ap.add_argument("--theme", metavar="NAME", help="dark, light or any Textual theme (nord, "
                    "dracula, ...; default: follow COLORFGBG)")
    ap.add_argument("--data", help="open this data file in the Data screen")
    ap.add_argument("--attach", help="follow this training run (directory or metrics.jsonl)")
    args = ap.parse_args(argv)
    if args.theme and args.theme not in theme_choices():
        ap.error(f"--theme {args.theme!r}: unknown theme; choose one of: "
                 f"{', '.join(theme_choices())}")
    screen = args.screen
    if args.data and screen == "chat":
        screen = "data"
    if args.attach and screen == "chat":
        screen = "train"
    if args.data and not Path(args.data).exists():
        ap.error(f"{args.data}: no such file")
    TinyLLMApp(model=args.model, backend=args.backend, screen=screen, theme=args.theme,
               data=args.data, attach=args.attach).run()


if __name__ == "__main__":
    main()
