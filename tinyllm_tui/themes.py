"""Two themes with the same hues, one for dark and one for light terminals.

Textual paints its own background, so either reads well anywhere; the default follows the terminal
(``COLORFGBG``, set by many terminals and by tmux) unless ``--theme`` or ``$TINYLLM_THEME`` says
otherwise. Ctrl+T toggles between them.
"""
from __future__ import annotations

import os

from textual.theme import Theme

DARK = Theme(
    name="tinyllm-dark",
    primary="#5fafff",
    secondary="#87d7af",
    accent="#ffaf5f",
    warning="#ffd75f",
    error="#ff6b6b",
    success="#5fd787",
    foreground="#e4e4e4",
    background="#1c1c1c",
    surface="#262626",
    panel="#303a46",
    dark=True,
)

LIGHT = Theme(
    name="tinyllm-light",
    primary="#005fd7",
    secondary="#00875f",
    accent="#af5f00",
    warning="#875f00",
    error="#c01c28",
    success="#26734d",
    foreground="#1c1c1c",
    background="#fafafa",
    surface="#f0f0f0",
    panel="#dde6f0",
    dark=False,
)

THEMES = {"dark": DARK, "light": LIGHT}


def theme_choices() -> list[str]:
    """Every name ``--theme`` takes: dark, light, our two themes and Textual's own."""
    from textual.theme import BUILTIN_THEMES

    return [*THEMES, DARK.name, LIGHT.name, *BUILTIN_THEMES]


def default_theme(choice: str | None = None) -> str:
    """The theme name for ``choice`` ("dark"/"light"/a Textual theme), else guessed from the terminal."""
    choice = choice or os.environ.get("TINYLLM_THEME")
    if choice:
        return THEMES[choice].name if choice in THEMES else choice
    fgbg = os.environ.get("COLORFGBG", "")
    try:  # "15;0" = light text on dark; "0;15" = dark text on a light background
        bg = int(fgbg.split(";")[-1])
        return LIGHT.name if bg in (7, 15) else DARK.name
    except ValueError:
        return DARK.name
