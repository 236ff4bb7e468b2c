"""What a loaded model can do, whatever runs it: the :class:`Engine` base class.

Every engine has ``info``, ``meta``, ``tokenizer``, ``backend``, ``labels``, ``task``,
``generate(prompt, cfg) -> Iterator[str]``, for classifiers ``classify(texts) -> probs`` and, for
encoders, ``embed(texts) -> vectors``.
A backend only supplies ``prefill(ids)`` / ``step(token)`` (next-token logits as numpy); the
sampling loop, instruct templates and UTF-8-safe streaming are shared here.

The backends: :class:`tinyllm.runtime.onnx_engine.OnnxEngine` (numpy + onnxruntime) and
:class:`tinyllm.engines.torch_engine.TorchEngine`; :func:`tinyllm.engines.open_engine` chooses.
This module imports no torch.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from tinyllm import modeldir
from tinyllm.errors import UserError
from tinyllm.runtime.sampling import SamplingConfig, generate_ids, stream_text
from tinyllm.tokenizer import Tokenizer, from_spec

Log = Callable[[str], None]


def no_log(message: str) -> None:
    """The default ``log=`` callback: library code never prints."""


class Engine:
    """What a loaded model can do. Subclasses set ``backend`` and the two hooks."""

    backend: str = ""

    def __init__(self, info: modeldir.ModelInfo, log: Log | None = None):
        self.info = info
        self.meta: dict = info.meta
        self.task: str = info.task
        self.labels: list[str] | None = info.meta.get("labels")
        self.tokenizer: Tokenizer = from_spec(info.meta.get("tokenizer"), info.path)
        self.context_length: int = info.model_config.context_length
        self.is_encoder: bool = info.is_encoder
        self.log: Log = log or no_log

    # ---- backend hooks ------------------------------------------------------------------------
    def prefill(self, ids: list[int]) -> np.ndarray:
        """Start a fresh KV cache from ``ids``; the next-token logits (vocab,)."""
        raise NotImplementedError

    def step(self, token: int) -> np.ndarray:
        """Append one token to the cache; the next-token logits (vocab,)."""
        raise NotImplementedError

    # ---- shared surface -----------------------------------------------------------------------
    @property
    def template(self):
        """The instruct prompt template from config.yaml (None for plain language models)."""
        return self.meta.get("template") if self.task == "instruct" else None

    def prompt_and_stops(self, prompt: str, cfg: SamplingConfig, input: str = ""
                         ) -> tuple[str, list[str]]:
        """The text the model sees and the stop strings: instruct models get their template
        (``prompt`` is the instruction, ``input`` its optional input)."""
        stops = list(cfg.stop)
        if self.task == "instruct":
            from tinyllm.data import templates

            prompt = templates.format_prompt(self.template, prompt, input)
            stops += [s for s in templates.stop_strings(self.template) if s not in stops]
        return prompt, stops

    def generate(self, prompt: str, cfg: SamplingConfig | None = None, input: str = ""
                 ) -> Iterator[str]:
        """Stream the continuation of ``prompt`` (for instruct models: only the response)."""
        if self.labels:
            raise UserError(f"{self.info.path}: a {self.task} model does not generate text; "
                            "use `tinyllm classify`")
        if self.is_encoder:
            raise UserError(f"{self.info.path}: an encoder ({self.info.family}) does not generate "
                            "text; use `tinyllm embed` (or `tinyllm classify` for a classifier)")
        cfg = cfg or SamplingConfig()
        text, stops = self.prompt_and_stops(prompt, cfg, input)
        tok = self.tokenizer
        ids = tok.encode(text) or [tok.eot_id if tok.eot_id is not None else 0]
        new_ids = generate_ids(self.prefill, self.step, ids, cfg, tok.eot_id, self.context_length)
        return stream_text(new_ids, tok.token_bytes, stops)

    def classify(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (N, n_classes) for classifier models."""
        raise UserError(f"{self.info.path}: the {self.backend} backend cannot classify with this "
                        f"model (task {self.task})")

    def embed(self, texts: list[str], pooling: str | None = None, normalize: bool | None = None
              ) -> np.ndarray:
        """Sentence embeddings (N, n_embd) float32 of an encoder's last hidden states.

        ``pooling``: "mean" over the real tokens (the default, what sentence-transformers models
        expect) or "cls"; ``normalize`` scales every vector to length 1. None takes the model's
        own setting (config.yaml ``embed:``, written by the import of a sentence-transformers
        folder), else mean and no normalising. Texts longer than the model's ``max_length``
        (``embed.max_length``, else the context) are truncated to it."""
        from tinyllm.runtime.textbatch import (encode_texts, length_chunks, mean_pool,
                                               normalize_rows, pad_id_of, pad_ids)

        if not self.is_encoder:
            raise UserError(f"{self.info.path}: a {self.info.family} {self.task} model has no "
                            "encoder to embed with; use an encoder (family bert), e.g. one "
                            "imported with `tinyllm import`")
        pooling, normalize, max_len = self.embed_settings(pooling, normalize)
        rows = encode_texts(self.tokenizer, texts, max_len)
        out = np.zeros((len(rows), self.info.model_config.n_embd), dtype=np.float32)
        pad = pad_id_of(self.tokenizer)
        for part in length_chunks(rows, 32):
            ids, lengths = pad_ids([rows[i] for i in part], max_len, pad)
            h = self.hidden_states(ids, lengths)  # (B, T, C)
            out[part] = mean_pool(h, lengths) if pooling == "mean" else h[:, 0]
        return normalize_rows(out) if normalize else out

    def hidden_states(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Backend hook for :meth:`embed`: an encoder's last hidden states (B, T, C) float32 of
        right-padded ``ids`` (B, T) with ``lengths`` (B,) real tokens."""
        raise UserError(f"{self.info.path}: the {self.backend} backend cannot embed with this "
                        f"model (task {self.task})")

    def embed_settings(self, pooling: str | None = None, normalize: bool | None = None
                       ) -> tuple[str, bool, int]:
        """(pooling, normalize, max_length) for :meth:`embed`: the arguments, else the model's."""
        own = self.meta.get("embed") or {}
        pooling = pooling or own.get("pooling") or "mean"
        if pooling not in EMBED_POOLING:
            raise UserError(f"unknown pooling {pooling!r}; choose one of: {', '.join(EMBED_POOLING)}")
        normalize = bool(own.get("normalize", False)) if normalize is None else normalize
        max_len = min(self.context_length, int(own.get("max_length") or self.context_length))
        return pooling, normalize, max_len


EMBED_POOLING = ("mean", "cls")  # how embed() turns hidden states into one vector per text
