"""What every main screen shares: the header, a tab bar to move between screens, the footer."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Tab, Tabs

MODES = ("chat", "train", "data", "models", "inspect")


class TinyScreen(Screen):
    """A main screen; subclasses set ``MODE`` and implement ``compose_body``."""

    MODE = "chat"

    def compose(self) -> ComposeResult:
        yield Header()
        tabs = Tabs(*(Tab(f"{m.title()} F{i + 2}", id=f"tab-{m}") for i, m in enumerate(MODES)),
                    active=f"tab-{self.MODE}", id="nav")
        tabs.can_focus = False   # navigation is by mouse or F2-F6; Tab moves between inputs
        yield tabs
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_screen_resume(self) -> None:
        self.sub_title = self.MODE.title()
        tabs = self.query_one("#nav", Tabs)
        if tabs.active != f"tab-{self.MODE}":
            tabs.active = f"tab-{self.MODE}"

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        event.stop()
        mode = (event.tab.id or "").removeprefix("tab-")
        if mode in MODES and mode != self.MODE:
            # put our own tab back first: the tab bar of this screen always marks this screen
            event.tabs.active = f"tab-{self.MODE}"
            self.app.switch_mode(mode)

    def error(self, message: str) -> None:
        """Show an error without crashing: a red notification that stays a while."""
        self.app.notify(str(message), title="error", severity="error", timeout=8)
