"""What a loaded model can do, whatever runs it: the :class:`Engine` base class.

Every engine has ``info``, ``meta``, ``tokenizer``, ``backend``, ``labels``, ``task``,
``chat_template``, ``generate(prompt, cfg) -> Iterator[str]``,
``chat(messages, cfg) -> Iterator[str]``, ``decode_batch(n)`` (many sequences at once, for the
server), for classifiers ``classify(texts) -> probs`` and, for encoders,
``embed(texts) -> vectors``.
A backend only supplies ``prefill(ids)`` / ``step(token)`` (next-token logits as numpy); the
sampling loop, instruct and chat templates, conversation trimming and UTF-8-safe streaming are
shared here.

Chat. ``chat(messages)`` takes the whole conversation as ``{"role", "content"}`` messages
(``system``, ``user``, ``assistant``) and streams the assistant's next reply. A model with a chat
template (``chat_template.jinja``) renders the messages with it and stops at any of its EOS ids
or the template's end-of-turn strings; an instruct model answers the last user message through
its prompt template; a plain language model continues the transcript (each message on its own
lines) and stops at a blank line. When the conversation no longer fits the context with room
for the reply (``max_new_tokens``, at most half the context), the oldest turns are left out of
the prompt, the system prompt always kept; a reply that reaches the end of the context stops
there. A single message longer than the context is an error.

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
        self.is_encoder: bool = info.is_encoder
        self.log: Log = log or no_log
        from tinyllm.data.templates import read_chat_template

        self.chat_template = read_chat_template(info.path, self.tokenizer)  # None: none stored

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

    def _refuse_classifier(self) -> None:
        if self.labels:
            raise UserError(f"{self.info.path}: a {self.task} model does not generate text; "
                            "use `tinyllm classify`")
        if self.is_encoder:
            raise UserError(f"{self.info.path}: an encoder ({self.info.family}) does not generate "
                            "text; use `tinyllm embed` (or `tinyllm classify` for a classifier)")

    def prompt_ids(self, prompt: str, cfg: SamplingConfig, input: str = ""
                   ) -> tuple[list[int], list[str]]:
        """The token ids the model is fed for ``prompt`` as plain text to continue, and the stop
        strings (see :meth:`prompt_and_stops`); an empty prompt starts from the beginning-of-text
        (or end-of-text) token."""
        self._refuse_classifier()
        text, stops = self.prompt_and_stops(prompt, cfg, input)
        tok = self.tokenizer
        ids = tok.prompt_ids(text) if text else []
        ids = ids or [tok.bos_id if tok.bos_id is not None else
                      tok.eot_id if tok.eot_id is not None else 0]
        self._check_ids(ids)
        self.warn_about_prompt(text, ids)
        return ids, stops

    def _check_ids(self, ids: list[int]) -> None:
        vocab = self.info.model_config.vocab_size
        if max(ids) >= vocab:
            raise UserError(f"{self.info.path}: the prompt has token id {max(ids)}, beyond the "
                            f"model's vocabulary of {vocab} ids")

    def generate(self, prompt: str, cfg: SamplingConfig | None = None, input: str = "",
                 raw: bool = False) -> Iterator[str]:
        """Stream the continuation of ``prompt`` (for instruct models: only the response).

        A chat model (one with a chat template) answers ``prompt`` as a one-message
        conversation, unless ``raw``: then it continues the text as it is."""
        self._refuse_classifier()
        cfg = cfg or SamplingConfig()
        if self.chat_template is not None and self.task != "instruct" and prompt and not raw:
            content = prompt + (f"\n\n{input}" if input.strip() else "")
            return self.chat([{"role": "user", "content": content}], cfg)
        ids, stops = self.prompt_ids(prompt, cfg, input)
        tok = self.tokenizer
        new_ids = generate_ids(self.prefill, self.step, ids, cfg, tok.eos_ids, self.context_length,
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

    # ---- chat ---------------------------------------------------------------------------------
    def chat(self, messages: list[dict], cfg: SamplingConfig | None = None) -> Iterator[str]:
        """Stream the assistant's reply to a conversation (see the module docstring)."""
        self._refuse_classifier()
        cfg = cfg or SamplingConfig()
        ids, stops, dropped = self.chat_prompt(messages, cfg)
        if dropped:
            self.log(f"note: the conversation outgrew the {self.context_length}-token context; "
                     f"the oldest {dropped} message(s) are left out of the prompt")
        # characters the tokenizer does not know; for a plain language model, a last message
        # longer than the context is cut to its end, as `generate` cuts a prompt
        self.warn_about_prompt("".join(m["content"] for m in messages), ids)
        new_ids = generate_ids(self.prefill, self.step, ids, cfg, self.tokenizer.eos_ids,
                               self.context_length, self.tokenizer.vocab_size,
                               slide=self.chat_template is None)
        return stream_text(self._naming_model(new_ids), self.tokenizer.token_bytes, stops)

    def chat_prompt(self, messages: list[dict], cfg: SamplingConfig | None = None
                    ) -> tuple[list[int], list[str], int]:
        """(prompt ids, stop strings, messages left out) for a conversation: the oldest turns
        after the system prompt are dropped until the prompt leaves room for the reply."""
        cfg = cfg or SamplingConfig()
        if not messages:
            raise UserError("a chat needs at least one message")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str):
                raise UserError(f"message {i}: expected {{'role': 'system'|'user'|'assistant', "
                                f"'content': str}}, got {m!r:.80}")
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns = list(messages[len(system):])
        if not turns:
            raise UserError("a chat needs a user message after the system prompt")
        room = max(1, min(cfg.max_new_tokens, self.context_length // 2))
        budget = self.context_length - room
        ids, stops = self._render_chat(system + turns, cfg)
        dropped = 0
        while len(ids) > budget and len(turns) > 1:
            turns.pop(0)
            dropped += 1
            while len(turns) > 1 and turns[0]["role"] != "user":  # start at a user turn
                turns.pop(0)
                dropped += 1
            ids, stops = self._render_chat(system + turns, cfg)
        if len(ids) >= self.context_length and self.chat_template is not None:
            raise UserError(f"the message is {len(ids)} tokens long (with the system prompt and "
                            f"template); {self.info.name}'s context holds {self.context_length}")
        return ids, stops, dropped

    def _render_chat(self, messages: list[dict], cfg: SamplingConfig) -> tuple[list[int], list[str]]:
        """The prompt ids and stop strings for messages, by the kind of model."""
        stops = list(cfg.stop)
        tok = self.tokenizer
        if self.chat_template is not None:
            text = self.chat_template.render(messages, add_generation_prompt=True)
            ids = tok.encode(text)  # the template writes any bos token itself
            return ids, stops + [s for s in self.chat_template.stop if s not in stops]
        last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user") \
            if any(m["role"] == "user" for m in messages) else messages[-1]["content"]
        if self.task == "instruct":
            text, stops = self.prompt_and_stops(last_user, cfg)
            return tok.prompt_ids(text), stops
        # a plain language model continues the transcript; a reply ends at a blank line
        from tinyllm.data.templates import join_conversation

        return tok.prompt_ids(join_conversation(messages)), stops or ["\n\n"]

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
        from tinyllm.runtime.textbatch import (encode_texts, length_batches, mean_pool,
                                               normalize_rows, pad_id_of, pad_ids)

        if not self.is_encoder:
            raise UserError(f"{self.info.path}: a {self.info.family} {self.task} model has no "
                            "encoder to embed with; use an encoder (family bert), e.g. one "
                            "imported with `tinyllm import`")
        pooling, normalize, max_len = self.embed_settings(pooling, normalize)
        rows = encode_texts(self.tokenizer, texts, max_len)
        out = np.zeros((len(rows), self.info.model_config.n_embd), dtype=np.float32)
        pad = pad_id_of(self.tokenizer)
        for part in length_batches(rows, 32):
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
