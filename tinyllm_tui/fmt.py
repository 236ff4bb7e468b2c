"""Formatting for display: durations, paths and error messages (sizes and counts: tinyllm.units)."""
from __future__ import annotations

from pathlib import Path

from tinyllm import modeldir


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
