"""The torch-free ONNX runtime: decoder, classifier, engine and the CLI's onnx path.

Graphs here come from the TorchScript exporter, which takes under a second; the dynamo exporter
(the default) is covered by tests/export/test_export_onnx.py, and the runtime does not care which one
wrote a graph. Generation against torch (greedy, sampling, the sliding window) is checked there, on
a graph of each exporter.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tinyllm.checkpoint import load_model, save_model
from tinyllm.cli import main
from tinyllm.config import ModelConfig
from tinyllm.errors import UserError
from tinyllm.export.onnx import export_model
from tinyllm.engines.torch_engine import TorchDecoder
from tinyllm.models.decoder import GPT
from tinyllm.engines import open_engine
from tinyllm.runtime.onnx_engine import OnnxEngine, onnx_graph
from tinyllm.runtime.onnx_decoder import OnnxDecoder
from tinyllm.tokenizer import CharTokenizer

DATA = Path(__file__).resolve().parents[2] / "tinyllm" / "bundled" / "data"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chars():
    return CharTokenizer.train((DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")[:20000])


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, chars) -> Path:
    """A random char LM (2 layers, 32 wide, context 96) exported to fp32 and int8 graphs."""
    torch.manual_seed(1)
    model = GPT(ModelConfig(vocab_size=chars.vocab_size, context_length=96, n_layer=2, n_head=2,
                            n_embd=32))
    d = save_model(model, chars, tmp_path_factory.mktemp("rt") / "lm")
    export_model(d, int8=True, force_torchscript=True)
    return d


@pytest.fixture(scope="module")
def cls_dir(tmp_path_factory, chars) -> Path:
    """A random char classifier (ham/spam) exported to an fp32 graph."""
    torch.manual_seed(2)
    model = GPT(ModelConfig(vocab_size=chars.vocab_size, context_length=48, n_layer=2, n_head=2,
                            n_embd=32, n_classes=2))
    d = save_model(model, chars, tmp_path_factory.mktemp("rt") / "cls", task="classify",
                   extra={"labels": ["ham", "spam"]})
    export_model(d, force_torchscript=True)
    return d


def _torch_free(code: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; it must print TORCH=<bool> on stderr at exit."""
    probe = ("import atexit, sys; atexit.register(lambda: sys.stderr.write("
             "'TORCH=%s\\n' % ('torch' in sys.modules)))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", probe + code, *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)


# ---- no torch ---------------------------------------------------------------------------------
def test_runtime_imports_without_torch():
    r = _torch_free("import tinyllm.runtime, tinyllm.runtime.engine, tinyllm.runtime.onnx_engine, tinyllm.engines, tinyllm.runtime.onnx_decoder, "
                    "tinyllm.runtime.onnx_classifier, tinyllm.runtime.session, tinyllm.runtime.sampling")
    assert r.returncode == 0, r.stderr
    assert "TORCH=False" in r.stderr


def test_cli_onnx_paths_never_import_torch(lm_dir, cls_dir):
    cli = "from tinyllm.cli import main; main()"
    r = _torch_free(cli, "classify", "--backend", "onnx", "--model", str(cls_dir),
                    stdin="WINNER! claim your prize\nsee you at 6\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 2 and r.stdout.split("\t")[0] in ("ham", "spam")
    assert "TORCH=False" in r.stderr
    r = _torch_free(cli, "generate", "--model", str(lm_dir), "-n", "12", "--seed", "1", "ROMEO:")
    assert r.returncode == 0, r.stderr
    assert "using the onnx backend" not in r.stderr  # chosen by itself; no note when piped
    assert "TORCH=False" in r.stderr and r.stdout.strip()


# ---- decoder ----------------------------------------------------------------------------------
def test_decoder_matches_torch_prefill_and_cached_steps(lm_dir):
    model = load_model(lm_dir)
    dec = OnnxDecoder(lm_dir / "model.onnx")
    ref = TorchDecoder(model)
    ids = torch.randint(0, model.config.vocab_size, (40,)).tolist()
    np.testing.assert_allclose(dec.prefill(ids[:25]), ref.prefill(ids[:25]), atol=1e-4)
    for t in ids[25:]:
        np.testing.assert_allclose(dec.step(t), ref.step(t), atol=1e-4)
    assert dec.length == 40 and dec.cache[0].shape() == [1, 2, 40, 16]


def test_decoder_batch_and_lengths_are_dynamic(lm_dir):
    model = load_model(lm_dir)
    dec = OnnxDecoder(lm_dir / "model.onnx")
    x = torch.randint(0, model.config.vocab_size, (3, 17))
    with torch.no_grad():
        want = model(x).numpy()
    got = dec.run(x[:, :9].numpy())
    np.testing.assert_allclose(got, want[:, :9], atol=1e-4)
    got = dec.run(x[:, 9:].numpy(), reset=False)  # 8 tokens after a cache of 9
    np.testing.assert_allclose(got, want[:, 9:], atol=1e-4)


def test_int8_graph_runs_and_stays_close(lm_dir):
    eng = open_engine(lm_dir, "onnx")
    assert eng.graph.name == "model.int8.onnx" and eng.precision == "int8"
    fp = OnnxDecoder(lm_dir / "model.onnx")
    ids = list(range(1, 30))
    a, b = eng.decoder.prefill(ids), fp.prefill(ids)
    # the random model's logits are small (|max| ~0.3), and on AVX2 without VNNI ORT's u8s8
    # kernel rounds through int16 pairs: measured 0.077 of the largest logit there, under 0.05 with VNNI
    assert np.abs(a - b).max() < 0.1 * np.abs(b).max()


# ---- engine -----------------------------------------------------------------------------------
def test_engine_picks_graph_and_says_so_through_log(lm_dir, capsys, monkeypatch):
    notes = []
    eng = open_engine(lm_dir, log=notes.append)
    assert eng.backend == "onnx" and eng.graph.name == "model.int8.onnx"
    assert notes == ["using the onnx backend (model.int8.onnx found); --backend torch to override"]
    assert capsys.readouterr().err == ""  # the library never prints
    monkeypatch.setenv("TINYLLM_ONNX_PRECISION", "fp32")
    assert onnx_graph(lm_dir).name == "model.onnx"
    assert open_engine(lm_dir).precision == "fp32"
    monkeypatch.setenv("TINYLLM_ONNX_PRECISION", "fp16")
    with pytest.raises(UserError, match="unknown ONNX precision"):
        onnx_graph(lm_dir)


def test_engine_without_graph_is_a_clear_error(tiny_lm_dir):
    assert open_engine(tiny_lm_dir).backend == "torch"
    with pytest.raises(UserError, match="no model.onnx; run `tinyllm export-onnx"):
        open_engine(tiny_lm_dir, "onnx")
    r = CliRunner().invoke(main, ["generate", "--backend", "onnx", "-m", str(tiny_lm_dir), "x"])
    assert r.exit_code == 2 and "export-onnx" in r.output


def test_stale_graph_warns(lm_dir, tmp_path, capsys):
    import shutil

    import yaml

    d = tmp_path / "copy"
    shutil.copytree(lm_dir, d)
    meta = yaml.safe_load((d / "config.yaml").read_text())
    meta["saved_at"] = "2001-01-01T00:00:00+0000"
    (d / "config.yaml").write_text(yaml.safe_dump(meta))
    notes = []
    OnnxEngine(__import__("tinyllm.modeldir").modeldir.find(d), log=notes.append)
    assert any("exported from other weights" in n for n in notes)
    assert capsys.readouterr().err == ""


def test_corrupt_graph_is_a_user_error(tmp_path, lm_dir):
    import shutil

    d = tmp_path / "bad"
    shutil.copytree(lm_dir, d)
    (d / "model.int8.onnx").write_bytes(b"not a graph")
    with pytest.raises(UserError, match="model.int8.onnx: not a loadable ONNX graph"):
        open_engine(d, "onnx")


# ---- classifier -------------------------------------------------------------------------------
TEXTS = ["WINNER!! You have won a prize, call now", "", "ok", "see you at the station at 6 " * 4,
         "Free entry in 2 a wkly comp to win FA Cup final tkts", "é ü?"]


def test_classifier_matches_torch(cls_dir):
    onnx_eng, torch_eng = open_engine(cls_dir, "onnx"), open_engine(cls_dir, "torch")
    assert onnx_eng.labels == ["ham", "spam"] and onnx_eng.kind == "classify"
    a, b = onnx_eng.classify(TEXTS), torch_eng.classify(TEXTS)
    assert a.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(onnx_eng.classifier.classify(TEXTS, chunk=1), a, atol=1e-6)
    assert onnx_eng.classify([]).shape == (0, 2)


def test_classifier_cannot_generate_and_lm_cannot_classify(cls_dir, lm_dir):
    with pytest.raises(UserError, match="does not generate"):
        next(open_engine(cls_dir, "onnx").generate("hi"))
    with pytest.raises(UserError, match="cannot classify"):
        open_engine(lm_dir, "onnx").classify(["hi"])


def test_classify_cli_onnx_matches_torch(cls_dir):
    lines = "\n".join(TEXTS) + "\n"  # classify reads the stdin file descriptor: a real process
    runs = [subprocess.run([sys.executable, "-m", "tinyllm", "classify", "--model", str(cls_dir),
                            "--backend", b, "--format", "jsonl"], input=lines, capture_output=True,
                           text=True, timeout=120) for b in ("onnx", "torch")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    import json

    a, b = ([json.loads(x) for x in r.stdout.splitlines()] for r in runs)
    assert len(a) == len(TEXTS)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    for x, y in zip(a, b):
        if x["probs"]:
            assert abs(x["probs"]["spam"] - y["probs"]["spam"]) < 1e-5
