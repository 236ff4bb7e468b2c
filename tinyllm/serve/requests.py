"""Request bodies, checked: every field the endpoints use, with OpenAI's names and rules.

Each ``parse_*`` takes the decoded JSON body and returns a plain dataclass, or raises a 400
:class:`~tinyllm.serve.errors.APIError` naming the parameter. Fields the server does not use
(``user``, ``logit_bias``, ``frequency_penalty``, ``tools``, ...) are ignored, as OpenAI-style
servers do, so clients that send them keep working.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tinyllm.serve.errors import bad_request

_MISSING = object()
ROLES = ("system", "developer", "user", "assistant", "tool")


class Fields:
    """Typed access to a JSON object's fields; a wrong type is a 400 naming the field."""

    def __init__(self, body: Any):
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        self.body = body

    def get(self, name: str, default: Any = None) -> Any:
        value = self.body.get(name, _MISSING)
        return default if value is _MISSING or value is None else value

    def string(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise bad_request(f"'{name}' is required.", param=name)
            return default
        if not isinstance(value, str):
            raise bad_request(f"'{name}' must be a string, not {_kind(value)}.", param=name)
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise bad_request(f"'{name}' must be true or false, not {_kind(value)}.", param=name)
        return value

    def integer(self, name: str, default: int | None = None, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise bad_request(f"'{name}' must be an integer, not {_kind(value)}.", param=name)
        if minimum is not None and value < minimum:
            raise bad_request(f"'{name}' must be at least {minimum} (got {value}).", param=name)
        if maximum is not None and value > maximum:
            raise bad_request(f"'{name}' must be at most {maximum} (got {value}).", param=name)
        return value

    def number(self, name: str, default: float | None = None, minimum: float | None = None,
               maximum: float | None = None, open_min: bool = False) -> float | None:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_request(f"'{name}' must be a number, not {_kind(value)}.", param=name)
        value = float(value)
        if minimum is not None and (value < minimum or (open_min and value == minimum)):
            bound = f"greater than {minimum:g}" if open_min else f"at least {minimum:g}"
            raise bad_request(f"'{name}' must be {bound} (got {value:g}).", param=name)
        if maximum is not None and value > maximum:
            raise bad_request(f"'{name}' must be at most {maximum:g} (got {value:g}).", param=name)
        return value

    def strings(self, name: str, max_items: int | None = None) -> list[str]:
        """A string or a list of strings (``stop``, ``input``); absent: []."""
        value = self.get(name, _MISSING)
        if value is _MISSING:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise bad_request(f"'{name}' must be a string or a list of strings.", param=name)
        if max_items is not None and len(items) > max_items:
            raise bad_request(f"'{name}' takes at most {max_items} strings.", param=name)
        return items


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


@dataclass
class Sampling:
    """The decoding parameters of a chat or completion request."""
    max_tokens: int | None = None      # None: until the end of text or the server's limit
    temperature: float = 1.0           # OpenAI's default; 0 is greedy
    top_p: float | None = None
    top_k: int | None = None           # tinyllm's extension (llama.cpp and vLLM take it too)
    repetition_penalty: float = 1.0    # extension, as vLLM names it
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False        # stream_options.include_usage: a last chunk with usage


def parse_sampling(f: Fields, max_tokens_limit: int) -> Sampling:
    n = f.integer("n", 1)
    if n != 1:
        raise bad_request("Only n=1 is supported.", param="n")
    max_tokens = f.integer("max_completion_tokens", None, minimum=0, maximum=max_tokens_limit)
    if max_tokens is None:
        max_tokens = f.integer("max_tokens", None, minimum=0, maximum=max_tokens_limit)
    top_p = f.number("top_p", None, minimum=0.0, maximum=1.0, open_min=True)
    options = f.get("stream_options", {})
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", param="stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise bad_request("'stream_options.include_usage' must be true or false.",
                          param="stream_options.include_usage")
    return Sampling(max_tokens=max_tokens,
                    temperature=f.number("temperature", 1.0, minimum=0.0, maximum=2.0),
                    top_p=None if top_p == 1.0 else top_p,
                    top_k=f.integer("top_k", None, minimum=0) or None,
                    repetition_penalty=f.number("repetition_penalty", 1.0, minimum=0.0,
                                                open_min=True),
                    stop=f.strings("stop", max_items=4),
                    seed=f.integer("seed", None),
                    stream=f.boolean("stream", False),
                    include_usage=include_usage)


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, str]]     # {"role", "content"} with content as plain text
    sampling: Sampling


def message_text(content: Any, where: str) -> str:
    """A message's content as text: a string, or a list of parts of which text parts are kept."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                raise bad_request("Only text content parts ({'type': 'text', 'text': ...}) are "
                                  "supported.", param=where)
            out.append(part["text"])
        return "".join(out)
    raise bad_request(f"'{where}' must be a string or a list of content parts.", param=where)


def parse_chat(body: Any, max_tokens_limit: int) -> ChatRequest:
    f = Fields(body)
    model = f.string("model", required=True)
    raw = f.get("messages", _MISSING)
    if raw is _MISSING:
        raise bad_request("'messages' is required.", param="messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("'messages' must be a non-empty list.", param="messages")
    messages = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request(f"'{where}' must be an object.", param=where)
        role = m.get("role")
        if role not in ROLES:
            raise bad_request(f"'{where}.role' must be one of: {', '.join(ROLES)}.",
                              param=f"{where}.role")
        messages.append({"role": role, "content": message_text(m.get("content"),
                                                                f"{where}.content")})
    return ChatRequest(model, messages, parse_sampling(f, max_tokens_limit))


@dataclass
class CompletionRequest:
    model: str
    prompt: str | list[int]            # text, or token ids
    sampling: Sampling
    echo: bool = False                 # the prompt text comes back before the completion


def parse_completion(body: Any, max_tokens_limit: int) -> CompletionRequest:
    f = Fields(body)
    model = f.string("model", required=True)
    prompt = f.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]                                  # a batch of one prompt
    if isinstance(prompt, list):
        if not prompt or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                 for t in prompt):
            raise bad_request("'prompt' must be a string, a list of one string, or a list of "
                              "token ids (several prompts in one request are not supported).",
                              param="prompt")
    elif not isinstance(prompt, str):
        raise bad_request(f"'prompt' must be a string, not {_kind(prompt)}.", param="prompt")
    sampling = parse_sampling(f, max_tokens_limit)
    if sampling.max_tokens is None:
        sampling.max_tokens = min(16, max_tokens_limit)     # OpenAI's default for completions
    return CompletionRequest(model, prompt, sampling, echo=f.boolean("echo", False))


@dataclass
class TextsRequest:
    """Embeddings and classifications: a model and a list of texts."""
    model: str
    texts: list[str]
    encoding_format: str = "float"     # embeddings: "float" or "base64"
    dimensions: int | None = None      # embeddings: keep the first N dimensions


def parse_texts(body: Any, max_items: int, embeddings: bool = False) -> TextsRequest:
    f = Fields(body)
    model = f.string("model", required=True)
    value = f.get("input", _MISSING)
    if value is _MISSING:
        raise bad_request("'input' is required.", param="input")
    if isinstance(value, list) and value and all(isinstance(t, int) or isinstance(t, list)
                                                 for t in value):
        raise bad_request("Token-id input is not supported; send text.", param="input")
    texts = f.strings("input")
    if not texts:
        raise bad_request("'input' must not be empty.", param="input")
    if len(texts) > max_items:
        raise bad_request(f"'input' takes at most {max_items} texts.", param="input")
    req = TextsRequest(model, texts)
    if embeddings:
        req.encoding_format = f.string("encoding_format", "float")
        if req.encoding_format not in ("float", "base64"):
            raise bad_request("'encoding_format' must be 'float' or 'base64'.",
                              param="encoding_format")
        req.dimensions = f.integer("dimensions", None, minimum=1)
    return req
