"""One chat message: the user's prompt, a streamed reply, a classifier's answer, or an error."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tinyllm_tui.conversations import Message

BAR = 24  # width of a probability bar in cells


class MessageView(Static):
    """Renders a :class:`Message`; ``append`` adds streamed text to a reply."""

    def __init__(self, message: Message, **kw):
        super().__init__(classes=f"message {message.role}", **kw)
        self.message = message
        self.streaming = False
        self.pending = False     # a prompt waiting for the model to load

    def on_mount(self) -> None:
        self.border_title = {"user": "you", "assistant": "model", "error": "error"}.get(
            self.message.role, self.message.role)
        self.refresh_view()

    def append(self, text: str) -> None:
        self.message.content += text
        self.refresh_view()

    def refresh_view(self) -> None:
        m = self.message
        if m.probs:
            self.update(probability_table(m.probs))
            return
        body = Text(m.content)
        if self.pending:
            body.append("  (waiting for the model to load; sent when it is ready)",
                        style="italic dim")
        if self.streaming:
            body.append("▌", style="reverse")
        if m.cancelled:
            body.append("  [stopped]", style="italic dim")
        if m.role == "assistant" and not m.content and not self.streaming and not m.cancelled:
            body = Text("(no text: the model ended at once)", style="italic dim")
        self.update(body)


def probability_table(probs: dict[str, float]) -> Group:
    """The top label in bold, then one bar per label, most likely first."""
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    top, p = ranked[0]
    table = Table.grid(padding=(0, 1))
    for label, prob in ranked:
        n = round(prob * BAR)
        table.add_row(Text(label, style="bold" if label == top else ""),
                      Text("█" * n + "░" * (BAR - n)), Text(f"{prob:6.1%}"))
    return Group(Text.assemble(("label: ", "dim"), (top, "bold"), (f"  ({p:.1%})", "dim")), table)
