"""The OpenAI-compatible HTTP API: a Starlette app, served by uvicorn (see ``tinyllm serve``).

Endpoints (OpenAI's shapes): ``GET /v1/models``, ``GET /v1/models/{id}``,
``POST /v1/chat/completions`` and ``POST /v1/completions`` (streamed as server-sent events with
``"stream": true``), ``POST /v1/embeddings`` (encoder models), ``POST /v1/classifications``
(tinyllm's own: ``{"model", "input": [texts]}`` -> a label and probabilities per text), and
``GET /health`` (503 while models load). Every error is ``{"error": {"message", "type", "param",
"code"}}`` with its status: 400 bad JSON or parameters, 401 a missing or wrong API key, 404 an
unknown model or path, 413 a body over the limit, 422 a prompt longer than the context, 503 with
``Retry-After`` when the queue is full or the model is still loading.

Generation runs in each model's scheduler thread (:mod:`tinyllm.serve.scheduler`); the event loop
only parses, waits and writes. A client that disconnects cancels its generation.
"""
from __future__ import annotations

import base64
import contextlib
import hmac
import json
import threading
import time
import uuid
from typing import Any, AsyncIterator, Callable

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tinyllm.errors import UserError
from tinyllm.runtime.sampling import SamplingConfig
from tinyllm.serve.errors import APIError, bad_request, unavailable, unknown_model
from tinyllm.serve.models import Limits, ServedModel
from tinyllm.serve.requests import (Sampling, parse_chat, parse_completion, parse_texts)
from tinyllm.serve.scheduler import Generation, GenerationFailed, Overloaded

Log = Callable[[str], None]
DRAIN_LIMIT = 64 * 1024 * 1024   # bytes of an oversized body read (and dropped) before a 413


def chat_prompt(engine, messages: list[dict[str, str]], cfg) -> tuple[str | list[int], list[str]]:
    """The prompt a chat request becomes for ``engine`` (text, or token ids), and its stop strings.

    Models with a chat template render the whole conversation with it, the oldest turns left out
    when it outgrows the context (``Engine.chat_prompt``, as ``tinyllm chat`` does); instruct models
    answer the last user message through their prompt template (``Engine.prompt_ids`` applies it);
    plain language models continue the conversation joined as ``tinyllm chat`` joins it, and stop
    at a blank line.
    """
    if getattr(engine, "chat_template", None) is not None:
        try:
            ids, stops, _ = engine.chat_prompt(messages, cfg)
        except UserError as e:
            raise APIError(422, str(e), param="messages", code="context_length_exceeded") from None
        return ids, stops
    if engine.task == "instruct":
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise bad_request("An instruct model answers a user message; there is none.",
                              param="messages")
        return users[-1], []
    from tinyllm.data.templates import join_conversation

    return join_conversation(messages), ["\n\n"]


class EventStream(StreamingResponse):
    """Server-sent events that notice a client leaving even between writes.

    Starlette (under ASGI 2.4 servers such as uvicorn) only learns of a disconnect when a write
    fails; here a listener runs beside the stream, so a client that leaves while its request
    waits for a slot or a long prefill is cancelled at once (the generator's ``finally`` runs).
    """

    media_type = "text/event-stream"

    async def __call__(self, scope, receive, send) -> None:
        async with anyio.create_task_group() as tg:
            async def stream() -> None:
                with contextlib.suppress(OSError):
                    await self.stream_response(send)
                tg.cancel_scope.cancel()

            tg.start_soon(stream)
            await self.listen_for_disconnect(receive)
            tg.cancel_scope.cancel()


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


class Server:
    """The app's state: the served models, the limits, the API key and the request log."""

    def __init__(self, models: list[ServedModel], limits: Limits | None = None,
                 api_key: str | None = None, log: Log | None = None):
        self.models = models
        self.by_name: dict[str, ServedModel] = {}
        for m in models:
            for name in (m.id, *m.aliases):
                self.by_name.setdefault(name, m)
        self.limits = limits or Limits()
        self.api_key = api_key or None
        self.log = log or (lambda message: None)
        self.loader: threading.Thread | None = None
        self.on_loaded: Callable[[list[ServedModel]], None] | None = None  # after loading

    # ---- lifecycle ---------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Load every model in a background thread (``/health`` answers 503 until done)."""
        def load_all() -> None:
            for m in self.models:
                m.load(self.limits, self.log)
                if m.state == "ready":
                    self.log(f"loaded {m.id} ({m.task}, {m.engine.backend}) in {m.seconds:.1f} s")
                else:
                    self.log(f"error: could not load {m.id}: {m.error}")
            if self.on_loaded is not None:
                self.on_loaded(self.models)

        self.loader = threading.Thread(target=load_all, name="tinyllm-loader", daemon=True)
        self.loader.start()

    def close(self) -> None:
        for m in self.models:
            m.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.start_loading()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(self.close)

    @property
    def state(self) -> str:
        states = {m.state for m in self.models}
        return "failed" if "failed" in states else "loading" if "loading" in states else "ok"

    # ---- request plumbing --------------------------------------------------------------------
    def check_key(self, request: Request) -> None:
        if not self.api_key:
            return
        header = request.headers.get("authorization", "")
        if not header:
            raise APIError(401, "You didn't provide an API key: send 'Authorization: Bearer "
                                "KEY'.", code="invalid_api_key")
        if not hmac.compare_digest(header.encode(), f"Bearer {self.api_key}".encode()):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        """The body as JSON, at most ``limits.max_body`` bytes (413 beyond; the rest is read and
        dropped so the client gets its answer rather than a broken pipe)."""
        limit = self.limits.max_body
        declared = request.headers.get("content-length", "")
        chunks, size = [], 0
        too_big = declared.isdigit() and int(declared) > limit
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                too_big = True
            if too_big:
                if size > DRAIN_LIMIT:
                    break
                continue
            chunks.append(chunk)
        if too_big:
            raise APIError(413, f"The request body is larger than this server's limit of "
                                f"{limit:,} bytes.", code="request_too_large")

        def reject(name: str):
            raise ValueError(f"{name} is not valid JSON")

        try:
            return json.loads(b"".join(chunks), parse_constant=reject)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"We could not parse the JSON body of your request ({e}).",
                              code="invalid_json") from None

    def model(self, name: str, need: str) -> ServedModel:
        """The served model ``name`` that can do ``need`` ("generate", "classify" or "embed")."""
        m = self.by_name.get(name)
        if m is None:
            raise unknown_model(name, [x.id for x in self.models])
        if m.state == "loading":
            raise unavailable(f"The model '{name}' is still loading.", retry_after=2,
                              code="model_loading")
        if m.state == "failed":
            raise APIError(500, f"The model '{name}' failed to load: {m.error}",
                           type="server_error", code="model_failed")
        able = {"generate": m.scheduler, "classify": m.classifier, "embed": m.embedder}[need]
        if able is None:
            what = {"generate": "generate text", "classify": "classify text",
                    "embed": "produce embeddings"}[need]
            use = ("/v1/classifications" if m.classifier else "/v1/embeddings" if m.embedder
                   else "/v1/chat/completions or /v1/completions")
            raise bad_request(f"The model '{name}' ({m.task}) does not {what}; use {use}.",
                              param="model", code="model_not_supported")
        return m

    # ---- endpoints ---------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        state = self.state
        status = {"ok": 200, "loading": 503, "failed": 500}[state]
        headers = {"Retry-After": "2"} if state == "loading" else None
        return JSONResponse({"status": state, "models": {m.id: m.health() for m in self.models}},
                            status_code=status, headers=headers)

    async def list_models(self, request: Request) -> Response:
        self.check_key(request)
        return JSONResponse({"object": "list", "data": [m.describe() for m in self.models]})

    async def get_model(self, request: Request) -> Response:
        self.check_key(request)
        name = request.path_params["model"]
        m = self.by_name.get(name)
        if m is None:
            raise unknown_model(name, [x.id for x in self.models])
        return JSONResponse(m.describe())

    async def chat_completions(self, request: Request) -> Response:
        self.check_key(request)
        req = parse_chat(await self.read_json(request), self.limits.max_tokens)
        request.state.model = req.model
        m = self.model(req.model, "generate")
        room = self.sampling_config(req.sampling, req.sampling.max_tokens or self.limits.max_tokens)
        prompt, stops = chat_prompt(m.engine, req.messages, room)
        if isinstance(prompt, list):  # a chat template's end-of-turn strings always apply
            req.sampling.stop = list(req.sampling.stop) + [x for x in stops
                                                           if x not in req.sampling.stop]
        elif not req.sampling.stop:
            req.sampling.stop = stops
        return await self.generate(request, m, prompt, req.sampling, chat=True)

    async def completions(self, request: Request) -> Response:
        self.check_key(request)
        req = parse_completion(await self.read_json(request), self.limits.max_tokens)
        request.state.model = req.model
        m = self.model(req.model, "generate")
        return await self.generate(request, m, req.prompt, req.sampling, chat=False,
                                   echo=req.echo)

    async def embeddings(self, request: Request) -> Response:
        self.check_key(request)
        req = parse_texts(await self.read_json(request), self.limits.max_items, embeddings=True)
        request.state.model = req.model
        m = self.model(req.model, "embed")
        vectors = np.asarray(await self.run_batch(m.embedder, req.texts), dtype=np.float32)
        if req.dimensions is not None:
            if req.dimensions > vectors.shape[1]:
                raise bad_request(f"'dimensions' must be at most {vectors.shape[1]} for this "
                                  "model.", param="dimensions")
            vectors = vectors[:, :req.dimensions]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        tokens = self.count_tokens(m, req.texts)
        request.state.tokens = (tokens, 0)
        data = []
        for i, v in enumerate(vectors):
            emb = (base64.b64encode(v.astype("<f4").tobytes()).decode() if
                   req.encoding_format == "base64" else v.tolist())
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return JSONResponse({"object": "list", "data": data, "model": m.id,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def classifications(self, request: Request) -> Response:
        self.check_key(request)
        req = parse_texts(await self.read_json(request), self.limits.max_items)
        request.state.model = req.model
        m = self.model(req.model, "classify")
        probs = await self.run_batch(m.classifier, req.texts)
        labels = [str(x) for x in m.engine.labels]
        tokens = self.count_tokens(m, req.texts)
        request.state.tokens = (tokens, 0)
        data = [{"object": "classification", "index": i, "label": labels[int(np.argmax(p))],
                 "probabilities": {lab: round(float(x), 6) for lab, x in zip(labels, p)}}
                for i, p in enumerate(probs)]
        return JSONResponse({"object": "list", "data": data, "model": m.id,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # ---- shared parts ------------------------------------------------------------------------
    @staticmethod
    def count_tokens(m: ServedModel, texts: list[str]) -> int:
        tok = getattr(m.engine, "tokenizer", None)
        return sum(len(tok.encode(t)) for t in texts) if tok is not None else 0

    @staticmethod
    async def run_batch(batcher, texts: list[str]) -> np.ndarray:
        try:
            return await batcher.run(texts)
        except Overloaded as e:
            raise unavailable(f"The server is busy: {e}.") from None
        except UserError as e:
            raise bad_request(str(e)) from None

    def sampling_config(self, s: Sampling, max_tokens: int) -> SamplingConfig:
        try:
            return SamplingConfig(max_new_tokens=max_tokens, temperature=s.temperature,
                                  top_k=s.top_k, top_p=s.top_p,
                                  repetition_penalty=s.repetition_penalty, stop=list(s.stop),
                                  seed=s.seed)
        except ValueError as e:
            raise bad_request(str(e)) from None

    async def generate(self, request: Request, m: ServedModel, prompt: str | list[int],
                       s: Sampling, chat: bool, echo: bool = False) -> Response:
        engine, scheduler = m.engine, m.scheduler
        context = engine.context_length
        cfg = self.sampling_config(s, 0)
        if isinstance(prompt, list):             # token ids (completions)
            vocab = getattr(engine.tokenizer, "vocab_size", None)
            if vocab is not None and max(prompt) >= vocab:
                raise bad_request(f"Token ids must be below the vocabulary size {vocab}.",
                                  param="prompt")
            ids, stops = prompt, list(cfg.stop)
        else:
            try:
                ids, stops = engine.prompt_ids(prompt, cfg)
            except UserError as e:
                raise bad_request(str(e)) from None
        if len(ids) > context:
            raise APIError(422, f"The prompt is {len(ids)} tokens; this model's context is "
                                f"{context} tokens.", param="messages" if chat else "prompt",
                           code="context_length_exceeded")
        cfg.max_new_tokens = (s.max_tokens if s.max_tokens is not None
                              else max(1, min(self.limits.max_tokens, context - len(ids))))
        gen = scheduler.new_generation(ids, cfg, stops, asyncio_loop())
        try:
            scheduler.submit(gen)
        except Overloaded as e:
            raise unavailable(f"The server is busy: {e}.") from None
        request.state.generation = gen
        head = (prompt if isinstance(prompt, str) else engine.tokenizer.decode(prompt)) \
            if echo else ""
        reply = Reply(m.id, chat, gen, s.include_usage)
        if s.stream:
            return EventStream(reply.events(scheduler, head),
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        text = await wait_or_leave(request, gen, scheduler)
        if text is None:                         # the client left; nobody reads this
            return Response(status_code=499)
        return JSONResponse(reply.whole(head + text))

    # ---- the app -----------------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.get_model, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/classifications", self.classifications, methods=["POST"]),
        ]

        async def api_error(request: Request, exc: APIError) -> Response:
            return exc.response()

        async def http_error(request: Request, exc: HTTPException) -> Response:
            message = (f"No such endpoint: {request.method} {request.url.path}" if exc.status_code
                       == 404 else f"{request.method} is not allowed on {request.url.path}"
                       if exc.status_code == 405 else str(exc.detail))
            return APIError(exc.status_code, message, code="not_found" if exc.status_code == 404
                            else None).response()

        async def server_error(request: Request, exc: Exception) -> Response:
            self.log(f"error: {request.method} {request.url.path}: {type(exc).__name__}: {exc}")
            return APIError(500, f"Internal error: {type(exc).__name__}: {exc}",
                            type="server_error").response()

        app = Starlette(routes=routes, lifespan=self.lifespan,
                        exception_handlers={APIError: api_error, HTTPException: http_error,
                                            Exception: server_error})
        return RequestLog(app, self.log)


def asyncio_loop():
    import asyncio

    return asyncio.get_running_loop()


async def wait_or_leave(request: Request, gen: Generation, scheduler) -> str | None:
    """The whole text of ``gen``, or None if the client disconnects first (then it is cancelled)."""
    result: dict[str, Any] = {}

    async def collect() -> None:
        try:
            result["text"] = await gen.text()
        except GenerationFailed as e:
            result["error"] = e
        tg.cancel_scope.cancel()

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                scheduler.cancel(gen)
                tg.cancel_scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        tg.start_soon(watch)
    if "error" in result:
        raise APIError(500, f"Generation failed: {result['error']}", type="server_error")
    return result.get("text")


class Reply:
    """A chat or text completion in OpenAI's shapes, whole or as a stream of chunks."""

    def __init__(self, model: str, chat: bool, gen: Generation, include_usage: bool):
        self.model, self.chat, self.gen, self.include_usage = model, chat, gen, include_usage
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def usage(self) -> dict[str, int]:
        p, c = self.gen.prompt_tokens, self.gen.completion_tokens
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def whole(self, text: str) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": self.gen.finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None,
                      "finish_reason": self.gen.finish_reason}
        return {"id": self.id, "object": self.object, "created": self.created,
                "model": self.model, "choices": [choice], "usage": self.usage()}

    def chunk(self, text: str | None, finish_reason: str | None = None,
              role: bool = False) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None,
                      "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None,
                      "finish_reason": finish_reason}
        out = {"id": self.id, "object": "chat.completion.chunk" if self.chat else self.object,
               "created": self.created, "model": self.model, "choices": [choice]}
        if self.include_usage:
            out["usage"] = None
        return out

    async def events(self, scheduler, head: str = "") -> AsyncIterator[str]:
        """The SSE stream: (chat: a role chunk,) content chunks, a chunk with ``finish_reason``,
        the usage chunk when asked for, then ``[DONE]``. Leaving early cancels the generation."""
        finished = False
        try:
            if self.chat:
                yield sse(self.chunk("", role=True))
            if head:
                yield sse(self.chunk(head))
            try:
                async for piece in self.gen.pieces():
                    yield sse(self.chunk(piece))
            except GenerationFailed as e:
                finished = True
                yield sse(APIError(500, f"Generation failed: {e}", type="server_error").body())
                yield sse("[DONE]")
                return
            finished = True
            yield sse(self.chunk(None if self.chat else "", self.gen.finish_reason))
            if self.include_usage:
                yield sse({"id": self.id, "object": "chat.completion.chunk" if self.chat
                           else self.object, "created": self.created, "model": self.model,
                           "choices": [], "usage": self.usage()})
            yield sse("[DONE]")
        finally:
            if not finished:
                scheduler.cancel(self.gen)


class RequestLog:
    """ASGI middleware: one line per request through ``log``: status, method, path, model,
    prompt+completion tokens, time to first token for generations, and the total time."""

    def __init__(self, app, log: Log):
        self.app, self.log = app, log

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [0]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.log(request_line(scope, status[0], time.perf_counter() - t0, t0))


def request_line(scope, status: int, seconds: float, t0: float) -> str:
    state = scope.get("state") or {}
    parts = [str(status or "-"), scope.get("method", ""), scope.get("path", "")]
    if state.get("model"):
        parts.append(str(state["model"]))
    gen = state.get("generation")
    if gen is not None:
        parts.append(f"{gen.prompt_tokens}+{gen.completion_tokens} tokens")
        if gen.first_token_at is not None:
            parts.append(f"first token {1000 * (gen.first_token_at - t0):.0f} ms")
        if gen.cancelled and gen.finish_reason is None:
            parts.append("(client left)")
    elif state.get("tokens"):
        parts.append(f"{state['tokens'][0]} tokens")
    parts.append(f"{1000 * seconds:.0f} ms")
    return " ".join(parts)


def create_app(models: list[ServedModel], limits: Limits | None = None,
               api_key: str | None = None, log: Log | None = None):
    """The ASGI app serving ``models`` (loaded in the background when the app starts)."""
    return Server(models, limits, api_key, log).app()
