"""Inspecting a model on a prompt: its tokens, next-token odds, attention and the logit lens.

:class:`Inspector` opens a model directory on torch and :meth:`Inspector.inspect` returns an
:class:`Inspection` of one text: the tokens (id, text); per position the top-k next tokens with
their probabilities and the probability and rank of the token that actually follows (its
surprise, ``-log2 p`` bits); every layer's and head's attention weights; and the logit lens (each
layer's residual stream read through the final norm and the LM head: its top token and
probability). Encoders (BERT) give attention, the lens through their masked-LM head, and the
predictions for each ``[MASK]`` of the prompt (fill-mask); classifiers give attention and their
class probabilities only (their LM head was never trained to predict text).

The weights come from the explicit attention path of :mod:`tinyllm.models.inspect`; the model's
own forward is not changed. ``tinyllm inspect`` and the TUI's Inspect screen both use this module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinyllm import modeldir
from tinyllm.errors import UserError
from tinyllm.models.inspect import DECODER_FAMILIES, family, lens_top, trace
from tinyllm.units import human_bytes

ATTENTION_BUDGET = 2 * 1024 ** 3   # bytes of attention weights (L x nh x T x T float32) at most


@dataclass
class Inspection:
    """One text as the model sees it. Positions index the tokens; layers and heads count from 0."""
    model: str                         # the model's name
    kind: str                          # "decoder", "encoder" or "classifier"
    tokens: list[dict]                 # {"id", "text"} per position
    attention: np.ndarray              # (L, nh, T, T) float32: [layer][head][query][key]
    causal: bool                       # a decoder: weights above the diagonal are 0
    next: list[list[dict]] = field(default_factory=list)        # decoders: top-k {"id", "text",
                                                                # "prob"} per position
    actual: list[dict] = field(default_factory=list)            # decoders: {"prob", "rank"} of the
                                                                # token that follows, per position
                                                                # but the last (rank 1 = top)
    logit_lens: list[list[dict]] = field(default_factory=list)  # [layer][position] {"id", "text",
                                                                # "prob"}: the lens's top token
    fill_mask: list[dict] = field(default_factory=list)         # encoders: {"position",
                                                                # "predictions": top-k} per [MASK]
    labels: dict[str, float] | None = None   # classifiers: probability of each label
    cut: int = 0                       # tokens cut off the prompt (it was longer than the context)
    notes: list[str] = field(default_factory=list)   # what a person should be told (cut, kind)

    @property
    def n_layer(self) -> int:
        return int(self.attention.shape[0])

    @property
    def n_head(self) -> int:
        return int(self.attention.shape[1])

    def surprise(self) -> list[float | None]:
        """Per position, the surprise of that token in bits given the ones before it (-log2 p);
        None for the first token (nothing predicts it) and for models that do not predict."""
        if not self.actual:
            return [None] * len(self.tokens)
        return [None] + [bits(a["prob"]) for a in self.actual]

    def weights(self, layer: int, head: int | None = None) -> np.ndarray:
        """(T, T) attention weights of ``layer`` and ``head`` (None: the mean over the heads)."""
        w = self.attention[layer]
        return w.mean(axis=0) if head is None else w[head]

    def to_json(self) -> dict[str, Any]:
        """``{"tokens", "next", "actual", "attention", "logit_lens"}`` (plus "fill_mask" for
        encoders and "labels" for classifiers); attention rounded to 8 decimals."""
        out: dict[str, Any] = {
            "tokens": self.tokens, "next": self.next, "actual": self.actual,
            "attention": np.round(self.attention.astype(np.float64), 8).tolist(),
            "logit_lens": self.logit_lens,
        }
        if self.kind == "encoder":
            out["fill_mask"] = self.fill_mask
        if self.labels is not None:
            out["labels"] = self.labels
        return out


def bits(p: float) -> float:
    """Surprise in bits of an outcome of probability ``p``: -log2 p (inf for 0)."""
    return -math.log2(p) if p > 0 else math.inf


class Inspector:
    """A model opened for inspection (torch, eval mode); :meth:`inspect` any number of texts."""

    def __init__(self, info: modeldir.ModelInfo, device: str = "cpu"):
        from tinyllm.checkpoint import load_model, load_tokenizer

        self.info = info
        self.model = load_model(info.path, device=device)
        self.tokenizer = load_tokenizer(info.path)
        self.config = self.model.config
        self.causal = family(self.model) in DECODER_FAMILIES
        self.labels: list[str] | None = info.meta.get("labels")
        self.kind = ("classifier" if self.labels and getattr(self.model, "cls_head", None) is not None
                     else "decoder" if self.causal else "encoder")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def n_layer(self) -> int:
        return self.config.n_layer

    @property
    def n_head(self) -> int:
        return self.config.n_head

    @property
    def context_length(self) -> int:
        return self.config.context_length

    def token_text(self, token_id: int) -> str:
        """A token as text (undecodable bytes as U+FFFD; an id the tokenizer lacks as <id>)."""
        if token_id >= self.tokenizer.vocab_size:
            return f"<{token_id}>"
        try:
            return self.tokenizer.token_str(token_id)
        except Exception:   # a gap in the vocabulary
            return f"<{token_id}>"

    # ---- the input ----------------------------------------------------------------------------
    def prompt_ids(self, text: str) -> tuple[list[int], int, list[str]]:
        """(ids the model reads, tokens cut, notes) for ``text``: a decoder keeps the last
        ``context_length`` tokens of a longer text, an encoder the first (as it would classify)."""
        from tinyllm.tokenizer import unknown_warning

        if not text:
            raise UserError("nothing to inspect: the prompt is empty")
        tok = self.tokenizer
        ids = tok.prompt_ids(text)
        if not ids:
            raise UserError("nothing to inspect: the prompt has no tokens")
        notes = []
        unknown = unknown_warning(tok, tok.unknown(text))
        if unknown:
            notes.append(unknown)
        vocab = self.config.vocab_size
        if max(ids) >= vocab:
            raise UserError(f"{self.info.path}: the prompt has token id {max(ids)}, beyond the "
                            f"model's vocabulary of {vocab} ids")
        n, C = len(ids), self.context_length
        if n > C:
            if self.causal:
                ids, where = ids[-C:], "last"
            else:
                truncate = getattr(tok, "truncate", None)
                ids, where = (truncate(ids, C) if truncate else ids[:C]), "first"
            notes.append(f"warning: the prompt is {n:,} tokens, longer than {self.name}'s {C}-token "
                         f"context; only its {where} {C} are inspected ({n - C:,} cut)")
        need = 4 * self.n_layer * self.n_head * len(ids) ** 2
        if need > ATTENTION_BUDGET:
            raise UserError(f"the attention weights of {len(ids):,} tokens ({self.n_layer} layers x "
                            f"{self.n_head} heads) take {human_bytes(need)}, more than the "
                            f"{human_bytes(ATTENTION_BUDGET)} inspect allows: use a shorter prompt")
        return ids, n - len(ids), notes

    # ---- the analysis -------------------------------------------------------------------------
    def inspect(self, text: str, top_k: int = 5) -> Inspection:
        """Everything :class:`Inspection` holds for ``text`` (``top_k`` next tokens per position)."""
        if top_k < 1:
            raise UserError(f"top-k must be at least 1, not {top_k}")
        ids, cut, notes = self.prompt_ids(text)
        device = self.model.tok_emb.weight.device
        x = torch.tensor([ids], dtype=torch.long, device=device)
        tr = trace(self.model, x)
        result = Inspection(model=self.name, kind=self.kind,
                            tokens=[{"id": i, "text": self.token_text(i)} for i in ids],
                            attention=tr.attention[0].float().cpu().numpy(), causal=tr.causal,
                            cut=cut, notes=notes)
        if self.kind == "classifier":
            with torch.no_grad():
                p = torch.softmax(self.model.classify(x)[0].float(), dim=-1).cpu().tolist()
            result.labels = dict(zip(self.labels, p))
            notes.append(f"note: {self.name} is a classifier (task {self.info.task}): attention "
                         "and its label probabilities only (its LM head was not trained to "
                         "predict text)")
            return result
        lens = None if tr.logits is None else lens_top(self.model, tr.residuals, tr.logits)
        if lens is None:
            notes.append(f"note: {self.name} has no masked-LM head: attention only")
            return result
        probs = torch.softmax(tr.logits[0].float(), dim=-1)           # (T, vocab)
        k = min(top_k, probs.shape[-1])
        top_p, top_i = probs.topk(k, dim=-1)                          # (T, k)
        lens_p, lens_i = (t[0].cpu().tolist() for t in lens)          # (L, T)
        result.logit_lens = [[self._entry(i, p) for i, p in zip(ids_l, ps_l)]
                             for ids_l, ps_l in zip(lens_i, lens_p)]
        predictions = [[self._entry(i, p) for i, p in zip(row_i, row_p)]
                       for row_i, row_p in zip(top_i.tolist(), top_p.tolist())]
        if self.causal:
            result.next = predictions
            following = torch.tensor(ids[1:], device=probs.device)
            p_actual = probs[:-1].gather(1, following[:, None])        # (T-1, 1)
            ranks = (probs[:-1] > p_actual).sum(dim=-1) + 1            # ties share the better rank
            result.actual = [{"prob": float(p), "rank": int(r)}
                             for p, r in zip(p_actual[:, 0].tolist(), ranks.tolist())]
        else:
            mask_id = getattr(self.tokenizer, "mask_id", None)
            result.fill_mask = [{"position": pos, "predictions": predictions[pos]}
                                for pos, i in enumerate(ids) if mask_id is not None and i == mask_id]
            if not result.fill_mask:
                notes.append("note: the prompt has no [MASK] token: put one where a word should "
                             "be predicted (fill-mask)")
        return result

    def _entry(self, token_id: int, prob: float) -> dict:
        return {"id": int(token_id), "text": self.token_text(int(token_id)), "prob": float(prob)}

    # ---- conversations ------------------------------------------------------------------------
    def conversation_text(self, messages: list[dict]) -> str:
        """The text the model read and wrote in a conversation (to inspect a chat's last reply):
        its chat template's rendering, an instruct model's prompt template with the reply, or a
        plain language model's transcript."""
        from tinyllm.data import templates

        chat = templates.read_chat_template(self.info.path, self.tokenizer)
        if chat is not None:
            return chat.render(messages, add_generation_prompt=False)
        if self.info.task == "instruct" and messages:
            users = [m["content"] for m in messages if m["role"] == "user"]
            reply = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
            prompt = templates.format_prompt(self.info.meta.get("template"), users[-1] if users
                                             else "")
            return prompt + reply
        return templates.join_conversation(messages).rstrip("\n")


def open_inspector(name_or_path: str | Path | None = None, device: str = "cpu") -> Inspector:
    """An :class:`Inspector` for a model by path or name (None: the bundled shakespeare-char)."""
    return Inspector(modeldir.find(name_or_path), device=device)
