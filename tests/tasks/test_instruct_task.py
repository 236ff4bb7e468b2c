"""The instruct task end to end on a tiny model: finetune lowers the loss, generate answers with the
response only, eval writes the responses JSON, and a fake judge server on 127.0.0.1 scores them."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.tasks.judge import endpoint, parse_score

from conftest import SHARED_DATA

N_ENTRIES = 80  # split 68 train / 8 test / 4 val


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny BPE model fine-tuned to answer "With input." or "No input." (it must read the
    prompt to choose), through `tinyllm finetune instruct`."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.data.templates import format_prompt
    from tinyllm.tokenizer import BPETokenizer

    d = tmp_path_factory.mktemp("instruct")
    book = json.loads((SHARED_DATA / "instruction-data.json").read_text(encoding="utf-8"))
    rows = [{"instruction": e["instruction"], "input": e["input"],
             "output": "With input." if e["input"] else "No input."} for e in book[:N_ENTRIES]]
    (d / "data.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    tok = BPETokenizer.train([format_prompt(None, r["instruction"], r["input"]) + r["output"]
                              for r in rows], vocab_size=600)
    torch.manual_seed(0)
    save_model(GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=160, n_layer=2, n_head=2,
                               n_embd=32)), tok, d / "base")
    result = run("finetune", "instruct", "--data", d / "data.json", "--model", d / "base",
                 "--out", d / "ft", "--mask-prompt", "--max-steps", 200, "--lr", 1e-2,
                 "--eval-every", 100, "--json")
    return d, json.loads(result.stdout)


def test_finetune_lowers_the_loss_and_records_the_template(trained):
    d, report = trained
    m = report["metrics"]
    assert report["split"] == {"train": 68, "test": 8, "val": 4}
    assert m["val_loss"] < 0.2 * m["val_loss_before"]
    meta = yaml.safe_load((d / "ft" / "config.yaml").read_text())
    assert meta["task"] == "instruct"
    assert meta["template"]["name"] == "alpaca" and "{instruction}" in meta["template"]["prompt"]
    assert meta["train"]["mask_prompt"] is True and meta["train"]["n_test"] == 8
    assert meta["train"]["val_loss_before"] == pytest.approx(m["val_loss_before"])
    assert len(json.loads((d / "ft" / "test.json").read_text())) == 8
    evals = [json.loads(line) for line in (d / "ft" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert [e["step"] for e in evals] == [100, 200] and "sample" in evals[-1]


def test_generate_prints_only_the_response(trained):
    d, _ = trained
    out = run("generate", "--model", d / "ft", "--temperature", 0, "Name a primary color.").stdout
    assert out == "No input.\n"


def test_engine_passes_the_input_through_the_template(trained):
    from tinyllm.engines import open_engine
    from tinyllm.runtime.sampling import SamplingConfig

    engine = open_engine(trained[0] / "ft")
    cfg = SamplingConfig(temperature=0)
    assert "".join(engine.generate("Sort the words.", cfg, input="pear, apple")) == "With input."


def test_eval_writes_responses_beside_the_entries(trained, tmp_path):
    d, _ = trained
    out = tmp_path / "responses.json"
    report = json.loads(run("eval", d / "ft", "--data", d / "data.json", "--responses", out,
                            "--json").stdout)
    assert report["split"] == "test" and report["n"] == 8 and report["responses"] == str(out)
    assert 0 < report["metrics"]["loss"] < 0.5 and 0 < report["metrics"]["val_loss"] < 0.5
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [sorted(r) for r in rows] == [["input", "instruction", "model_response", "output"]] * 8
    test = json.loads((d / "ft" / "test.json").read_text())
    assert [r["instruction"] for r in rows] == [t["instruction"] for t in test]
    assert sum(r["model_response"] == r["output"] for r in rows) >= 7
    # --split all on the training file: every entry answered, the validation loss still known
    everything = json.loads(run("eval", d / "ft", "--data", d / "data.json", "--split", "all",
                                "--responses", tmp_path / "all.json", "--json").stdout)
    assert everything["n"] == N_ENTRIES
    assert everything["metrics"]["val_loss"] == pytest.approx(report["metrics"]["val_loss"])
    # another file (here the saved test split) is answered whole; the human report names the file
    text = run("eval", d / "ft", "--data", d / "ft" / "test.json", "--responses", out).stdout
    assert "(8 examples)" in text and str(out) in text
    assert "val_loss" not in text  # the validation split is known only for the training file


def test_eval_answers_through_the_chosen_backend(trained, tmp_path):
    """--backend onnx answers through ONNX Runtime; the loss is the torch model's either way."""
    import shutil

    from tinyllm.export.onnx import export_model

    d, _ = trained
    model = tmp_path / "ft"
    shutil.copytree(d / "ft", model)
    export_model(model, force_torchscript=True)
    reports = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.json"
        reports[backend] = json.loads(run("eval", model, "--data", d / "data.json", "--backend",
                                          backend, "--responses", out, "--json").stdout)
        assert reports[backend]["backend"] == backend
    assert reports["onnx"]["metrics"] == reports["torch"]["metrics"]
    answers = [[r["model_response"] for r in json.loads((tmp_path / f"{b}.json").read_text())]
               for b in ("torch", "onnx")]
    assert answers[0] == answers[1] and sum(a in ("With input.", "No input.") for a in answers[1]) >= 7
    # without --backend the exported graph is used, as `tinyllm classify` does
    auto = json.loads(run("eval", model, "--data", d / "data.json", "--responses",
                          tmp_path / "auto.json", "--json").stdout)
    assert auto["backend"] == "onnx"


class FakeJudge(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.requests.append({"path": self.path, **body})
        prompt = body["messages"][0]["content"]
        if "model response" not in prompt:  # the check before the first entry
            score = "100"
        else:
            score = "Score: 90" if "`With input.`" in prompt.split("model response")[1] else "40"
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": score}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    server = HTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeJudge.requests = []
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


def test_judge_scores_each_response(trained, tmp_path, judge_server):
    d, _ = trained
    out = tmp_path / "judged.json"
    report = json.loads(run("eval", d / "ft", "--data", d / "data.json", "--responses", out,
                            "--judge-url", judge_server, "--judge-model", "fake-llama",
                            "--json").stdout)
    rows = json.loads(out.read_text())
    assert len(FakeJudge.requests) == 1 + 8  # checked once before the first entry, then each
    assert "model response" not in FakeJudge.requests[0]["messages"][0]["content"]
    first = FakeJudge.requests[1]
    assert first["path"] == "/v1/chat/completions" and first["model"] == "fake-llama"
    assert first["temperature"] == 0
    assert rows[0]["instruction"] in first["messages"][0]["content"]
    assert all(r["score"] == (90 if r["model_response"] == "With input." else 40) for r in rows)
    assert report["metrics"]["judged"] == 8
    assert report["metrics"]["judge_score"] == pytest.approx(sum(r["score"] for r in rows) / 8)


def test_unreachable_judge_is_said_before_the_first_entry(trained, tmp_path):
    import socket

    d, _ = trained
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "r.json"
    result = run("eval", d / "ft", "--data", d / "ft" / "test.json", "--responses", out,
                 "--judge-url", f"http://127.0.0.1:{port}", ok=False)
    assert result.exit_code == 2
    assert "cannot connect" in result.stderr and "Traceback" not in result.output
    assert "answering" not in result.stderr and not out.exists()  # nothing answered in vain


def test_judge_helpers():
    assert parse_score("Score: 87/100") == 87
    assert parse_score("150") == 100 and parse_score("-3") == 0 and parse_score("none") is None
    assert endpoint("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert endpoint("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"
    with pytest.raises(Exception, match="http"):
        endpoint("localhost:11434")


# ---- bad input: one message naming the problem, exit 2 -------------------------------------------
def test_finetune_needs_a_model(tmp_path):
    r = run("finetune", "instruct", "--data", SHARED_DATA / "instruction-data.json",
            "--out", tmp_path / "o", ok=False)
    assert r.exit_code == 2 and "needs --model" in r.stderr


def test_finetune_bad_data_names_the_entry(tmp_path, tiny_gpt2_dir):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"input": "x", "output": "y"}]))
    r = run("finetune", "instruct", "--data", f, "--model", tiny_gpt2_dir, "--out", tmp_path / "o",
            ok=False)
    assert r.exit_code == 2 and "bad.json: entry [1]: missing 'instruction'" in r.stderr


def test_finetune_char_model_needs_end_of_text(tmp_path, tiny_lm_dir):
    r = run("finetune", "instruct", "--data", SHARED_DATA / "instruction-data.json",
            "--model", tiny_lm_dir, "--out", tmp_path / "o", ok=False)
    assert r.exit_code == 2 and "end-of-text" in r.stderr


def test_finetune_unknown_template(tmp_path, tiny_gpt2_dir):
    r = run("finetune", "instruct", "--data", SHARED_DATA / "instruction-data.json",
            "--model", tiny_gpt2_dir, "--out", tmp_path / "o", "--template", "vicuna", ok=False)
    assert r.exit_code == 2 and "unknown template 'vicuna'" in r.stderr


def test_eval_split_test_needs_the_training_file(trained, tmp_path):
    d, _ = trained
    r = run("eval", d / "ft", "--data", d / "ft" / "test.json", "--split", "test", ok=False)
    assert r.exit_code == 2 and "--split all" in r.stderr


def test_default_responses_path_avoids_bundled_models(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from tinyllm.tasks.instruct import default_responses_path

    own = SimpleNamespace(path=tmp_path / "mine", source="path")
    own.path.mkdir()
    notes = []
    assert default_responses_path(own, notes.append) == own.path / "responses.json"
    monkeypatch.chdir(tmp_path)
    bundled = SimpleNamespace(path=tmp_path / "pkg" / "shakespeare-char", source="bundled")
    assert default_responses_path(bundled, notes.append) == Path("shakespeare-char-responses.json")
    assert len(notes) == 1 and "read-only" in notes[0]
    assert capsys.readouterr().err == ""  # said through log=, never printed
