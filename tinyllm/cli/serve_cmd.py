"""`tinyllm serve`: the OpenAI-compatible HTTP server (see docs/serve.md)."""
from __future__ import annotations

import ipaddress
import socket
import sys
import time

import click

from tinyllm.errors import UserError

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one, chosen by the system)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"


def stderr_line(message: str) -> None:
    """The server's log: one line per request or event, on stderr, with the time of day."""
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {message}\n")
    sys.stderr.flush()


@click.command()
@click.option("--model", "-m", "models", multiple=True, metavar="M",
              help="Model directory or name to serve; repeatable (default: the bundled "
                   "shakespeare-char). Clients name it by its directory name.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the models "
                   "to the network: set an API key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port; the URL is printed).")
@click.option("--api-key", envvar="TINYLLM_API_KEY", default=None, metavar="KEY",
              help="Require 'Authorization: Bearer KEY' (default: $TINYLLM_API_KEY; none: open).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnx"]), default="auto",
              show_default=True,
              help="auto: ONNX Runtime when the model has an exported graph, else torch.")
@click.option("--max-batch", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Requests decoded together, per model (each holds a slot of KV cache).")
@click.option("--max-queue", type=click.IntRange(0), default=32, show_default=True,
              help="Requests that may wait for a slot; more get 503 with Retry-After.")
@click.option("--max-tokens", type=click.IntRange(1), default=4096, show_default=True,
              help="The most max_tokens a request may ask for.")
@click.option("--max-body", type=click.IntRange(1024), default=2 * 1024 * 1024,
              show_default=True, help="The largest request body, in bytes (413 beyond).")
def serve(models, host, port, api_key, backend, max_batch, max_queue, max_tokens, max_body):
    """Serve models over an OpenAI-compatible HTTP API (chat, completions, embeddings,
    classifications), batching concurrent requests.

    Logs one line per request on stderr (status, tokens, time). Ctrl-C stops it.

    \b
    Examples:
      tinyllm serve --model gpt2
      tinyllm serve -m my-chat-model -m sms-spam --port 8080
      curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"model": "gpt2", "messages": [{"role": "user", "content": "Hello"}]}'
    """
    import uvicorn

    from tinyllm import modeldir
    from tinyllm.serve.app import Server
    from tinyllm.serve.models import Limits, ServedModel

    chosen = None if backend == "auto" else backend
    served, ids = [], {}
    for ref in models or [modeldir.DEFAULT_LM]:
        info = modeldir.find(ref)          # a bad name or path fails here, before listening
        if info.name in ids and ids[info.name] != info.path:
            raise UserError(f"two models are named {info.name!r} ({ids[info.name]} and "
                            f"{info.path}); serve one of them from a directory with another name")
        if info.name in ids:
            continue
        ids[info.name] = info.path
        served.append(ServedModel(info.name, _opener(str(info.path), chosen),
                                  aliases={ref, str(info.path)} - {info.name}))
    limits = Limits(max_batch=max_batch, max_queue=max_queue, max_tokens=max_tokens,
                    max_body=max_body)
    state = Server(served, limits, api_key, log=stderr_line)
    sock = bind(host, port)
    url = url_of(sock)
    if not is_loopback(host) and not api_key:
        stderr_line(f"warning: listening on {host} without an API key: anyone who can reach "
                    "this address can use the models; set --api-key or $TINYLLM_API_KEY")
    server = uvicorn.Server(uvicorn.Config(state.app(), log_level="warning", access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=3))
    failed: list[str] = []

    def loaded(ms) -> None:
        failed.extend(f"{m.id}: {m.error}" for m in ms if m.state == "failed")
        if failed:
            server.should_exit = True
        else:
            stderr_line(f"ready: {', '.join(m.id for m in ms)}")

    state.on_loaded = loaded
    stderr_line(f"serving {', '.join(m.id for m in served)} on {url} "
                f"(max batch {max_batch}{', API key required' if api_key else ''}); Ctrl-C stops")
    server.run(sockets=[sock])
    if failed:
        raise UserError("could not load " + "; ".join(failed))


def _opener(path: str, backend: str | None):
    def open_model():
        from tinyllm.engines import open_engine

        engine = open_engine(path, backend, log=stderr_line)
        if engine.backend == "torch" and not engine.labels:
            engine.use_decode_threads()
        return engine
    return open_model
