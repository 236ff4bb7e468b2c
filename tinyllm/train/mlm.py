"""Masked-language-model pretraining of encoders (``tinyllm train --objective mlm``): the loss,
the evaluation (masked-token loss and accuracy) and a fill-in-the-blanks sample, for the Trainer.

The batches come from :class:`tinyllm.data.masking.MaskedBatches`; :func:`tinyllm.train.pretrain.train_lm`
wires them in place of next-token windows when the objective is ``mlm``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tinyllm.config import TrainConfig
from tinyllm.data.masking import masked_batch
from tinyllm.data.text import SlidingWindowDataset, eval_plans
from tinyllm.train import ddp


def mlm_loss(model, batch) -> torch.Tensor:
    """Mean cross-entropy over the masked positions of a batch ``(inputs, targets)``."""
    inputs, targets = batch
    return model.loss(inputs, targets)


def masked_scores(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(sum of losses, correct predictions, masked tokens) of one batch, as a float64 tensor."""
    logits = model(inputs).float()  # (B, T, vocab)
    chosen = targets != -100
    picked, want = logits[chosen], targets[chosen]
    loss = F.cross_entropy(picked, want, reduction="sum")
    correct = (picked.argmax(-1) == want).sum()
    return torch.stack([loss.double(), correct.double(), chosen.sum().double()])


def fill_mask_sample(model, tokenizer, inputs: torch.Tensor, targets: torch.Tensor
                     ) -> tuple[str, str]:
    """(the window with its chosen tokens shown as [MASK], the same with the model's guesses in
    their place) for the first row of an evaluation batch."""
    ids, tgt = inputs[:1], targets[0]
    guess = model(ids)[0].argmax(-1)
    shown, filled = [], []
    for i, (tok, t) in enumerate(zip(ids[0].tolist(), tgt.tolist())):
        if tok in (tokenizer.cls_id, tokenizer.sep_id):
            continue
        if t == -100:
            shown.append(tok)
            filled.append(tok)
        else:
            shown.append(tokenizer.mask_id)
            filled.append(int(guess[i]))
    return tokenizer.decode(shown), tokenizer.decode(filled)


def make_mlm_eval(splits: dict[str, SlidingWindowDataset], cfg: TrainConfig, tok,
                  vocab_size: int, device_of: Callable[[], torch.device]) -> Callable:
    """eval_fn(model) -> {"<split>_loss", "<split>_accuracy" (masked-token accuracy), "sample"}.

    Each split is scored on the same windows, masked the same way, at every evaluation; DDP ranks
    share the batches and sum their counts."""
    dist = ddp.info()
    split = dist.enabled and not cfg.fsdp
    plans = eval_plans(splits, cfg.eval_batches * cfg.batch_size)

    def eval_fn(model) -> dict:
        device = device_of()
        out: dict = {}
        first: dict[str, tuple] = {}
        for name, ds in splits.items():
            idx = plans[name]
            acc = torch.zeros(3, dtype=torch.float64, device=device)
            for b, start in enumerate(range(0, len(idx), cfg.batch_size)):
                if split and b % dist.world_size != dist.rank:
                    continue
                rng = np.random.default_rng([cfg.seed, 0xE7A1, b])  # the same masks every time
                x, y = (t.to(device) for t in masked_batch(ds, idx[start:start + cfg.batch_size],
                                                           tok, vocab_size, rng))
                acc += masked_scores(model, x, y)
                first.setdefault(name, (x, y))
            if split:
                ddp.all_reduce_sum(acc)
            out[f"{name}_loss"] = float(acc[0] / acc[2].clamp(min=1))
            out[f"{name}_accuracy"] = float(acc[1] / acc[2].clamp(min=1))
        shown = first.get("val") or first.get("train")
        if cfg.sample_tokens and shown is not None and (dist.is_main or cfg.fsdp):
            out["sample_prompt"], out["sample"] = fill_mask_sample(model, tok, *shown)
        return out

    return eval_fn


__all__ = ["mlm_loss", "make_mlm_eval", "masked_scores", "fill_mask_sample"]
