"""`tinyllm serve` over real HTTP with real clients: the openai SDK, simonw/llm's CLI, urllib.

The server runs in this process (uvicorn in a thread, on a free 127.0.0.1 port) so tests can look
at its scheduler; one test runs the `tinyllm serve` command itself. The language model is a random
GPT-2-tokenizer model exported to ONNX (float and nbits8 int8 graphs).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import uvicorn
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.serve.app import Server
from tinyllm.serve.models import Limits, ServedModel

ROOT = Path(__file__).resolve().parents[2]


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    """A random LM with the GPT-2 tokenizer, exported to model.onnx and an nbits8 model.int8.onnx."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.export.onnx import export_model
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import get_gpt2

    torch.manual_seed(0)
    model = GPT(ModelConfig(context_length=96, n_layer=2, n_head=2, n_embd=64))
    d = save_model(model, get_gpt2(), tmp_path_factory.mktemp("serve") / "tiny-gpt")
    export_model(d, int8=True, quant="nbits8")
    return d


class FakeEmbedder:
    """An encoder engine as the server sees one: ``task == "embed"`` and ``embed(texts)``."""

    task, backend, labels, context_length = "embed", "fake", None, 64

    def __init__(self):
        from tinyllm.tokenizer import get_gpt2

        self.tokenizer = get_gpt2()
        self.calls: list[int] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        time.sleep(0.05)   # long enough for concurrent requests to queue behind one call
        return np.stack([vector_of(t) for t in texts])


def vector_of(text: str) -> np.ndarray:
    v = np.random.default_rng(abs(hash(text)) % 2**32).standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


class Running:
    """A server on a free 127.0.0.1 port, in a thread; ``url`` is its /v1 base."""

    def __init__(self, models: list[ServedModel], api_key: str | None = None, **limits):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.lines: list[str] = []
        self.state = Server(models, Limits(**limits), api_key, log=self.lines.append)
        self.server = uvicorn.Server(uvicorn.Config(self.state.app(), log_level="error",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url[:-3] + "/health") as r:
                    if json.load(r)["status"] == "ok":
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not become ready: " + "; ".join(self.lines))

    def client(self, key: str = "unused", **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=60, **kw)

    def logged(self, start: str, since: int = 0, timeout: float = 5.0) -> bool:
        """Whether a log line starting with ``start`` appears (lines are written as a response
        ends, just after the client has it)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(line.startswith(start) for line in self.lines[since:]):
                return True
            time.sleep(0.02)
        return False

    def model(self, name: str) -> ServedModel:
        return self.state.by_name[name]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def served(path: Path, name: str | None = None, backend: str | None = "onnx",
           precision: str | None = None) -> ServedModel:
    from tinyllm.engines import open_engine

    return ServedModel(name or path.name, lambda: open_engine(path, backend, precision=precision))


@pytest.fixture(scope="module")
def server(lm_dir):
    """The int8 graph as "tiny-gpt", the float graph as "tiny-gpt-fp32", the torch model as
    "tiny-gpt-torch", the bundled SMS classifier and a fake encoder."""
    fake = FakeEmbedder()
    s = Running([served(lm_dir), served(lm_dir, "tiny-gpt-fp32", precision="fp32"),
                 served(lm_dir, "tiny-gpt-torch", backend="torch"),
                 ServedModel("sms-spam", lambda: __import__("tinyllm.engines", fromlist=["x"])
                             .open_engine("sms-spam", "onnx")),
                 ServedModel("fake-embed", lambda: fake)], max_batch=4, max_queue=8)
    s.fake = fake
    yield s
    s.stop()


def post(url: str, body: bytes | dict, key: str | None = None) -> tuple[int, dict, Any]:
    """(status, JSON body, headers) of a POST, errors included."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def generate_cli(*args: str, env: dict | None = None) -> str:
    r = CliRunner(env=env).invoke(main, ["generate", *args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout[:-1] if r.stdout.endswith("\n") else r.stdout


HELLO = [{"role": "user", "content": "Hello there"}]


# ---- the openai SDK -------------------------------------------------------------------------------
def test_models_are_listed_and_health_says_ok(server):
    ids = [m.id for m in server.client().models.list()]
    assert ids == ["tiny-gpt", "tiny-gpt-fp32", "tiny-gpt-torch", "sms-spam", "fake-embed"]
    assert server.client().models.retrieve("sms-spam").owned_by == "tinyllm"
    with urllib.request.urlopen(server.url[:-3] + "/health") as r:
        health = json.load(r)
    assert health["status"] == "ok"
    assert health["models"]["tiny-gpt"]["batched"] is True          # the ONNX batched decoder
    assert health["models"]["tiny-gpt-torch"]["batched"] is False   # one decoder per slot


@pytest.mark.parametrize("model", ["tiny-gpt-fp32", "tiny-gpt-torch"])
def test_streamed_chat_equals_whole_chat_and_tinyllm_generate(server, lm_dir, model, monkeypatch):
    c = server.client()
    settings = dict(model=model, messages=HELLO, max_tokens=24, temperature=0.9, top_p=0.95,
                    seed=11)
    whole = c.chat.completions.create(**settings)
    chunks = list(c.chat.completions.create(**settings, stream=True,
                                            stream_options={"include_usage": True}))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks[:-1]][-1] == whole.choices[0].finish_reason
    assert all(ch.choices[0].finish_reason is None for ch in chunks[:-2])
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    # a language model continues the conversation as `tinyllm chat` joins it, stopping at a blank line
    backend = "torch" if model.endswith("torch") else "onnx"
    monkeypatch.setenv("TINYLLM_ONNX_PRECISION", "fp32")
    expected = generate_cli("-m", str(lm_dir), "--backend", backend, "-n", "24", "-t", "0.9",
                            "--top-p", "0.95", "--top-k", "0", "--seed", "11", "--stop", "\n\n",
                            "Hello there\n")
    assert whole.choices[0].message.content == expected


def test_completions_streamed_and_whole_equal_tinyllm_generate(server, lm_dir, monkeypatch):
    c = server.client()
    settings = dict(model="tiny-gpt-fp32", prompt="The meaning of life is", max_tokens=20,
                    temperature=0.7, seed=5, extra_body={"top_k": 40})
    whole = c.completions.create(**settings)
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(**settings, stream=True))
    assert streamed == whole.choices[0].text
    assert whole.usage.completion_tokens == 20 and whole.choices[0].finish_reason == "length"
    monkeypatch.setenv("TINYLLM_ONNX_PRECISION", "fp32")
    assert whole.choices[0].text == generate_cli("-m", str(lm_dir), "--backend", "onnx", "-n",
                                                 "20", "-t", "0.7", "--top-k", "40", "--seed",
                                                 "5", "The meaning of life is")


def test_concurrent_requests_decode_together_with_the_text_each_gets_alone(server):
    """Greedy on the int8 graph: the same text in a batch of four as alone, in fewer steps."""
    c = server.client()
    prompts = ["Once upon a time", "The weather today", "In 1492", "Dear Sir,"]

    def ask(prompt: str) -> str:
        s = c.completions.create(model="tiny-gpt", prompt=prompt, max_tokens=40, temperature=0,
                                 stream=True)
        return "".join(ch.choices[0].text for ch in s)

    alone = [ask(p) for p in prompts]
    sched = server.model("tiny-gpt").scheduler
    steps, rows = sched.steps, sched.rows
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone
    steps, rows = sched.steps - steps, sched.rows - rows
    assert rows == 4 * 39 and steps < rows   # one token per request per step, several per step
    assert sched.stats()["active"] == 0


def test_embeddings_float_and_base64_and_batched(server):
    c = server.client()
    r = c.embeddings.create(model="fake-embed", input=["alpha", "beta"])   # the SDK asks base64
    assert [d.index for d in r.data] == [0, 1]
    np.testing.assert_allclose(r.data[1].embedding, vector_of("beta"), rtol=1e-6)
    assert r.usage.prompt_tokens > 0
    status, body, _ = post(server.url + "/embeddings", {"model": "fake-embed", "input": "alpha",
                                                        "encoding_format": "float"})
    assert status == 200 and np.allclose(body["data"][0]["embedding"], vector_of("alpha"))
    calls = len(server.fake.calls)
    with ThreadPoolExecutor(6) as pool:
        out = list(pool.map(lambda t: c.embeddings.create(model="fake-embed", input=t), "abcdef"))
    for text, r in zip("abcdef", out):
        np.testing.assert_allclose(r.data[0].embedding, vector_of(text), rtol=1e-6)
    assert len(server.fake.calls) - calls < 6      # requests that arrived together ran together


def test_classifications(server):
    from tinyllm.engines import open_engine

    texts = ["WINNER!! Claim your free prize now, call 0800", "see you at lunch?"]
    status, body, _ = post(server.url + "/classifications", {"model": "sms-spam", "input": texts})
    assert status == 200
    probs = open_engine("sms-spam", "onnx").classify(texts)
    labels = open_engine("sms-spam", "onnx").labels
    assert [d["label"] for d in body["data"]] == [labels[int(i)] for i in probs.argmax(1)]
    assert body["data"][0]["probabilities"][labels[0]] == pytest.approx(probs[0][0], abs=1e-5)


def test_a_model_used_for_what_it_cannot_do_is_a_400(server):
    c = server.client()
    with pytest.raises(openai.BadRequestError, match="classifications"):
        c.chat.completions.create(model="sms-spam", messages=HELLO)
    with pytest.raises(openai.BadRequestError, match="embeddings"):
        c.embeddings.create(model="tiny-gpt", input="x")


# ---- bad input ------------------------------------------------------------------------------------
def test_errors_have_their_status_and_shape_and_the_server_keeps_serving(server):
    c = server.client()
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="no-such-model", messages=HELLO)
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    url = server.url + "/chat/completions"
    good = {"model": "tiny-gpt", "messages": HELLO, "max_tokens": 2}
    cases = [
        (b'{"model": "tiny-gpt", "messages": [', 400, None),                       # malformed JSON
        (b'[1, 2]', 400, None),                                                   # not an object
        ({**good, "max_tokens": -1}, 400, "max_tokens"),
        ({**good, "max_tokens": "many"}, 400, "max_tokens"),                      # wrong type
        ({**good, "temperature": "hot"}, 400, "temperature"),
        ({**good, "messages": "hi"}, 400, "messages"),
        ({**good, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        ({**good, "n": 2}, 400, "n"),
        ({**good, "max_tokens": 10 ** 6}, 400, "max_tokens"),                      # over the limit
        ({**good, "model": 3}, 400, "model"),
        ({**good, "messages": [{"role": "user", "content": "word " * 200}]}, 422, "messages"),
        (b"x" * (10 * 1024 * 1024), 413, None),                                   # a 10 MB body
    ]
    for body, status, param in cases:
        got, err, _ = post(url, body)
        assert got == status, (body if isinstance(body, dict) else body[:40], err)
        assert set(err["error"]) == {"message", "type", "param", "code"}
        assert err["error"]["param"] == param and err["error"]["message"]
        assert post(url, good)[0] == 200                                          # still serving
    got, err, _ = post(server.url + "/nothing-here", good)
    assert got == 404 and err["error"]["code"] == "not_found"
    req = urllib.request.Request(url, method="GET")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 405 and "error" in json.loads(e.value.read())


def test_api_key(lm_dir):
    s = Running([served(lm_dir)], api_key="sekret")
    try:
        with pytest.raises(openai.AuthenticationError) as e:
            s.client().models.list()
        assert e.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").chat.completions.create(model="tiny-gpt", messages=HELLO)
        status, err, _ = post(s.url + "/chat/completions", {"model": "tiny-gpt", "messages": HELLO})
        assert status == 401 and "API key" in err["error"]["message"]
        assert [m.id for m in s.client("sekret").models.list()] == ["tiny-gpt"]
        with urllib.request.urlopen(s.url[:-3] + "/health") as r:   # health needs no key
            assert r.status == 200
    finally:
        s.stop()


def test_a_full_queue_answers_503_and_a_client_that_leaves_frees_its_slot(lm_dir):
    s = Running([served(lm_dir)], max_batch=1, max_queue=0)
    try:
        sched = s.model("tiny-gpt").scheduler
        long = {"model": "tiny-gpt", "prompt": "Once", "max_tokens": 4000, "stream": True}
        req = urllib.request.Request(s.url + "/completions", data=json.dumps(long).encode(),
                                     headers={"Content-Type": "application/json"})
        stream = urllib.request.urlopen(req)
        assert stream.readline().startswith(b"data: ")                  # it is generating
        status, err, headers = post(s.url + "/completions", {"model": "tiny-gpt", "prompt": "x"})
        assert status == 503 and headers.get("Retry-After") == "1"
        assert err["error"]["type"] == "server_error"
        stream.close()                                                   # the client leaves
        deadline = time.time() + 10
        while sched.stats()["active"] and time.time() < deadline:
            time.sleep(0.02)
        assert sched.stats() == {**sched.stats(), "active": 0, "queued": 0}
        status, body, _ = post(s.url + "/completions", {"model": "tiny-gpt", "prompt": "x",
                                                        "max_tokens": 3})
        assert status == 200 and body["usage"]["completion_tokens"] <= 3
        assert any("(client left)" in line for line in s.lines)
    finally:
        s.stop()


def test_a_window_longer_than_the_context_slides_as_generate_does(server, lm_dir, monkeypatch):
    """96-token context, 150 new tokens: the server refills the cache as `tinyllm generate` does."""
    r = server.client().completions.create(model="tiny-gpt-fp32", prompt="Long ago", seed=2,
                                           max_tokens=150, temperature=1.0)
    monkeypatch.setenv("TINYLLM_ONNX_PRECISION", "fp32")
    assert r.choices[0].text == generate_cli("-m", str(lm_dir), "--backend", "onnx", "-n", "150",
                                             "-t", "1", "--top-k", "0", "--seed", "2", "Long ago")


# ---- other clients ---------------------------------------------------------------------------------
def test_simonw_llm_cli_through_extra_openai_models_yaml(server, tmp_path):
    llm = shutil.which("llm", path=str(Path(sys.executable).parent)) or shutil.which("llm")
    if llm is None:
        pytest.skip("simonw/llm is not installed (pip install llm)")
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: tiny\n  model_name: tiny-gpt\n  api_base: \"{server.url}\"\n")
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path), "LLM_LOAD_PLUGINS": ""}
    out = subprocess.run([llm, "-m", "tiny", "-o", "temperature", "1", "-o", "seed", "3", "-o",
                          "max_tokens", "12", "-o", "stop", "QQQ", "Hello there"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    want = server.client().chat.completions.create(
        model="tiny-gpt", messages=HELLO, max_tokens=12, temperature=1, seed=3, stop="QQQ"
    ).choices[0].message.content
    assert out.stdout == want + "\n" and want.strip()


def test_tinyllm_judge_can_use_a_served_model(server):
    from tinyllm.tasks.judge import Judge

    before = len(server.lines)
    reply = Judge(server.url, model="tiny-gpt").ask("Score this answer from 0 to 100.")
    assert isinstance(reply, str)      # a random model's answer: any text, perhaps none
    assert server.logged("200 POST /v1/chat/completions tiny-gpt", before)


# ---- the command ------------------------------------------------------------------------------------
def test_tinyllm_serve_command_logs_requests_and_needs_its_key(lm_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYLLM_API_KEY": "k1"}
    proc = subprocess.Popen([sys.executable, "-m", "tinyllm", "serve", "-m", str(lm_dir),
                             "--port", "0", "--max-batch", "2"], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        assert "serving tiny-gpt on http://127.0.0.1:" in first and "API key required" in first
        url = first.split(" on ")[1].split()[0]
        while "ready" not in proc.stderr.readline():
            assert proc.poll() is None
        assert post(url + "/completions", {"model": "tiny-gpt", "prompt": "Hi"})[0] == 401
        status, body, _ = post(url + "/completions", {"model": "tiny-gpt", "prompt": "Hi",
                                                      "max_tokens": 3}, key="k1")
        assert status == 200
        assert "401 POST /v1/completions" in proc.stderr.readline()
        line = proc.stderr.readline()
        assert "200 POST /v1/completions tiny-gpt" in line and "tokens" in line and "ms" in line
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_warns_on_a_public_address_without_a_key(monkeypatch):
    from tinyllm.cli import serve_cmd

    assert serve_cmd.is_loopback("127.0.0.1") and serve_cmd.is_loopback("::1")
    assert serve_cmd.is_loopback("localhost") and not serve_cmd.is_loopback("0.0.0.0")
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    monkeypatch.setattr(serve_cmd, "bind", lambda host, port: socket.socket())
    monkeypatch.setattr(serve_cmd, "url_of", lambda sock: "http://0.0.0.0:8000/v1")
    monkeypatch.delenv("TINYLLM_API_KEY", raising=False)
    r = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert r.exit_code == 0 and "without an API key" in r.stderr
    r = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--api-key", "x"])
    assert "without an API key" not in r.stderr
    r = CliRunner().invoke(main, ["serve", "-m", "no-such-model"])
    assert r.exit_code == 2 and "no-such-model" in r.stderr
