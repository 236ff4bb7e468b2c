"""A PNG picture of a run's loss curves (matplotlib, Agg backend, imported only when asked)."""
from __future__ import annotations

from pathlib import Path

from tinyllm.atomic import atomic_path
from tinyllm_tui.run_log import RunState


def write_loss_png(state: RunState, path: str | Path, title: str = "") -> Path:
    """Train loss per step (and its eval points) and validation loss against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not state.train and not state.val:
        raise ValueError("no loss points yet")
    fig = Figure(figsize=(8, 4.5), dpi=120)
    ax = fig.add_subplot()
    if state.train:
        ax.plot(*zip(*state.train), label="train loss (per step)", color="#5f87af", lw=1, alpha=0.8)
    if state.train_eval:
        ax.plot(*zip(*state.train_eval), "o-", label="train loss (eval)", color="#005fd7", ms=3)
    if state.val:
        ax.plot(*zip(*state.val), "o-", label="validation loss", color="#d75f00", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
