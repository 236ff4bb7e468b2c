"""The Task interface: one fine-tuning task, built in or from a plugin.

A task says how to read its data, which head the model needs, its loss, its metrics, how model
outputs become answers, and what the CLI and TUI show for it. ``tinyllm finetune NAME``,
``tinyllm eval DIR`` and ``tinyllm tasks`` work for every registered task the same way.

This module imports no torch (``tinyllm tasks`` lists tasks without loading it); tasks import torch
inside the methods that train or run models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tinyllm.errors import DataError




class Task:
    """Subclass, set the class attributes, override what the task does differently.

    The entry point (group ``tinyllm.tasks``) names the subclass (or an instance); the registry
    instantiates a class with no arguments.
    """

    name: str = ""                          # registry key: `tinyllm finetune NAME`, `task: NAME` in config.yaml
    description: str = ""                   # one line for `tinyllm tasks` and the TUI
    head: str = "lm"                        # head the model needs: "lm" (next-token) or "classify" (n_classes)
    data_formats: tuple[str, ...] = ()      # file kinds read_data accepts: "tsv", "csv", "jsonl", "json", "txt"
    metric_names: tuple[str, ...] = ()      # keys of the report's "metrics", in display order
    finetune_options: tuple[click.Option, ...] = ()  # extra options of `tinyllm finetune NAME`
    eval_options: tuple[click.Option, ...] = ()      # extra options of `tinyllm eval DIR` for its models

    # ---- data ---------------------------------------------------------------------------------
    def read_data(self, path: str | Path, **options: Any) -> list[Any]:
        """The examples in ``path``. Bad data raises :class:`DataError` naming the file and line."""
        raise NotImplementedError(f"task {self.name!r} does not read data")

    # ---- model and training -------------------------------------------------------------------
    def loss(self, model, batch):
        """The training loss (a torch scalar) of one batch, for the training loop."""
        raise NotImplementedError(f"task {self.name!r} has no loss")

    def finetune(self, data: str | Path, out: str | Path, model: str | None = None,
                 **options: Any) -> dict[str, Any]:
        """Train on ``data`` (starting from ``model``), save a model directory at ``out``.

        Returns a report like :meth:`evaluate`'s (metrics of the held-out split) plus training facts.
        """
        raise NotImplementedError(f"task {self.name!r} cannot be fine-tuned")

    # ---- evaluation and answers ---------------------------------------------------------------
    def evaluate(self, model_dir: str | Path, data: str | Path, **options: Any) -> dict[str, Any]:
        """Score a model directory on ``data``: ``{"task", "model", "data", "n", "metrics": {...}}``."""
        raise NotImplementedError(f"task {self.name!r} cannot evaluate")

    def metrics(self, predictions: list[Any], targets: list[Any]) -> dict[str, Any]:
        """Metrics from predictions and targets (keys as in ``metric_names``)."""
        raise NotImplementedError(f"task {self.name!r} has no metrics")

    def answer(self, engine, inputs: list[str]) -> list[Any]:
        """Turn model outputs into answers: labels for classifiers, response text for instruct."""
        raise NotImplementedError(f"task {self.name!r} gives no answers")

    def format_report(self, report: dict[str, Any]) -> str:
        """The human form of a finetune/eval report (stdout without --json)."""
        lines = [f"{self.name}: {report.get('model', '')} on {report.get('data', '')} "
                 f"({report.get('n', '?')} examples)"]
        for k, v in (report.get("metrics") or {}).items():
            if isinstance(v, float):
                lines.append(f"  {k:<16} {v:.4f}")
            elif isinstance(v, (int, str)):
                lines.append(f"  {k:<16} {v}")
        return "\n".join(lines)

    # ---- what the CLI and TUI show ------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Plain data about the task for `tinyllm tasks --json` and the TUI."""
        return {
            "name": self.name, "description": self.description, "head": self.head,
            "data_formats": list(self.data_formats), "metrics": list(self.metric_names),
            "finetune_options": [o.opts[-1] for o in self.finetune_options],
            "eval_options": [o.opts[-1] for o in self.eval_options],
        }

    def finetune_command(self) -> click.Command:
        """`tinyllm finetune NAME`: --data, --model, --out, --json plus ``finetune_options``.

        Override to give the task a hand-written click command instead.
        """
        task = self

        def run(data, model, out, as_json, **options):
            report = task.finetune(data=data, out=out, model=model, **options)
            emit_report(task, report, as_json)

        params = [
            click.Option(["--data"], required=True, type=click.Path(dir_okay=False),
                         help="Training data file."),
            click.Option(["--model"], default=None,
                         help="Model to start from (path or name); see the task for the default."),
            click.Option(["--out"], required=True, type=click.Path(file_okay=False),
                         help="Output model directory."),
            *self.finetune_options,
            click.Option(["--json", "as_json"], is_flag=True, help="Print the final report as JSON."),
        ]
        return click.Command(self.name, callback=run, params=params,
                             help=self.description or None, short_help=self.description or None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def emit_report(task: Task, report: dict[str, Any], as_json: bool) -> None:
    """Print a report to stdout: JSON with ``as_json``, else the task's human form."""
    import json

    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        click.echo(task.format_report(report))
