"""Formatting for display: sizes, counts, durations, paths and error messages."""
from __future__ import annotations

from pathlib import Path

from tinyllm import modeldir


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def human_count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def pretty_path(p: str | Path) -> str:
    """``$TINYLLM_HOME/...``, ``(bundled)/...`` or ``~/...`` when the path is under one of them."""
    p = Path(p)
    for prefix, root in (("$TINYLLM_HOME", modeldir.tinyllm_home()),
                         ("(bundled)", modeldir.BUNDLED_MODELS), ("~", Path.home())):
        try:
            return f"{prefix}/{p.resolve().relative_to(root.resolve())}"
        except (ValueError, OSError):
            continue
    return str(p)


def describe_error(e: BaseException) -> str:
    """A user error's own message; anything else with its type, so it can be reported."""
    from tinyllm.errors import UserError

    return str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
