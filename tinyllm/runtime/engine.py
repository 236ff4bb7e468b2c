"""What a loaded model can do, whatever runs it: the :class:`Engine` base class.

Every engine has ``info``, ``meta``, ``tokenizer``, ``backend``, ``labels``, ``task``,
``generate(prompt, cfg) -> Iterator[str]``, ``decode_batch(n)`` (many sequences at once, for the
server) and, for classifiers, ``classify(texts) -> probs``.
A backend only supplies ``prefill(ids)`` / ``step(token)`` (next-token logits as numpy); the
sampling loop, instruct templates and UTF-8-safe streaming are shared here.

The backends: :class:`tinyllm.runtime.onnx_engine.OnnxEngine` (numpy + onnxruntime) and
:class:`tinyllm.engines.torch_engine.TorchEngine`; :func:`tinyllm.engines.open_engine` chooses.
This module imports no torch.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from tinyllm import modeldir
from tinyllm.errors import Log, RunFailed, UserError, no_log
from tinyllm.runtime.decode_batch import DecodeBatch
from tinyllm.runtime.sampling import SamplingConfig, generate_ids, stream_text
from tinyllm.tokenizer import Tokenizer


class Engine:
    """What a loaded model can do. Subclasses set ``backend`` and the two hooks."""

    backend: str = ""

    def __init__(self, info: modeldir.ModelInfo, log: Log | None = None):
        self.info = info
        self.meta: dict = info.meta
        self.task: str = info.task
        self.labels: list[str] | None = info.meta.get("labels")
        self.tokenizer: Tokenizer = info.load_tokenizer()
        self.context_length: int = info.model_config.context_length
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

    def prompt_ids(self, prompt: str, cfg: SamplingConfig, input: str = ""
                   ) -> tuple[list[int], list[str]]:
        """The token ids the model is fed for ``prompt`` and the stop strings (see
        :meth:`prompt_and_stops`); an empty prompt starts from the end-of-text token."""
        if self.labels:
            raise UserError(f"{self.info.path}: a {self.task} model does not generate text; "
                            "use `tinyllm classify`")
        text, stops = self.prompt_and_stops(prompt, cfg, input)
        tok = self.tokenizer
        ids = tok.encode(text) or [tok.eot_id if tok.eot_id is not None else 0]
        vocab = self.info.model_config.vocab_size
        if max(ids) >= vocab:
            raise UserError(f"{self.info.path}: the prompt has token id {max(ids)}, beyond the "
                            f"model's vocabulary of {vocab} ids")
        self.warn_about_prompt(text, ids)
        return ids, stops

    def generate(self, prompt: str, cfg: SamplingConfig | None = None, input: str = ""
                 ) -> Iterator[str]:
        """Stream the continuation of ``prompt`` (for instruct models: only the response)."""
        cfg = cfg or SamplingConfig()
        ids, stops = self.prompt_ids(prompt, cfg, input)
        tok = self.tokenizer
        new_ids = generate_ids(self.prefill, self.step, ids, cfg, tok.eot_id, self.context_length,
                               tok.vocab_size)
        return stream_text(self._naming_model(new_ids), tok.token_bytes, stops)

    def _naming_model(self, ids: Iterator[int]) -> Iterator[int]:
        """``ids``, with a failed run's message starting with the model's path."""
        try:
            yield from ids
        except RunFailed as e:
            raise RunFailed(f"{self.info.path}: {e}") from None

    def decode_batch(self, max_batch: int) -> "DecodeBatch":
        """Slots to decode up to ``max_batch`` sequences together (the server's scheduler; see
        :mod:`tinyllm.runtime.decode_batch`). Backends that can batch override this."""
        raise UserError(f"{self.info.path}: a {self.task} model does not generate text")

    def warn_about_prompt(self, text: str, ids: list[int]) -> None:
        """Say through ``log`` what of a prompt the model will not see as written: characters its
        tokenizer does not know, and the tokens cut when it is longer than the context."""
        from tinyllm.runtime.sampling import prompt_window
        from tinyllm.tokenizer import unknown_warning

        message = unknown_warning(self.tokenizer, self.tokenizer.unknown(text))
        if message:
            self.log(message)
        kept = prompt_window(len(ids), self.context_length)
        if kept < len(ids):
            self.log(f"warning: the prompt is {len(ids):,} tokens, longer than the model's "
                     f"{self.context_length}-token context; only its last {kept} are read "
                     f"({len(ids) - kept:,} cut)")

    def classify(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (N, n_classes) for classifier models."""
        raise UserError(f"{self.info.path}: the {self.backend} backend cannot classify with this "
                        f"model (task {self.task})")
