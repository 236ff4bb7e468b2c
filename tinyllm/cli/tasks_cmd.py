"""`tinyllm finetune TASK`, `tinyllm eval MODEL` and `tinyllm tasks`: every registered task, one way.

The subcommands of `finetune` and the task options of `eval` come from the task registry (entry
points in group ``tinyllm.tasks``), so an installed plugin task works like a built-in one.
"""
from __future__ import annotations

import json

import click
from click.core import ParameterSource

from tinyllm import modeldir
from tinyllm.errors import UserError
from tinyllm.tasks import registry
from tinyllm.tasks.base import emit_report


class FinetuneGroup(click.Group):
    """Subcommands = the installed tasks (each task builds its own command)."""

    def list_commands(self, ctx):
        return sorted(registry.tasks())

    def get_command(self, ctx, name):
        task = registry.tasks().get(name)
        return task.finetune_command() if task is not None else None

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            registry.get(name)  # raises UnknownTask naming the installed tasks (exit 2)
        return super().resolve_command(ctx, args)


@click.group(cls=FinetuneGroup)
def finetune():
    """Fine-tune a model for a task: classify, instruct, lm or any installed plugin task.

    \b
    Examples:
      tinyllm finetune classify --data tinyllm/bundled/data/SMSSpamCollection.tsv \\
          --balance undersample --out models/spam
      tinyllm finetune classify --data reviews.csv --model gpt2-small-dir --train-layers last-2 \\
          --lora-rank 8 --out models/reviews

    `tinyllm tasks` lists the installed tasks; `tinyllm finetune TASK --help` shows a task's options.
    """


class EvalCommand(click.Command):
    """`eval` with the union of every task's eval options (added when the command is first used)."""

    def get_params(self, ctx):
        if not getattr(self, "_task_params", False):
            self._task_params = True
            seen = {p.name for p in self.params}
            for task in registry.tasks().values():
                for opt in task.eval_options:
                    if opt.name not in seen:
                        seen.add(opt.name)
                        self.params.append(opt)
        return super().get_params(ctx)


def _eval(model, data, as_json, **options):
    """Score MODEL on a data file with its task's metrics (classify: accuracy, precision, recall,
    F1, confusion matrix; lm: loss and perplexity; instruct: responses and loss).

    \b
    Examples:
      tinyllm eval sms-spam --data tinyllm/bundled/models/sms-spam/test.jsonl
      tinyllm eval sms-spam --data tinyllm/bundled/data/SMSSpamCollection.tsv --json
    """
    ctx = click.get_current_context()
    info = modeldir.find(model)
    try:
        task = registry.get(info.task)
    except registry.UnknownTask as e:
        raise UserError(f"{info.path}: the model's task {info.task!r} is not available ({e})") from None
    own = {o.name for o in task.eval_options}
    for name in options:
        if name not in own and ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                                  ParameterSource.ENVIRONMENT):
            opt = next(p for p in ctx.command.params if p.name == name)
            raise UserError(f"{opt.opts[-1]} does not apply to {info.task} models "
                            f"(their options: {', '.join(o.opts[-1] for o in task.eval_options) or 'none'})")
    report = task.evaluate(model_dir=info.path, data=data,
                           **{k: v for k, v in options.items() if k in own})
    emit_report(task, report, as_json)


eval_cmd = EvalCommand(
    "eval", callback=_eval, help=_eval.__doc__,
    short_help="Score a model on a data file with its task's metrics.",
    params=[
        click.Argument(["model"]),
        click.Option(["--data"], required=True, type=click.Path(dir_okay=False),
                     help="Evaluation data file (the task's format)."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the report as JSON."),
    ])


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the tasks as JSON.")
def tasks(as_json):
    """List every fine-tuning task with the package it came from (built-ins and plugins)."""
    rows = []
    for name, e in registry.entries().items():
        d = e.task.describe() if e.task else {"name": name}
        rows.append({**d, "package": e.package, "version": e.version, "entry_point": e.value,
                     "status": "ok" if e.task else f"failed: {e.error}"})
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    from tinyllm.cli.models_cmd import print_table

    print_table([[r["name"], f"{r['package']} {r['version']}", r.get("head", "-"),
                  r.get("description", "") if r["status"] == "ok" else r["status"]] for r in rows],
                ["TASK", "PACKAGE", "HEAD", "DESCRIPTION"])
