"""`tinyllm inspect`: look inside a model on a prompt (tokens, next-token odds, attention, the
logit lens), as terminal pictures, a PNG or JSON."""
from __future__ import annotations

import json
import sys

import click

from tinyllm.cli.notes import note, quiet_option, warn
from tinyllm.errors import UserError


def check_range(option: str, value: int | None, count: int, what: str, model: str) -> None:
    """``--layer 7`` on a 4-layer model: an error naming the valid range (exit 2)."""
    if value is not None and not 0 <= value < count:
        raise UserError(f"{option} {value} is out of range: {model} has {count} {what}, "
                        f"numbered 0 to {count - 1}")


@click.command()
@click.option("--model", "-m", "model", default=None, metavar="M",
              help="Model directory or name (default: the bundled shakespeare-char).")
@click.option("--layer", "-l", type=int, default=None, metavar="L",
              help="Layer whose attention is drawn, from 0 (default: the last).")
@click.option("--head", type=int, default=None, metavar="H",
              help="Attention head drawn, from 0 (default: the mean over the heads).")
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Next tokens listed per position.")
@click.option("--png", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also draw the heatmap and a surprise strip into this PNG (matplotlib).")
@click.option("--json", "as_json", is_flag=True,
              help="Print everything as one JSON object instead of the pictures.")
@quiet_option
@click.argument("prompt")
def inspect(model, layer, head, top_k, png, as_json, prompt):
    """Look inside a model on PROMPT (or stdin with "-"): its tokens, what it expected next at
    every position, its attention and the logit lens.

    For each token: its id and text, the model's top-k next tokens with probabilities, and the
    probability, rank and surprise (-log2 p, in bits) of the token that actually follows. The
    attention weights of one layer and head (or the mean over the heads) are drawn as a heatmap
    with the tokens along both axes (queries down, keys across; a prompt too long for the
    terminal shows its last tokens). The logit lens reads each layer's residual stream through
    the final norm and the LM head: the token that layer would predict, and its probability; the
    last layer's is the model's own prediction. A prompt longer than the context is cut to its
    last tokens; a classifier shows attention and its label probabilities only.

    --json prints {"tokens": [{"id", "text"}], "next": [[{"id", "text", "prob"}] per position],
    "actual": [{"prob", "rank"}] per position but the last, "attention": [layer][head][query][key],
    "logit_lens": [layer][position] -> {"id", "text", "prob"}}.

    \b
    Examples:
      tinyllm inspect "ROMEO:"
      tinyllm inspect --layer 0 --head 2 "To be, or not to be"
      tinyllm inspect --model gpt2 --png attention.png "The capital of France is"
      tinyllm inspect --json "O Romeo" | jq '.actual'
    """
    from tinyllm.cli.generate_cmd import provide
    from tinyllm.engines.inspect import open_inspector

    if prompt == "-":
        from tinyllm.data.files import read_stdin

        prompt = read_stdin(sys.stdin.buffer).removesuffix("\n")
    if not prompt:
        raise UserError("nothing to inspect: the prompt is empty")
    inspector = open_inspector(provide(model))
    check_range("--layer", layer, inspector.n_layer, "layers", inspector.name)
    check_range("--head", head, inspector.n_head, "heads", inspector.name)
    result = inspector.inspect(prompt, top_k=top_k)
    for message in result.notes:
        (warn if message.startswith("warning:") else note)(message)
    layer = inspector.n_layer - 1 if layer is None else layer
    if png:
        from tinyllm.cli.inspect_view import write_png

        note(f"wrote {write_png(result, layer, head, png)}")
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return
    show(result, inspector, layer, head, top_k)


def show(result, inspector, layer: int, head: int | None, top_k: int) -> None:
    """The report for people, on stdout: odds, labels or fill-mask; attention; the logit lens."""
    from rich.console import Console
    from rich.text import Text

    from tinyllm.cli import inspect_view as view

    console = Console(highlight=False)
    width, color = console.width, console.color_system is not None
    cfg = inspector.config
    console.print(Text(f"{result.model} ({result.kind}, {cfg.family}, {cfg.n_layer} layers x "
                       f"{cfg.n_head} heads, context {cfg.context_length}): "
                       f"{len(result.tokens)} tokens", style="bold"))
    if result.kind == "classifier":
        labels = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.labels.items(),
                                                             key=lambda kv: -kv[1]))
        console.print(f"labels: {labels}")
        console.print(Text("a classifier: attention only (its LM head was not trained to predict "
                           "text, so there are no next-token odds or logit lens)", style="dim"))
    elif result.next:
        console.print()
        console.print(view.next_table(result, top_k))
        console.print(view.surprise_legend())
    for m in result.fill_mask:
        guesses = "  ".join(f"{view.show_token(e['text'])} {e['prob']:.3f}"
                            for e in m["predictions"])
        console.print(f"[MASK] at #{m['position']}: {guesses}", markup=False)
    console.print()
    console.print(Text(view.attention_title(result, layer, head), style="bold"))
    picture, queries, keys = view.heatmap(result.weights(layer, head),
                                          [t["text"] for t in result.tokens], width=width,
                                          causal=result.causal, color=color)
    console.print(picture)
    console.print(view.heatmap_legend(result.causal, color))
    cut = view.cut_note(keys, len(result.tokens))
    if cut:
        console.print(Text(cut, style="dim"))
    if result.logit_lens:
        console.print()
        console.print(Text("logit lens: each layer's top next token (colour: probability; last = "
                           "output)", style="bold"))
        grid, cols = view.lens_grid(result, width=width, color=color)
        console.print(grid)
        cut = view.cut_note(cols, len(result.tokens), "positions")
        if cut:
            console.print(Text(cut, style="dim"))
