"""Loss against wall-clock minutes from a run's metrics.jsonl: a markdown table and a text plot.

    python benchmarks/_loss_curve.py runs/shakespeare             # table + plot
    python benchmarks/_loss_curve.py runs/shakespeare --at 5 --at 10 --json
    python benchmarks/_loss_curve.py runs/shakespeare --png docs/img/loss.png   # also a picture

Minutes are wall-clock time since the run's first ``start`` event (evaluations included), so a run
that was interrupted and resumed counts the pause too. ``--at M`` reports the last validation loss
measured at or before minute M (the final evaluation of a time-limited run counts for its budget).
(The leading underscore keeps benchmarks/run_all.py from running this helper.)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyllm.train.events import METRICS_FILE, read_metrics  # noqa: E402


def curve(run_dir: str | Path) -> tuple[list[dict], dict]:
    """(rows of eval points with their minute, the done event or {})."""
    evs = read_metrics(Path(run_dir) / METRICS_FILE)
    starts = [e for e in evs if e.get("event") == "start"]
    if not starts:
        raise SystemExit(f"error: {run_dir}/{METRICS_FILE} has no start event")
    t0 = starts[0]["time"]
    tokens_at: dict[int, int] = {e["step"]: e.get("tokens", 0) for e in evs if e.get("event") == "step"}
    rows = [{"minute": round((e["time"] - t0) / 60, 2), "step": e["step"],
             "tokens": tokens_at.get(e["step"], 0), "train_loss": round(e["train_loss"], 4),
             "val_loss": round(e["val_loss"], 4)}
            for e in evs if e.get("event") == "eval" and "val_loss" in e]
    done = next((e for e in reversed(evs) if e.get("event") == "done"), {})
    return rows, done


def loss_at(rows: list[dict], minute: float, done: dict, budget: float | None) -> float | None:
    """Last val loss measured by ``minute``; a time-limited run's final eval counts for its budget."""
    ok = [r for r in rows if r["minute"] <= minute]
    if budget and abs(minute - budget) < 1e-9 and done.get("reason") == "time" and rows:
        ok = rows
    return ok[-1]["val_loss"] if ok else None


def text_plot(rows: list[dict], width: int = 72, height: int = 18) -> str:
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.plot([r["minute"] for r in rows], [r["val_loss"] for r in rows], label="val loss", marker="dot")
    plt.plot([r["minute"] for r in rows], [r["train_loss"] for r in rows], label="train loss",
             marker="x")
    plt.xlabel("minutes")
    return re.sub(r"\x1b\[[0-9;]*m", "", plt.build())  # plain text (no colour codes)


def write_png(rows: list[dict], path: str, title: str) -> None:
    """Validation and train loss (at each evaluation) against minutes, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from tinyllm.atomic import atomic_path

    fig = Figure(figsize=(7, 4), dpi=110)
    ax = fig.add_subplot()
    minutes = [r["minute"] for r in rows]
    ax.plot(minutes, [r["train_loss"] for r in rows], "o-", ms=3, label="train loss", color="#5f87af")
    ax.plot(minutes, [r["val_loss"] for r in rows], "o-", ms=3, label="validation loss",
            color="#d75f00")
    ax.set_xlabel("minutes (wall clock, evaluations included)")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--at", type=float, action="append", default=None,
                    help="also report the val loss at this minute (repeatable)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--png", metavar="PATH", help="also draw the curves into this PNG file")
    ap.add_argument("--title", default=None, help="title of the PNG [the run directory's name]")
    args = ap.parse_args(argv)
    rows, done = curve(args.run_dir)
    if args.png and rows:
        write_png(rows, args.png, args.title or Path(args.run_dir).name)
    start = read_metrics(Path(args.run_dir) / METRICS_FILE)[0]
    budget = (start.get("train") or {}).get("max_time_minutes") or None
    at = {m: loss_at(rows, m, done, budget) for m in (args.at or [])}
    if args.json:
        print(json.dumps({"rows": rows, "at": {str(k): v for k, v in at.items()},
                          "done": {k: done.get(k) for k in ("reason", "step", "wall", "val_loss")}}))
        return
    print("| minute | step | tokens | train loss | val loss |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['minute']:.1f} | {r['step']} | {r['tokens'] / 1e6:.2f}M | {r['train_loss']:.3f} | "
              f"{r['val_loss']:.3f} |")
    for m, v in at.items():
        print(f"val loss at {m:g} min: {v if v is not None else 'n/a'}")
    if not args.no_plot and rows:
        print(text_plot(rows))


if __name__ == "__main__":
    main()
