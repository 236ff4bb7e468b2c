"""The Task interface: one fine-tuning task, built in or from a plugin.

A task says how to read its data, which head the model needs, its loss, its metrics, how model
outputs become answers, and what the CLI and TUI show for it. ``tinyllm finetune NAME``,
``tinyllm eval DIR`` and ``tinyllm tasks`` work for every registered task the same way.

A task holds no CLI code: its extra options are plain :class:`Option` values that ``tinyllm.cli``
turns into flags, and it never prints (progress and notes leave through the ``log=``,
``progress=`` and ``callbacks=`` arguments the CLI passes; by default nothing is shown).

This module imports no torch (``tinyllm tasks`` lists tasks without loading it); tasks import torch
inside the methods that train or run models.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tinyllm import runlock
from tinyllm.errors import DataError

OPTION_TYPES = (str, int, float, "file")
# keyword arguments the commands pass themselves: no option may be called one of these
RESERVED_NAMES = frozenset({"data", "model", "out", "as_json", "model_dir", "log", "progress",
                            "callbacks", "overwrite"})


def _not_the_model(out, model) -> None:
    """Refuse ``--out`` naming the model being fine-tuned: preparing ``out`` would remove the very
    files it starts from."""
    if not model:
        return
    from tinyllm import modeldir
    from tinyllm.errors import UserError

    try:
        src = modeldir.resolve(model)
    except UserError:
        return  # the task reports a missing model itself
    if Path(src).resolve() == Path(out).resolve():
        raise UserError(f"{out}: is the model being fine-tuned (--model); choose another --out")


def holds_run_lock(finetune: Callable) -> Callable:
    """Decorate a task's ``finetune(self, data, out, ...)``: it runs holding ``out``'s run lock
    (:mod:`tinyllm.runlock`), so a second writer of the folder is refused, naming this one. Inside,
    call :func:`tinyllm.train.pretrain.prepare_out` before writing anything."""

    @functools.wraps(finetune)
    def wrapper(self, data, out, *args, **kwargs):
        _not_the_model(out, kwargs.get("model", args[0] if args else None))
        with runlock.acquire(out):
            return finetune(self, data, out, *args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class Option:
    """One extra option of ``tinyllm finetune NAME`` or ``tinyllm eval DIR``, as plain data.

    The CLI makes it a flag; the task receives the value as the keyword argument :attr:`name`
    (``--max-steps`` -> ``max_steps``). A bad value on the command line is a usage error (exit 2)
    before the task runs.
    """

    flag: str                         # the flag, e.g. "--max-steps"
    type: Any = str                   # str, int, float, or "file" (a path that is not a directory)
    default: Any = None               # the value when the flag is not given
    help: str = ""                    # one sentence for --help
    choices: tuple[str, ...] = ()     # the only values allowed (shown as [a|b] in --help)
    min: float | None = None          # smallest number allowed (int and float options)
    max: float | None = None          # largest number allowed
    min_open: bool = False            # min itself is not allowed (x > min)
    max_open: bool = False            # max itself is not allowed (x < max)
    is_flag: bool = False             # a switch without a value: True when given, else False
    metavar: str | None = None        # the value's name in --help (default: from the type)
    show_default: bool = False        # say the default in --help
    parse: Callable[[str], Any] | None = None  # text -> value; raises ValueError("why") if bad

    def __post_init__(self):
        if not self.flag.startswith("--") or len(self.flag) < 3:
            raise ValueError(f"option flag {self.flag!r}: expected a long flag like '--max-steps'")
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.flag}: type {self.type!r} is not one of str, int, "
                             "float, 'file'")
        if self.name in RESERVED_NAMES:
            raise ValueError(f"option {self.flag}: the name {self.name!r} is the command's own")
        if (self.min is not None or self.max is not None) and self.type not in (int, float):
            raise ValueError(f"option {self.flag}: min/max need type int or float")
        if self.is_flag and self.default not in (None, False):
            raise ValueError(f"option {self.flag}: a flag is False unless given (no default)")
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.is_flag:
            object.__setattr__(self, "default", False)

    @property
    def name(self) -> str:
        """The keyword argument the task receives: ``--max-new-tokens`` -> ``max_new_tokens``."""
        return self.flag.lstrip("-").replace("-", "_").lower()


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
    model_help: str = "Model to start from (path or name)."  # --help of `finetune NAME --model`
    model_required: bool = False            # `finetune NAME` needs --model
    finetune_options: tuple[Option, ...] = ()  # extra options of `tinyllm finetune NAME`
    eval_options: tuple[Option, ...] = ()      # extra options of `tinyllm eval DIR` for its models

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

        ``out`` is written under its run lock (decorate with :func:`holds_run_lock`) and must be
        empty unless resuming or ``overwrite`` (:func:`tinyllm.train.pretrain.prepare_out`).
        ``options`` are the ``finetune_options`` values plus ``overwrite`` (``--overwrite``: replace
        a model in ``out``) and what the CLI passes for people:
        ``callbacks`` (Trainer event callbacks: the progress bar), ``progress`` (a bar for long
        reads, as :func:`tinyllm.data.text.prepare_tokens` takes) and ``log`` (notes and warnings,
        one line each). Returns a report like :meth:`evaluate`'s (metrics of the held-out split)
        plus training facts.
        """
        raise NotImplementedError(f"task {self.name!r} cannot be fine-tuned")

    # ---- evaluation and answers ---------------------------------------------------------------
    def evaluate(self, model_dir: str | Path, data: str | Path, **options: Any) -> dict[str, Any]:
        """Score a model directory on ``data``: ``{"task", "model", "data", "n", "metrics": {...}}``.

        ``options`` are the ``eval_options`` values plus ``progress`` and ``log`` (as for
        :meth:`finetune`)."""
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
            "finetune_options": [o.flag for o in self.finetune_options],
            "eval_options": [o.flag for o in self.eval_options],
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

