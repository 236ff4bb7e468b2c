"""One option vocabulary across commands (docs/cli-options.md): the same flag means the same thing."""
from __future__ import annotations

import click
import pytest

from tinyllm.cli import main
from tinyllm.cli.tasks_cmd import eval_cmd, finetune_command, loaded_tasks

BUILT_IN = ("classify", "instruct", "lm")


def options(command: click.Command) -> dict[str, click.Option]:
    return {o.opts[-1] if o.opts[-1].startswith("--") else o.opts[0]: o
            for o in command.params if isinstance(o, click.Option)}


@pytest.mark.parametrize("task", BUILT_IN)
def test_every_finetune_command_has_the_shared_options(task):
    opts = options(finetune_command(loaded_tasks()[task]))
    for flag in ("--data", "--model", "--out", "--resume", "--overwrite", "--json", "--quiet"):
        assert flag in opts, (task, flag)
    assert opts["--overwrite"].is_flag and opts["--resume"].is_flag
    if "--epochs" in opts:                           # a fraction of an epoch everywhere
        assert opts["--epochs"].type.name == "float range" or opts["--epochs"].type is click.FLOAT
    for flag, opt in opts.items():
        assert opt.help, f"finetune {task} {flag} has no help text"
    model_help = opts["--model"].help
    assert "see the task" not in model_help
    assert ("required" in model_help) == (task in ("lm", "instruct"))
    assert opts["--model"].required == (task == "lm")


def test_shared_options_read_the_same_in_every_command():
    """--quiet/-q, --json, --backend, --seed: one spelling each wherever they appear."""
    commands = {name: main.get_command(None, name) for name in ("train", "generate", "chat",
                                                                 "classify", "tokenize", "inspect")}
    commands["eval"] = eval_cmd
    for name, cmd in commands.items():
        opts = options(cmd)
        assert "--quiet" in opts and "-q" in opts["--quiet"].opts, name
        if "--backend" in opts:
            assert list(opts["--backend"].type.choices) == ["torch", "onnx"], name
        if "--seed" in opts:
            assert opts["--seed"].help, name


def test_epochs_may_be_a_fraction(tmp_path):
    """finetune classify --epochs 0.5 trains half an epoch (it was an integer there only)."""
    from tinyllm.tasks.classify import ClassifyTask

    rows = "".join(f"{'spam' if i % 2 else 'ham'}\t{'win cash now' if i % 2 else 'see you'} {i}\n"
                   for i in range(40))
    data = tmp_path / "d.tsv"
    data.write_text(rows)
    report = ClassifyTask().finetune(data, tmp_path / "m", epochs=0.5, batch_size=4, vocab_size=300,
                                     model_overrides={"n_layer": 1, "n_head": 2, "n_embd": 16,
                                                      "context_length": 16})
    assert report["train"]["steps"] == 4                      # 28 training rows / 4 = 7 per epoch


def test_instruct_eval_reports_progress_for_the_loss_and_the_answers():
    from contextlib import contextmanager

    import torch

    from tinyllm.tasks.instruct import mean_loss

    shown = []

    @contextmanager
    def progress(total, description, start=0, unit="bytes"):
        shown.append([description, total, unit, 0])
        yield lambda n: shown[-1].__setitem__(3, shown[-1][3] + n)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, *a, **k):            # uniform odds over 5 tokens: loss log 5
            return torch.zeros(*x.shape, 5) + self.w

    from tinyllm.data.instruction import Example

    examples = [Example(ids=[1, 2, 3], prompt_len=1) for _ in range(19)]
    loss = mean_loss(Tiny(), examples, pad_id=0, max_len=8, mask_prompt=False, progress=progress)
    assert loss == pytest.approx(torch.log(torch.tensor(5.0)).item(), rel=1e-5)
    assert shown == [["loss", 19, "entries", 19]]
