"""tinyllm: build, train, fine-tune, chat with and serve small GPT models from a terminal.

Data goes to stdout, progress and logs to stderr. Exit codes: 0 success, 1 a failed run,
2 bad usage or bad input (one clear message naming the file and line).
"""
from __future__ import annotations

import importlib
import sys

import click

from tinyllm import __version__

# command name -> "module:attribute". Modules are imported only when their command runs (or for
# --help), so `tinyllm classify --backend onnx` never pays for importing torch.
COMMANDS: dict[str, str] = {
    "train": "tinyllm.cli.train_cmd:train",
    "generate": "tinyllm.cli.generate_cmd:generate",
    "chat": "tinyllm.cli.generate_cmd:chat",
    "tokenize": "tinyllm.cli.models_cmd:tokenize",
    "models": "tinyllm.cli.models_cmd:models",
    "info": "tinyllm.cli.models_cmd:info",
    "finetune": "tinyllm.cli.tasks_cmd:finetune",
    "eval": "tinyllm.cli.tasks_cmd:eval_cmd",
    "classify": "tinyllm.cli.classify_cmd:classify",
    "tasks": "tinyllm.cli.tasks_cmd:tasks",
    "import": "tinyllm.cli.import_cmd:import_cmd",
    "import-gpt2": "tinyllm.cli.import_cmd:import_gpt2",
    "embed": "tinyllm.cli.embed_cmd:embed",
    "export-hf": "tinyllm.cli.gpt2_cmd:export_hf",
    "export-onnx": "tinyllm.cli.onnx_cmd:export_onnx",
    "bench-train": "tinyllm.cli.bench_cmd:bench_train",
    "serve": "tinyllm.cli.serve_cmd:serve",
    "inspect": "tinyllm.cli.inspect_cmd:inspect",
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in modules imported on first use."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            ctx.fail(unknown_name_message("command", name, self.list_commands(ctx)))
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        from tinyllm.errors import RunFailed, UserError

        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except RunFailed as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            _quiet_broken_pipe()


def unknown_name_message(kind: str, name: str, known) -> str:
    """"No such command 'genrate'. Did you mean 'generate'?" (the closest names, by difflib)."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"No such {kind} {name!r}.{hint}"


def _quiet_broken_pipe() -> None:
    """Downstream closed the pipe (`| head`): leave quietly, without Python's 'Exception ignored'."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    sys.exit(0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinyllm")
def main() -> None:
    """tinyllm: build, train, fine-tune, chat with and serve small GPT models from a terminal.

    Data goes to stdout, progress and logs to stderr. Exit codes: 0 success, 1 a failed run,
    2 bad usage or bad input.
    """
