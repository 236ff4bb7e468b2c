"""`tinyllm finetune TASK`, `tinyllm eval MODEL` and `tinyllm tasks`: every registered task, one way.

The subcommands of `finetune` and the task options of `eval` come from the task registry (entry
points in group ``tinyllm.tasks``), so an installed plugin task works like a built-in one.
"""
from __future__ import annotations

import json
from typing import Any

import click
from click.core import ParameterSource

from tinyllm import modeldir
from tinyllm.cli.notes import quiet_option, say, warn
from tinyllm.cli.task_options import click_option
from tinyllm.errors import UserError
from tinyllm.tasks import registry
from tinyllm.tasks.base import Task


def entries() -> dict[str, registry.TaskEntry]:
    """Every declared task; the registry's warnings (a broken plugin, a duplicate name) are printed
    once per process."""
    found = registry.entries()
    for message in registry.warnings():
        warn(message)
    return found


def loaded_tasks() -> dict[str, Task]:
    entries()
    return registry.tasks()


def get_task(name: str) -> Task:
    entries()
    return registry.get(name)


def emit_report(task: Task, report: dict[str, Any], as_json: bool) -> None:
    """Print a report to stdout: JSON with ``as_json``, else the task's human form."""
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        click.echo(task.format_report(report))


def for_people() -> dict[str, Any]:
    """What a task's finetune/evaluate gets to show its work: a progress bar for long reads, lines
    on stderr for notes and warnings (see Task.finetune)."""
    from tinyllm.cli.progress import progress_bar

    return {"progress": progress_bar, "log": say}


def finetune_command(task: Task) -> click.Command:
    """`tinyllm finetune NAME`: --data, --model, --out, --json plus the task's ``finetune_options``."""

    def run(data, model, out, overwrite, as_json, **options):
        from tinyllm import runlock
        from tinyllm.cli.progress import TrainProgress

        with runlock.acquire(out):  # for every task, plugins too: one writer per folder
            report = task.finetune(data=data, out=out, model=model, overwrite=overwrite,
                                   callbacks=[TrainProgress()], **for_people(), **options)
        emit_report(task, report, as_json)

    params = [
        click.Option(["--data"], required=True, type=click.Path(dir_okay=False),
                     help="Training data file."),
        click.Option(["--model"], default=None, required=task.model_required, metavar="M",
                     help=task.model_help),
        click.Option(["--out"], required=True, type=click.Path(file_okay=False),
                     help="Output model directory (new or empty, unless --overwrite or --resume)."),
        click.Option(["--overwrite"], is_flag=True,
                     help="Replace the model or run already in --out (its files are removed)."),
        *(click_option(o) for o in task.finetune_options),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the final report as JSON."),
    ]
    return quiet_option(click.Command(task.name, callback=run, params=params,
                         help=task.description or None, short_help=task.description or None))


class FinetuneGroup(click.Group):
    """Subcommands = the installed tasks (a command built from each task's options)."""

    def list_commands(self, ctx):
        return sorted(loaded_tasks())

    def get_command(self, ctx, name):
        task = loaded_tasks().get(name)
        return finetune_command(task) if task is not None else None

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            get_task(name)  # raises UnknownTask naming the installed tasks (exit 2)
        return super().resolve_command(ctx, args)


@click.group(cls=FinetuneGroup)
def finetune():
    """Fine-tune a model for a task: classify, instruct, lm or any installed plugin task.

    \b
    Examples:
      tinyllm finetune classify --data tinyllm/bundled/data/SMSSpamCollection.tsv \\
          --balance undersample --out models/spam
      tinyllm finetune classify --data reviews.csv --model models/gpt2 --train-layers last-2 \\
          --lora-rank 8 --out models/reviews

    `tinyllm tasks` lists the installed tasks; `tinyllm finetune TASK --help` shows a task's options.
    """


class EvalCommand(click.Command):
    """`eval` with the union of every task's eval options (added when the command is first used)."""

    def get_params(self, ctx):
        if not getattr(self, "_task_params", False):
            self._task_params = True
            seen = {p.name for p in self.params}
            for task in loaded_tasks().values():
                for opt in task.eval_options:
                    if opt.name not in seen:
                        seen.add(opt.name)
                        self.params.append(click_option(opt))
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
        task = get_task(info.task)
    except registry.UnknownTask as e:
        raise UserError(f"{info.path}: the model's task {info.task!r} is not available ({e})") from None
    own = {o.name for o in task.eval_options}
    for name in options:
        if name not in own and ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                                  ParameterSource.ENVIRONMENT):
            opt = next(p for p in ctx.command.params if p.name == name)
            raise UserError(f"{opt.opts[-1]} does not apply to {info.task} models "
                            f"(their options: {', '.join(o.flag for o in task.eval_options) or 'none'})")
    report = task.evaluate(model_dir=info.path, data=data, **for_people(),
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
eval_cmd = quiet_option(eval_cmd)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the tasks as JSON.")
def tasks(as_json):
    """List every fine-tuning task with the package it came from (built-ins and plugins)."""
    rows = []
    for name, e in entries().items():
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
