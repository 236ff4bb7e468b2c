"""Token views: a coloured tokenisation preview and a text bar chart of label counts."""
from __future__ import annotations

from collections import Counter

from rich.text import Text

# pastel backgrounds with black text: readable on light and dark themes alike
PALETTE = ("#ffd7d7", "#d7f5d7", "#d7e3ff", "#fff3c4", "#d7f5f5", "#f5d7f5")
MAX_PREVIEW_TOKENS = 1500


def token_preview(tokenizer, text: str, limit: int = MAX_PREVIEW_TOKENS) -> Text:
    """``text`` with each token on its own background colour; newlines shown as ⏎ then broken."""
    ids = tokenizer.encode(text)
    out = Text()
    out.append(f"{len(ids)} tokens, {len(text)} characters\n", style="dim")
    wordpiece = getattr(tokenizer, "name", "") == "wordpiece"
    for i, tok in enumerate(ids[:limit]):
        piece = tokenizer.token_bytes(tok).decode("utf-8", errors="replace")
        if wordpiece:  # BERT's pieces: "##ing" continues a word, the others start one
            piece = piece[2:] if piece.startswith("##") else (" " if i else "") + piece
        shown = piece.replace("\n", "⏎\n").replace("\t", "→")
        out.append(shown or "∅", style=f"#000000 on {PALETTE[i % len(PALETTE)]}")
    if len(ids) > limit:
        out.append(f"\n… {len(ids) - limit} more tokens", style="dim")
    return out


def label_bars(counts: Counter, width: int = 20, top: int = 20) -> Text:
    """One line per label: name, bar, count and share, most frequent first."""
    total = sum(counts.values()) or 1
    out = Text()
    items = counts.most_common(top)
    name_w = max((len(str(k)) for k, _ in items), default=5)
    for label, n in items:
        bar = round(width * n / items[0][1])
        out.append(f"{str(label):<{name_w}} ", style="bold")
        out.append("█" * bar + " " * (width - bar))
        out.append(f" {n:>7,} {n / total:6.1%}\n")
    if len(counts) > top:
        out.append(f"… and {len(counts) - top} more labels\n", style="dim")
    return out
