"""Modal dialogs: a yes/no confirmation and a list to pick a saved conversation from."""
from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList
from textual.widgets.option_list import Option

from tinyllm_tui.conversations import list_conversations


class ConfirmDialog(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True only for an explicit yes (Y or the button)."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, yes: str = "Delete"):
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConversationPicker(ModalScreen[str | None]):
    """Pick a saved conversation (newest first); dismisses with its file path or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Open a conversation (Enter), Esc to close", classes="dialog-question")
            options = [Option(f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(c.updated))}  "
                              f"{c.title or '(empty)'}  [{c.model}, {len(c.messages)} messages]",
                              id=str(c.path)) for c in list_conversations()]
            picker = OptionList(*options, id="conversation-list")
            if not options:
                picker.add_option(Option("no saved conversations yet", disabled=True))
            yield picker

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
