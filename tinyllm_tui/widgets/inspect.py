"""The Inspect screen's views of an :class:`tinyllm.engines.inspect.Inspection`: the token strip
(coloured by surprise, one token selected), the attention heatmap (redrawn to fit its size), the
next-token bars and the logit-lens column. The pictures themselves are
:mod:`tinyllm.cli.inspect_view`'s, the same ones ``tinyllm inspect`` prints."""
from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Static

from tinyllm.cli import inspect_view as view


class TokenStrip(Static, can_focus=True):
    """The prompt's tokens side by side, coloured by surprise; ←/→ move the selection (the
    screen's ``move`` action), [ and ] change the head, Home/End jump."""

    BINDINGS = [
        Binding("left,h", "screen.move(-1)", "Token", key_display="←→"),
        Binding("right,l", "screen.move(1)", "Token", show=False),
        Binding("home", "screen.move_to(0)", "First", show=False),
        Binding("end", "screen.move_to(-1)", "Last", show=False),
        Binding("left_square_bracket", "screen.head(-1)", "Head", key_display="[ ]"),
        Binding("right_square_bracket", "screen.head(1)", "Head", show=False),
        Binding("m", "screen.mean", "Mean", show=False),
    ]

    def show(self, inspection, selected: int) -> None:
        strip = view.token_strip(inspection.tokens, inspection.surprise(), selected,
                                 width=self.content_size.width or None)
        self.update(strip)


class Heatmap(Widget):
    """The attention of one layer and head (or the mean) as a heatmap that fits the widget:
    a window of keys and queries around the selected token when the prompt is larger."""

    DEFAULT_CSS = "Heatmap { height: 1fr; text-wrap: nowrap; text-overflow: clip; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.inspection = None
        self.shown_layer, self.shown_head, self.selected = 0, None, 0

    def show(self, inspection, layer: int, head: int | None, position: int) -> None:
        self.inspection, self.shown_layer, self.shown_head, self.selected = inspection, layer, head, position
        self.refresh()

    def render(self) -> Text:
        r = self.inspection
        if r is None:
            return Text("")
        width, height = self.content_size.width, self.content_size.height
        tokens = [t["text"] for t in r.tokens]
        T = len(tokens)
        labels = [view.show_token(t) for t in tokens]
        label_rows = min(view.MAX_COLUMN_LABEL, max(len(s) for s in labels))
        rows = max(1, height - label_rows - 2)          # a line for the cut note, one for the legend
        picture, queries, keys = view.heatmap(r.weights(self.shown_layer, self.shown_head), tokens,
                                              width=max(8, width), causal=r.causal, rows=rows,
                                              highlight=self.selected)
        out = Text(no_wrap=True, overflow="crop")
        cut = [f"keys {keys.start}-{keys.stop - 1}" if len(keys) < T else "",
               f"queries {queries.start}-{queries.stop - 1}" if len(queries) < T else ""]
        if any(cut):
            out.append(f"{', '.join(c for c in cut if c)} of {T}\n", style="dim")
        out.append_text(picture)
        out.append("\n")
        out.append_text(view.heatmap_legend(r.causal, short=width < 70))
        return out


class NextBars(Static):
    """What the model expected after the selected token (top-k bars; the token that follows
    marked ✓), an encoder's fill-mask predictions, or a classifier's labels."""

    def show(self, inspection, position: int) -> None:
        r = self.inspection = inspection
        width = max(12, self.content_size.width or 30)
        if r.labels is not None:
            entries = [{"id": i, "text": label, "prob": p}
                       for i, (label, p) in enumerate(sorted(r.labels.items(),
                                                             key=lambda kv: -kv[1]))]
            out = Text("a classifier: its labels (no next-token odds)\n", style="dim")
            out.append_text(view.prob_bars(entries, width))
            self.update(out)
            return
        if r.next:
            follows = r.tokens[position + 1]["id"] if position + 1 < len(r.tokens) else None
            self.update(view.prob_bars(r.next[position], width, actual=follows))
            return
        masks = {m["position"]: m for m in r.fill_mask}
        if position in masks:
            self.update(view.prob_bars(masks[position]["predictions"], width))
        elif masks:
            self.update(Text("fill-mask: select a [MASK] token (at "
                             f"{', '.join(str(p) for p in masks)})", style="dim"))
        else:
            self.update(Text("no [MASK] in the prompt: put one where a word should be predicted",
                             style="dim"))


class LensColumn(Static):
    """The logit lens at the selected position: each layer's top token and its probability."""

    def show(self, inspection, position: int) -> None:
        if not inspection.logit_lens:
            self.update(Text(f"no logit lens for a {inspection.kind}", style="dim"))
            return
        width = max(20, self.content_size.width or 30)
        self.update(view.lens_column(inspection, position, width))
