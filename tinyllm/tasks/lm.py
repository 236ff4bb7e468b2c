"""The ``lm`` task: next-token prediction on plain text.

Fine-tuning continues training a model on a new corpus through the pretraining code
(:mod:`tinyllm.train.pretrain`, the same as ``tinyllm train`` with ``init_from``); evaluation reports the
loss and perplexity over the whole text file in context-length windows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyllm.errors import UserError
from tinyllm.tasks.base import Option, Task, holds_run_lock


class LMTask(Task):
    name = "lm"
    description = "Language modelling: continue training on a text file; loss and perplexity"
    head = "lm"
    data_formats = ("txt",)
    metric_names = ("loss", "perplexity")
    model_help = "Model to continue training (path or name); required (from scratch: `tinyllm train`)."
    model_required = True
    finetune_options = (
        Option("--max-steps", int, 500, "Optimizer steps.", min=1, show_default=True),
        Option("--lr", float, 3e-4, "Peak learning rate.", show_default=True),
        Option("--batch-size", int, None, "Sequences per batch (default 16).", min=1),
        Option("--seq-len", int, 0, "Tokens per window (0: the model's context length).", min=0),
        Option("--resume", is_flag=True, help="Continue an interrupted run in --out."),
    )
    eval_options = (
        Option("--max-windows", int, None, "lm: score at most this many windows, spread over the file.",
               min=1),
    )

    @holds_run_lock
    def finetune(self, data, out, model=None, max_steps=500, lr=3e-4, batch_size=None, seq_len=0,
                 resume=False, overwrite=False, callbacks=(), progress=None, log=None,
                 **_: Any) -> dict[str, Any]:
        from tinyllm.config import TrainConfig
        from tinyllm.train.pretrain import train_lm
        from tinyllm.train.runconfig import RunConfig

        if not model:
            raise UserError("finetune lm needs --model (to train from scratch use `tinyllm train`)")
        cfg = TrainConfig(data=str(data), init_from=str(model), out=str(out), max_steps=max_steps,
                          lr=lr, min_lr=lr / 10, batch_size=batch_size or 16, seq_len=seq_len,
                          eval_every=min(200, max_steps))
        train_lm(RunConfig(name=Path(out).name, model={}, train=cfg, source="tinyllm finetune lm"),
                 resume=resume, overwrite=overwrite, callbacks=callbacks, progress=progress, log=log)
        report = self.evaluate(out, data, progress=progress, log=log)
        report["split"] = "whole file (train + validation)"
        return report

    def evaluate(self, model_dir, data, max_windows=None, batch_size: int = 8, progress=None,
                 log=None, **_: Any) -> dict[str, Any]:
        import numpy as np

        from tinyllm.checkpoint import load_model, load_tokenizer
        from tinyllm.data.text import SlidingWindowDataset, prepare_tokens
        from tinyllm.models.loss import mean_lm_loss, perplexity

        model = load_model(model_dir)
        tok = load_tokenizer(model_dir)
        tokens = prepare_tokens(data, tok, progress=progress, log=log)
        T = min(model.config.context_length, max(1, len(tokens) - 1))
        ds = SlidingWindowDataset(tokens, T, name=str(data))
        idx = np.arange(len(ds)) if not max_windows or max_windows >= len(ds) \
            else ds.eval_indices(max_windows)
        loss = mean_lm_loss(model, (ds.batch(idx[s:s + batch_size])
                                    for s in range(0, len(idx), batch_size)))
        return {"task": self.name, "model": str(Path(model_dir)), "data": str(data),
                "n": int(len(idx)), "tokens": int(len(idx)) * T,
                "metrics": {"loss": loss, "perplexity": perplexity(loss)}}

    def answer(self, engine, inputs: list[str]) -> list[str]:
        return ["".join(engine.generate(prompt)) for prompt in inputs]

    def format_report(self, report: dict[str, Any]) -> str:
        m = report["metrics"]
        return (f"{report['model']} on {report['data']}: {report['tokens']:,} tokens in "
                f"{report['n']} windows\nloss        {m['loss']:.4f}\nperplexity  {m['perplexity']:.2f}")
