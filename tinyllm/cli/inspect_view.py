"""Pictures of an :class:`tinyllm.engines.inspect.Inspection`: Rich renderables for the terminal
(``tinyllm inspect`` prints them, the TUI's Inspect screen shows them) and a matplotlib PNG.

Nothing here prints. Tokens are shown with their invisible characters made visible (``␣`` a space,
``⏎`` a newline, ``→`` a tab); colours are chosen to read on dark and light terminals alike.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.table import Table
from rich.text import Text

# dark purple to yellow (viridis's path), each an exact xterm-256 colour so that a 256-colour
# terminal (tmux's default) shows the same ramp: the attention weight (and the lens's probability)
RAMP = ("#5f005f", "#5f0087", "#005f87", "#008787", "#00af87",
        "#5faf5f", "#87d75f", "#afd75f", "#d7d700", "#ffff00")
SHADES = "·░▒▓█"   # the same scale without colour (output piped to a file)
# surprise (bits) -> a pastel background with black text: below 1, 2, 4, 8 bits, and above
SURPRISE = ((1.0, "#c8f0c8"), (2.0, "#e4f5c0"), (4.0, "#fff0b0"), (8.0, "#ffd0a0"),
            (math.inf, "#ffb0b0"))
UNSCORED = "#d0d0d0"   # the first token: nothing predicts it
LABEL_WIDTH = 8        # characters of a token label at most (cut with …)
MAX_COLUMN_LABEL = 4   # rows of a key's vertical label at most


def show_token(text: str) -> str:
    """A token with its invisible characters visible: ␣ space, ⏎ newline, → tab, ∅ empty."""
    if not text:
        return "∅"
    out = text.replace(" ", "␣").replace("\n", "⏎").replace("\r", "↵").replace("\t", "→")
    return "".join(c if c.isprintable() else "·" for c in out)


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def ramp(value: float) -> str:
    """The colour of a value in [0, 1]."""
    return RAMP[min(len(RAMP) - 1, max(0, int(value * len(RAMP))))]


def surprise_colour(b: float | None) -> str:
    if b is None:
        return UNSCORED
    return next(colour for limit, colour in SURPRISE if b < limit)


def window(total: int, size: int, focus: int | None = None, end_at_focus: bool = False) -> range:
    """``size`` consecutive positions of ``total`` (all when they fit) that hold ``focus`` (None:
    the last position); ``end_at_focus`` puts it at the right end, else in the middle."""
    size = max(1, min(size, total))
    if focus is None:
        return range(total - size, total)
    start = focus - size + 1 if end_at_focus else focus - size // 2
    start = max(0, min(start, total - size))
    return range(start, start + size)


# ---- attention ---------------------------------------------------------------------------------
def heatmap_layout(n_tokens: int, width: int, labels: Sequence[str]) -> tuple[int, int, int]:
    """(row label width, cell width, key columns that fit) for a heatmap ``width`` columns wide."""
    label_w = min(max((len(s) for s in labels), default=1), LABEL_WIDTH)
    prefix = len(str(max(n_tokens - 1, 0))) + 1 + label_w + 1
    cell = 2 if prefix + 2 * n_tokens <= width else 1
    return label_w, cell, max(1, (width - prefix) // cell)


def heatmap(weights: np.ndarray, tokens: Sequence[str], width: int = 80, causal: bool = True,
            rows: int | None = None, highlight: int | None = None, color: bool = True
            ) -> tuple[Text, range, range]:
    """Attention weights (T, T) as a terminal heatmap: one row per query, one column per key,
    token labels down the left and (vertically) along the top; colour grows with the weight.

    At most ``width`` columns and ``rows`` query rows (None: all) are drawn: a longer prompt shows
    a window of keys and of queries (around ``highlight``, the query marked ▶, else the last).
    Returns the text and the (queries, keys) windows drawn, so a caller can say what was cut.
    """
    T = weights.shape[0]
    labels = [show_token(t) for t in tokens]
    # written downwards, a word's leading space (␣ on every GPT-2 word) would be a row of noise
    tops = [s.lstrip("␣") or s for s in labels]
    label_w, cell, fit = heatmap_layout(T, width, labels)
    focus = highlight if highlight is not None else T - 1
    keys = window(T, fit, focus, end_at_focus=causal)
    queries = window(T, rows or T, focus, end_at_focus=False) if rows else range(T)
    if rows is None and len(keys) < T:   # no row limit: the queries that see the keys shown
        queries = keys
    idx_w = len(str(max(T - 1, 0)))
    prefix = idx_w + 1 + label_w + 1
    out = Text(no_wrap=True, overflow="crop")
    height = min(MAX_COLUMN_LABEL, max(len(tops[k]) for k in keys))
    for r in range(height):   # key labels, written downwards
        out.append(" " * prefix)
        for k in keys:
            ch = tops[k][r] if r < len(tops[k]) else " "
            out.append(ch.ljust(cell), style="bold" if k == highlight else "")
        out.append("\n")
    for q in queries:
        marked = q == highlight
        style = "reverse bold" if marked else ""
        out.append(f"{q:>{idx_w}}", style="dim" if not marked else style)
        out.append("▶" if marked else " ")
        out.append(cut(labels[q], label_w).rjust(label_w), style=style or "bold")
        out.append(" ")
        for k in keys:
            if causal and k > q:
                out.append(" " * cell)
                continue
            v = math.sqrt(max(0.0, float(weights[q, k])))
            if color:
                out.append(" " * cell, style=f"on {ramp(v)}")
            else:
                out.append(SHADES[min(len(SHADES) - 1, int(v * len(SHADES)))] * cell)
        out.append("\n")
    out.right_crop(1)   # the last newline (not rstrip: the last row's cells are coloured spaces)
    return out, queries, keys


def heatmap_legend(causal: bool, color: bool = True, short: bool = False) -> Text:
    """The colour scale; ``short`` for a narrow panel."""
    out = Text("0 " if short else "weight 0 ", style="dim")
    if color:
        for c in RAMP:
            out.append(" ", style=f"on {c}")
    else:
        out.append(SHADES)
    if short:
        out.append(" 1 (√weight)", style="dim")
        return out
    out.append(" 1  (colour ~ √weight", style="dim")
    out.append("; blank: a later token, never seen)" if causal else ")", style="dim")
    return out


def attention_title(inspection, layer: int, head: int | None) -> str:
    which = f"head {head}" if head is not None else f"mean of {inspection.n_head} heads"
    return f"attention, layer {layer} of 0-{inspection.n_layer - 1}, {which}"


def cut_note(shown: range, total: int, what: str = "tokens") -> str | None:
    """"showing tokens 12-63 of 64 (a wider terminal shows more)" when a window was drawn."""
    if len(shown) >= total:
        return None
    return f"showing {what} {shown.start}-{shown.stop - 1} of {total} (a wider terminal shows more)"


# ---- next-token odds ---------------------------------------------------------------------------
def token_strip(tokens: Sequence[dict], surprise: Sequence[float | None],
                selected: int | None = None, width: int | None = None) -> Text:
    """The tokens side by side, each on a background coloured by its surprise (green: expected,
    red: surprising); ``selected`` underlined and bold. A newline token ends its line, and with
    ``width`` lines break between tokens, never inside one."""
    out = Text()
    column = 0
    for i, (tok, b) in enumerate(zip(tokens, surprise)):
        style = f"#000000 on {surprise_colour(b)}"
        if i == selected:
            style += " bold underline reverse"
        shown = show_token(tok["text"])
        if width and column and column + len(shown) > width:
            out.append("\n")
            column = 0
        out.append(shown, style=style)
        column += len(shown)
        if "\n" in tok["text"]:
            out.append("\n")
            column = 0
    return out


def surprise_legend() -> Text:
    out = Text("surprise ", style="dim")
    low = 0
    for limit, colour in SURPRISE:
        name = f"<{limit:g}" if limit != math.inf else f"≥{low:g}"
        out.append(f" {name} ", style=f"#000000 on {colour}")
        low = limit
    out.append(" bits", style="dim")
    return out


def prob_bars(entries: Sequence[dict], width: int = 30, actual: int | None = None) -> Text:
    """One line per predicted token: its text, a bar and its probability; the token that actually
    follows (id ``actual``) marked ✓."""
    out = Text()
    label_w = min(max((len(show_token(e["text"])) for e in entries), default=1), LABEL_WIDTH)
    bar_w = max(4, width - label_w - 9)
    for e in entries:
        mark = "✓" if e["id"] == actual else " "
        n = e["prob"] * bar_w
        full = int(n)
        bar = "█" * full + (" ▏▎▍▌▋▊▉"[int((n - full) * 8)] if full < bar_w else "")
        out.append(f"{mark}{cut(show_token(e['text']), label_w):<{label_w}} ",
                   style="bold" if e["id"] == actual else "")
        out.append(f"{bar:<{bar_w}}", style="green" if e["id"] == actual else "cyan")
        out.append(f" {e['prob']:5.3f}\n")
    out.rstrip()
    return out


def position_summary(inspection, pos: int) -> Text:
    """One line about a position: its token and what the model made of the token that follows."""
    tok = inspection.tokens[pos]
    out = Text(f"#{pos} ", style="dim")
    out.append(show_token(tok["text"]), style="bold")
    out.append(f" (id {tok['id']})", style="dim")
    if pos < len(inspection.actual):
        a = inspection.actual[pos]
        follows = show_token(inspection.tokens[pos + 1]["text"])
        b = -math.log2(a["prob"]) if a["prob"] > 0 else math.inf
        out.append(f" → next is {follows}: p {a['prob']:.3f}, rank {a['rank']}, {b:.1f} bits")
    elif inspection.next:
        out.append(" → the last token: what comes next is unknown")
    return out


def next_table(inspection, top_k: int) -> Table:
    """Per position: the token, the one that follows with its probability, rank and surprise,
    and the model's top-k guesses."""
    t = Table(box=None, pad_edge=False, header_style="bold", title_justify="left",
              title="next-token odds: what the model expected after each token")
    for name, justify in (("#", "right"), ("token", "left"), ("id", "right"), ("next", "left"),
                          ("p", "right"), ("rank", "right"), ("bits", "right"),
                          (f"top {top_k}", "left")):
        t.add_column(name, justify=justify, no_wrap=name != f"top {top_k}")
    surprise = inspection.surprise()
    for i, tok in enumerate(inspection.tokens):
        cells = [str(i), cut(show_token(tok["text"]), 12), str(tok["id"])]
        if i < len(inspection.actual):
            a = inspection.actual[i]
            b = surprise[i + 1]
            cells += [Text(cut(show_token(inspection.tokens[i + 1]["text"]), 12),
                           style=f"#000000 on {surprise_colour(b)}"),
                      f"{a['prob']:.3f}", str(a["rank"]), f"{b:.1f}"]
        else:
            cells += ["", "", "", ""]
        guesses = Text()
        for e in inspection.next[i]:
            guesses.append(show_token(e["text"]), style="bold")
            guesses.append(f" {e['prob']:.2f}  ")
        cells.append(guesses)
        t.add_row(*cells)
    return t


# ---- the logit lens ----------------------------------------------------------------------------
def lens_grid(inspection, width: int = 80, color: bool = True) -> tuple[Text, range]:
    """The logit lens as layers (rows) x positions (columns): each cell the top token of that
    layer's residual stream, coloured by its probability; the last row is the model's output.
    Returns the text and the positions drawn (the last ones that fit ``width``)."""
    lens, tokens = inspection.logit_lens, inspection.tokens
    T = len(tokens)
    shown_all = [show_token(e["text"]) for row in lens for e in row] + \
                [show_token(t["text"]) for t in tokens]
    cell = min(max((len(s) for s in shown_all), default=1), 6) + 1
    head = 8
    cols = window(T, max(1, (width - head) // cell))
    out = Text(no_wrap=True, overflow="crop")
    out.append("input".ljust(head), style="dim")
    for p in cols:
        out.append(cut(show_token(tokens[p]["text"]), cell - 1).ljust(cell), style="bold")
    out.append("\n")
    for layer, row in enumerate(lens):
        out.append(f"layer {layer}".ljust(head)[:head], style="dim")
        for p in cols:
            e = row[p]
            text = cut(show_token(e["text"]), cell - 1).ljust(cell - 1)
            if color:
                bright = e["prob"] >= 0.5
                out.append(text, style=f"{'#000000' if bright else '#ffffff'} on {ramp(e['prob'])}")
                out.append(" ")
            else:
                out.append(text + " ")
        out.append("\n")
    out.rstrip()
    return out, cols


def lens_column(inspection, pos: int, width: int = 30) -> Text:
    """The logit lens at one position: per layer its top token, a bar and the probability."""
    out = Text()
    bar_w = max(4, width - 20)
    for layer, row in enumerate(inspection.logit_lens):
        e = row[pos]
        n = int(round(e["prob"] * bar_w))
        out.append(f"{layer:>2} ", style="dim")
        out.append(f"{cut(show_token(e['text']), LABEL_WIDTH):<{LABEL_WIDTH}} ", style="bold")
        out.append("█" * n + " " * (bar_w - n), style=f"{ramp(e['prob'])}")
        out.append(f" {e['prob']:5.3f}\n")
    out.rstrip()
    return out


# ---- a picture file ----------------------------------------------------------------------------
def write_png(inspection, layer: int, head: int | None, path: str | Path) -> Path:
    """The attention heatmap of ``layer`` / ``head`` (None: the mean) above a strip of each token's
    surprise in bits, as a PNG (matplotlib, Agg backend, imported only here)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from tinyllm.atomic import atomic_path

    w = inspection.weights(layer, head)
    T = w.shape[0]
    labels = [cut(show_token(t["text"]), 10) for t in inspection.tokens]
    step = max(1, math.ceil(T / 64))   # at most 64 tick labels per axis
    ticks = list(range(0, T, step))
    size = min(16.0, max(6.0, 0.18 * T + 2))
    fig = Figure(figsize=(size, size * 1.18), dpi=110)
    grid = fig.add_gridspec(2, 1, height_ratios=(T, max(2.0, T / 8)), hspace=0.35)
    ax = fig.add_subplot(grid[0])
    shown = np.where(np.triu(np.ones_like(w, dtype=bool), 1), np.nan, w) if inspection.causal else w
    im = ax.imshow(shown, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=7, family="monospace")
    ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=7, family="monospace")
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    ax.set_title(f"{inspection.model}: {attention_title(inspection, layer, head)}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    strip = fig.add_subplot(grid[1])
    surprise = inspection.surprise()
    values = [np.nan if b is None else min(b, 20.0) for b in surprise]
    if inspection.actual:
        strip.bar(range(T), values, color=[surprise_colour(b) for b in surprise],
                  edgecolor="#606060", linewidth=0.3)
        strip.set_ylabel("surprise (bits)")
        strip.set_title("surprise of each token given the ones before it (-log2 p)")
    else:
        strip.text(0.5, 0.5, f"no next-token odds for a {inspection.kind}", ha="center",
                   va="center", transform=strip.transAxes)
    strip.set_xlim(-0.5, T - 0.5)
    strip.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=7, family="monospace")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path
