"""The app shell: start-up without torch, screen switching, help, command palette, themes, CLI."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tinyllm_tui.app import TinyLLMApp, main
from tinyllm_tui.themes import DARK, LIGHT, default_theme

from tui_fakes import FakeEngine, wait_for


def test_startup_path_imports_no_torch():
    """The app module and the Chat screen load without torch (torch waits for the model worker)."""
    code = ("import sys; import tinyllm_tui.app, tinyllm_tui.screens.chat, tinyllm_tui.screens.data, "
            "tinyllm_tui.screens.models, tinyllm_tui.screens.train, tinyllm_tui.screens.inspect; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_function_keys_switch_screens_and_help_opens():
    async def scenario():
        app = TinyLLMApp(engine_factory=lambda m, b: FakeEngine(), theme="dark")
        async with app.run_test(size=(120, 34)) as pilot:
            for key, mode in (("f3", "train"), ("f4", "data"), ("f5", "models"), ("f6", "inspect"),
                              ("f2", "chat")):
                await pilot.press(key)
                await wait_for(pilot, lambda: app.current_mode == mode)
                assert app.screen.sub_title == mode.title()
            await pilot.press("f1")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.current_mode == "chat" and
                           type(app.screen).__name__ == "ChatScreen")
            # clicking a tab switches too
            await pilot.click("#tab-data")
            await wait_for(pilot, lambda: app.current_mode == "data")
    asyncio.run(scenario())


def test_command_palette_lists_screen_and_app_commands():
    async def scenario():
        app = TinyLLMApp(engine_factory=lambda m, b: FakeEngine(), theme="dark")
        async with app.run_test(size=(120, 34)) as pilot:
            await wait_for(pilot, lambda: app.screen.engine is not None)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for want in ("Help", "Go to Train", "Toggle light/dark theme",
                         "Chat: export as Markdown", "Chat: open conversation"):
                assert want in titles
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
            await pilot.press(*"go to models")
            await wait_for(pilot, lambda: "Go to Models" in highlighted_command(app))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.current_mode == "models")
    asyncio.run(scenario())


def highlighted_command(app) -> str:
    """The prompt of the command the palette has highlighted ("" while none is)."""
    from textual.command import CommandList

    found = app.screen.query(CommandList)
    if not found or found.first().highlighted is None:
        return ""
    option = found.first().get_option_at_index(found.first().highlighted)
    return str(option.prompt)


def test_theme_toggle_and_default_from_terminal(monkeypatch):
    monkeypatch.delenv("TINYLLM_THEME", raising=False)
    monkeypatch.setenv("COLORFGBG", "0;15")
    assert default_theme() == LIGHT.name
    monkeypatch.setenv("COLORFGBG", "15;0")
    assert default_theme() == DARK.name
    assert default_theme("light") == LIGHT.name

    async def scenario():
        app = TinyLLMApp(screen="models")
        async with app.run_test(size=(100, 30)) as pilot:
            assert app.theme == DARK.name
            await pilot.press("ctrl+t")
            assert app.theme == LIGHT.name
    asyncio.run(scenario())


def test_cli_rejects_a_missing_data_file(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--data", "no/such/file.tsv"])
    assert e.value.code == 2
    assert "no/such/file.tsv: no such file" in capsys.readouterr().err
