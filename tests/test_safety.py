"""Never lose a user's work (docs/safety.md): run locks, no silent overwrites, every bad value a
clean error, bounded memory. Each test is a reproduction from issue 16; a refusal writes nothing
(the folder's files are compared by hash before and after)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tinyllm import modeldir, runlock
from tinyllm.cli import main
from tinyllm.errors import UserError

from conftest import shakespeare_file

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=32", "--set",
         "context_length=32", "--set", "batch_size=4", "--set", "eval_batches=1", "--set",
         "sample_tokens=0"]


def cli(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def snapshot(d: Path) -> dict[str, str]:
    """Every file under ``d`` by relative path -> sha256 (what "nothing written" compares)."""
    d = Path(d)
    if not d.exists():
        return {}
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def refused(r, *needles, code=2):
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    for n in needles:
        assert n in r.output, r.output


HOLD = """
import sys
from tinyllm import runlock
lock = runlock.acquire(sys.argv[1], command="tinyllm train --preset tiny --out " + sys.argv[1])
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


@contextmanager
def held(folder: Path):
    """Another process holding ``folder``'s run lock, as a running `tinyllm train` does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        yield p
    finally:
        p.stdin.close()
        p.wait(30)


@pytest.fixture
def corpus(tmp_path) -> Path:
    return shakespeare_file(tmp_path / "corpus.txt", 6000)


# ---- the run lock -----------------------------------------------------------------------------
def test_lock_is_reentrant_in_its_thread_refused_elsewhere_and_leaves_nothing(tmp_path):
    d = tmp_path / "new"
    with runlock.acquire(d, command="tinyllm train --out new") as lock:
        assert (d / runlock.LOCK_FILE).is_file()
        with runlock.acquire(d):  # the Trainer takes it again inside train_lm
            pass
        info = runlock.holder(d)
        assert info.pid == os.getpid() and info.command == "tinyllm train --out new"
        errors = []

        def other():
            try:
                runlock.acquire(d)
            except runlock.FolderLocked as e:
                errors.append(str(e))
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert errors and f"pid {os.getpid()} (`tinyllm train --out new`, since " in errors[0]
        with pytest.raises(UserError, match="cannot be deleted"):
            runlock.ensure_free(d, "it cannot be deleted")
        lock.release()
    assert runlock.holder(d) is None
    assert not d.exists()  # created for the lock and left empty: removed again


def test_a_stale_lock_is_taken_over(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # a crashed writer's record: the file is there, nobody holds the flock
    (d / runlock.LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "command": "tinyllm train"}))
    assert runlock.holder(d) is None
    with runlock.acquire(d):
        assert runlock.holder(d).pid == os.getpid()
    assert not (d / runlock.LOCK_FILE).exists()


def test_a_lock_held_for_a_dead_pid_is_taken_over(tmp_path):
    """An orphan kept the descriptor (the flock is held) but the recorded writer is gone."""
    d = tmp_path / "run"
    d.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    code = ("import fcntl, json, os, sys\n"
            f"fd = os.open({str(d / runlock.LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            f"os.write(fd, json.dumps({{'pid': {dead.pid}}}).encode())\n"
            "print('held', flush=True)\nsys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with runlock.acquire(d):
            assert runlock.holder(d).pid == os.getpid()
    finally:
        p.stdin.close()
        p.wait(30)


def test_every_writer_refuses_a_folder_being_written(tmp_path, tiny_lm_dir, corpus):
    target = tiny_lm_dir
    other = tmp_path / "other"
    shutil.copytree(tiny_lm_dir, other)
    csv = tmp_path / "data.csv"
    csv.write_text("label,text\n" + "".join(f"{'ab'[i % 2]},text {i}\n" for i in range(40)))
    commands = [
        ["train", "--preset", "tiny", "--data", corpus, "--out", target, "--max-steps", 1, *SMALL],
        ["train", "--preset", "tiny", "--data", corpus, "--out", target, "--overwrite", *SMALL],
        ["train", "--preset", "tiny", "--data", corpus, "--out", target, "--resume", *SMALL],
        ["finetune", "lm", "--model", other, "--data", corpus, "--out", target],
        ["finetune", "classify", "--data", csv, "--out", target, "--overwrite"],
        ["export-onnx", target],
        ["export-onnx", other, "-o", target, "--overwrite"],
        ["export-hf", other, "-o", target, "--overwrite"],
    ]
    with held(target) as p:
        before = snapshot(target)  # the holder's lock file included
        for args in commands:
            r = cli(*args)
            refused(r, "is being written by pid", str(p.pid), "`tinyllm train --preset tiny",
                    "since ")
            assert snapshot(target) == before, args
    assert runlock.holder(target) is None


def test_tui_delete_refuses_a_folder_being_written(tmp_path, monkeypatch):
    import asyncio

    from tinyllm_tui.app import TinyLLMApp
    from tui_fakes import make_model, wait_for

    monkeypatch.setattr(modeldir, "BUNDLED_MODELS", tmp_path / "none")
    d = make_model(modeldir.models_home(), "busy")

    async def scenario():
        app = TinyLLMApp(screen="models")
        async with app.run_test(size=(130, 34)) as pilot:
            table = app.screen.query_one("#models-table")
            await wait_for(pilot, lambda: table.row_count == 1)
            await pilot.press("d")
            await wait_for(pilot, lambda: any("is being written by pid" in n.message
                                              for n in app._notifications))
            assert not app.screen.query(".dialog")  # never asked: it cannot be deleted
            note = next(n.message for n in app._notifications if "pid" in n.message)
            assert f"pid {p.pid}" in note and "tinyllm train" in note

    with held(d) as p:
        before = snapshot(d)
        asyncio.run(scenario())
        assert snapshot(d) == before


# ---- one overwrite rule -----------------------------------------------------------------------
def test_export_hf_onto_a_model_needs_overwrite(tmp_path, tiny_lm_dir):
    target = tmp_path / "model"
    shutil.copytree(tiny_lm_dir, target)
    before = snapshot(target)
    r = cli("export-hf", tiny_lm_dir, "-o", target)
    refused(r, "already holds a model", "--overwrite")
    assert snapshot(target) == before
    assert "--force" not in cli("export-hf", "--help").output  # the old name: hidden, still works
    r = cli("export-hf", tiny_lm_dir, "-o", target, "--force")
    assert r.exit_code == 0, r.output
    assert not (target / "config.yaml").exists()  # the old model's files went
    assert (target / "config.json").is_file()


def test_import_refuses_a_non_empty_folder(tmp_path, tiny_gpt2_dir):
    hf = tmp_path / "hf"
    assert cli("export-hf", tiny_gpt2_dir, "-o", hf).exit_code == 0
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("my notes")
    before = snapshot(target)
    refused(cli("import-gpt2", hf, "-o", target), "already holds files", "notes.txt", "--overwrite")
    assert snapshot(target) == before
    r = cli("import-gpt2", hf, "-o", target, "--overwrite")
    assert r.exit_code == 0, r.output
    assert (target / "notes.txt").read_text() == "my notes"  # not a model's file: kept


def test_train_onto_a_model_needs_overwrite_which_removes_its_old_files(tmp_path, tiny_lm_dir,
                                                                        corpus):
    out = tmp_path / "m"
    shutil.copytree(tiny_lm_dir, out)
    (out / "model.onnx").write_bytes(b"an old graph")
    before = snapshot(out)
    r = cli("train", "--preset", "tiny", "--data", corpus, "--out", out, "--max-steps", 1, *SMALL)
    refused(r, "already holds a model", "--overwrite")
    assert snapshot(out) == before

    r = cli("train", "--preset", "tiny", "--data", corpus, "--out", out, "--max-steps", 2,
            "--overwrite", *SMALL)
    assert r.exit_code == 0, r.output
    assert not (out / "model.onnx").exists()  # stale: it no longer matches the weights

    # an interrupted write's temp files are cleared by the next run in the folder
    stale = [out / ".model.safetensors.abcd1234.tmp", out / "train_state" / ".state.pt.x1y2z3w4.tmp",
             out / ".export-onnx-q1w2e3" / "raw.onnx"]
    for p in stale:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half")
    r = cli("train", "--out", out, "--resume", "--max-steps", 3)
    assert r.exit_code == 0, r.output
    assert not any(p.exists() for p in stale) and not (out / ".export-onnx-q1w2e3").exists()
    assert not (out / runlock.LOCK_FILE).exists()


def test_export_onnx_into_another_model_needs_overwrite(tmp_path, tiny_lm_dir):
    from tinyllm.export.onnx import _prepare_export_dir

    other = tmp_path / "other"
    shutil.copytree(tiny_lm_dir, other)
    (other / "config.yaml").write_text((other / "config.yaml").read_text() + "note: another\n")
    before = snapshot(other)
    refused(cli("export-onnx", tiny_lm_dir, "-o", other), "already holds a model", "--overwrite")
    assert snapshot(other) == before
    # with --overwrite the other model's files go, but only once the new graphs are ready
    assert "model.safetensors" in _prepare_export_dir(tiny_lm_dir, other, True, lambda m: None)
    assert snapshot(other) == before
    # an earlier export of the same model is its own: replaced without asking
    again = tmp_path / "again"
    again.mkdir()
    shutil.copyfile(tiny_lm_dir / "config.yaml", again / "config.yaml")
    assert _prepare_export_dir(tiny_lm_dir, again, overwrite=False, log=lambda m: None) == []


# ---- bad values: clean errors, nothing written ------------------------------------------------
@pytest.mark.parametrize("item, needle", [
    ("model.n_layer=2.5", "model.n_layer must be a whole number, not 2.5"),
    ("model.n_layer=[1,2]", "model.n_layer must be a whole number"),
    ("model.n_embd=0", "model.n_embd must be a whole number >= 1"),
    ("model.dropout=2", "model.dropout must be in [0, 1)"),
    ("model.n_head=0", "model.n_head must be a whole number >= 1"),
    ("model.n_embd=1000000", "more than the"),
    ("train.device=tpu", "train.device must be auto, cpu, cuda, cuda:N or mps"),
    ("train.data={a: 1}", "train.data must be a string or null"),
    ("train.compile=maybe", "train.compile must be true or false, not 'maybe'"),
    ("train.lr=nan", "train.lr must be a finite number"),
])
def test_bad_set_values_are_refused_before_anything_is_written(tmp_path, corpus, item, needle):
    out = tmp_path / "out"
    r = cli("train", "--preset", "tiny", "--data", corpus, "--out", out, "--max-steps", 1,
            "--set", item)
    refused(r, needle)
    assert not out.exists()


def _model_copy(src: Path, dst: Path, **changes) -> Path:
    from tinyllm.config import read_yaml, write_yaml

    shutil.copytree(src, dst)
    meta = read_yaml(dst / "config.yaml")
    for k, v in changes.items():
        section, _, key = k.partition(".")
        if key:
            meta[section][key] = v
        else:
            meta[section] = v
    write_yaml(dst / "config.yaml", meta)
    return dst


@pytest.mark.parametrize("changes, needle", [
    ({"model.n_head": 0}, "model.n_head must be a whole number >= 1, not 0"),
    ({"model.n_layer": "two"}, "model.n_layer must be a whole number, not 'two'"),
    ({"model.n_embd": "1e9"}, "model.n_embd must be a whole number, not '1e9'"),
    ({"model.n_embd": 10 ** 9, "model.n_head": 1}, "of memory to hold, more than the"),
    ({"format": "tinyllm/99"}, "format tinyllm/99 is not one this tinyllm reads"),
    ({"task": "nosuchtask"}, "unknown task 'nosuchtask'"),
    ({"tokenizer.file": "../../../../etc/passwd"}, "lies outside the model directory"),
    ({"template": "/etc/hosts"}, "template must be a built-in template name or a mapping"),
])
def test_bad_config_yaml_values_are_clean_errors(tmp_path, tiny_lm_dir, changes, needle):
    d = _model_copy(tiny_lm_dir, tmp_path / "bad", **changes)
    commands = [["generate", "-m", d, "-n", 2, "x"]]
    if "memory" not in needle:  # `info` reads the shape, it allocates nothing
        commands.append(["info", d])
    for args in commands:
        refused(cli(*args), "config.yaml", needle)


def test_empty_config_yaml_is_refused(tmp_path, tiny_lm_dir):
    d = tmp_path / "empty"
    shutil.copytree(tiny_lm_dir, d)
    (d / "config.yaml").write_text("")
    refused(cli("generate", "-m", d, "x"), "config.yaml: empty")


@pytest.mark.parametrize("args, needle", [
    (["-t", "nan"], "temperature must be a finite number"),
    (["--repetition-penalty", "nan"], "repetition-penalty must be a finite number"),
    (["--seed", "-1"], "seed must be in [0, 2**63)"),
])
def test_bad_sampling_values(tiny_lm_dir, args, needle):
    refused(cli("generate", "-m", tiny_lm_dir, "-n", 3, *args, "x"), needle)


def test_nan_and_int_weights(tmp_path, tiny_lm_dir):
    import torch
    from safetensors.torch import load_file, save_file

    sd = load_file(tiny_lm_dir / "model.safetensors")
    nan = tmp_path / "nan"
    shutil.copytree(tiny_lm_dir, nan)
    save_file({k: torch.full_like(v, float("nan")) for k, v in sd.items()}, nan / "model.safetensors")
    refused(cli("generate", "-m", nan, "-n", 3, "x"), "the model produced NaN logits at step 1",
            code=1)
    ints = tmp_path / "ints"
    shutil.copytree(tiny_lm_dir, ints)
    save_file({k: (v * 100).to(torch.int32) for k, v in sd.items()}, ints / "model.safetensors")
    refused(cli("generate", "-m", ints, "-n", 3, "x"), "model.safetensors: tensor",
            "is int32, expected a float type")


@pytest.mark.parametrize("content, needle", [
    (bytes(range(256)) * 4, "not UTF-8"),
    (b"[]", "not a char tokenizer file"),
    (b'{"chars": [1, 2, 3]}', "must hold single characters"),
    (b'{"chars": ["a", "a"]}', "appears twice"),
])
def test_garbage_char_tokenizer_files(tmp_path, tiny_lm_dir, content, needle):
    d = tmp_path / "tok"
    shutil.copytree(tiny_lm_dir, d)
    (d / "tokenizer.json").write_bytes(content)
    refused(cli("generate", "-m", d, "-n", 3, "x"), "tokenizer.json", needle)


def test_a_tokenizer_with_too_few_characters_never_samples_past_it(tmp_path, tiny_lm_dir):
    d = tmp_path / "few"
    shutil.copytree(tiny_lm_dir, d)
    (d / "tokenizer.json").write_text('{"type": "char", "chars": ["a", "b"], "unk": "a"}')
    r = cli("generate", "-m", d, "-n", 20, "--seed", 1, "ab")
    assert r.exit_code == 0, r.output
    assert set(r.stdout.strip()) <= {"a", "b"}


def test_an_onnx_graph_with_the_wrong_inputs(tmp_path, tiny_lm_dir):
    import onnx
    from onnx import TensorProto, helper

    d = tmp_path / "onnx"
    shutil.copytree(tiny_lm_dir, d)
    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, None])
    y = helper.make_tensor_value_info("logits", TensorProto.INT64, [1, None])
    g = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), d / "model.onnx")
    refused(cli("generate", "-m", d, "--backend", "onnx", "-n", 2, "x"),
            f"{d / 'model.onnx'}: not a tinyllm language-model graph", "expected input_ids")


def test_one_broken_model_is_listed_as_broken_and_the_rest_still_list(tiny_lm_dir, monkeypatch,
                                                                      tmp_path):
    monkeypatch.setattr(modeldir, "BUNDLED_MODELS", tmp_path / "none")
    home = modeldir.models_home()
    shutil.copytree(tiny_lm_dir, home / "good")
    _model_copy(tiny_lm_dir, home / "bad", **{"model.n_head": 0})
    shutil.copytree(tiny_lm_dir, home / "garbled")
    (home / "garbled" / "tokenizer.json").write_bytes(b"\xff\xfe")
    r = cli("models")
    assert r.exit_code == 0, r.output
    assert "good" in r.stdout and "bad: broken:" in r.stdout and "model.n_head" in r.stdout
    assert "garbled: broken:" in r.stdout and "not UTF-8" in r.stdout
    rows = {m["name"]: m for m in json.loads(cli("models", "--json").stdout)}
    assert "broken" not in rows["good"] and rows["good"]["params"] > 0
    assert "model.n_head must be" in rows["bad"]["broken"]
    refused(cli("info", home / "bad"), "model.n_head must be")


def test_extra_csv_columns_are_refused_like_missing_ones(tmp_path):
    from tinyllm.data.classification import read_examples
    from tinyllm.errors import DataError

    p = tmp_path / "d.csv"
    p.write_text("label,text\nham,hello\nspam,win,money now\n")
    with pytest.raises(DataError, match=r"d.csv:3: 3 fields, but the header has 2"):
        read_examples(p)


def test_instruct_json_object_gets_one_answer_from_the_cli_reader_and_the_tui(tmp_path):
    from tinyllm.data.instruction import read_instructions
    from tinyllm_tui.datafile import load_dataset

    p = tmp_path / "one.json"
    p.write_text('{"instruction": "say hi", "input": "", "output": "hi"}\n')
    assert [e.instruction for e in read_instructions(p)] == ["say hi"]
    ds = load_dataset(p)
    assert ds.kind == "instruction" and len(ds) == 1


def test_eval_with_many_labels_keeps_the_matrix_for_json(tmp_path):
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import CharTokenizer

    labels = [f"label{i:04d}" for i in range(1000)]
    tok = CharTokenizer(list("abcdefghij "))
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=16, n_layer=1, n_head=2,
                            n_embd=16, n_classes=len(labels)))
    d = save_model(model, tok, tmp_path / "many", task="classify", extra={"labels": labels})
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"text": "abc" * (i % 5 + 1), "label": labels[i % 1000]}) + "\n"
                            for i in range(1200)))
    r = cli("eval", d, "--data", data, "--backend", "torch")
    assert r.exit_code == 0, r.output
    assert len(r.stdout) < 200_000 and "most frequent confusions" in r.stdout
    assert "confusion matrix (rows" not in r.stdout
    full = json.loads(cli("eval", d, "--data", data, "--backend", "torch", "--json").stdout)
    assert len(full["metrics"]["confusion"]) == 1000


def test_a_pickled_train_state_gets_tinyllms_own_message(tmp_path, tiny_lm_dir):
    import fractions

    import torch

    from tinyllm.train.state import load_state

    p = tmp_path / "state.pt"
    torch.save({"x": fractions.Fraction(1, 3)}, p)
    with pytest.raises(UserError) as e:
        load_state(p)
    assert "pickled Python objects" in str(e.value) and "weights_only" not in str(e.value)


# ---- memory bounds ----------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["generate", "-n", "1", "-"], ["tokenize", "-"]])
def test_stdin_prompts_are_limited(command):
    r = cli(*command, input="y\n" * 600_000)
    refused(r, "stdin: more than 1.0 MiB")


def test_non_regular_files_are_refused(tmp_path, corpus):
    from tinyllm_tui.datafile import load_dataset
    from tinyllm.errors import DataError

    t0 = time.time()
    with pytest.raises(DataError, match="not a regular file"):
        load_dataset("/dev/zero")  # the TUI's Data screen reader
    refused(cli("finetune", "classify", "--data", "/dev/zero", "--out", tmp_path / "x"),
            "not a regular file")
    refused(cli("train", "--preset", "tiny", "--data", "/dev/zero", "--out", tmp_path / "y"),
            "not a regular file")
    refused(cli("train", "/dev/zero"), "not a regular file")
    assert time.time() - t0 < 60  # nothing read /dev/zero for long
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_classify_cuts_a_long_line_before_tokenising_it():
    from tinyllm.engines import open_engine
    from tinyllm.runtime.textbatch import encode_texts

    engine = open_engine(modeldir.DEFAULT_CLASSIFIER, "torch")
    tok = engine.tokenizer
    seen = []
    real = tok.encode_batch

    def spy(texts):
        seen.extend(len(t) for t in texts)
        return real(texts)
    long_line = "free entry win cash now " * 400_000  # 9.6 MB
    tok.encode_batch = spy
    try:
        rows = encode_texts(tok, [long_line], engine.context_length)
        probs_long = engine.classify([long_line])
    finally:
        del tok.encode_batch
    assert max(seen) <= 2 * (engine.context_length + 1) * tok.max_token_chars < 10_000
    assert rows[0] == tok.encode(long_line[:100_000])[:engine.context_length]
    np.testing.assert_allclose(probs_long, engine.classify([long_line[:100_000]]), atol=1e-6)


# ---- a full disk ------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (root only; skipped elsewhere)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    d = tmp_path / "small"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _temp_files(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".partial")
            or p.name.startswith(".export-onnx-")]


def test_full_disk_during_training_keeps_the_last_checkpoint(small_disk, corpus):
    out = small_disk / "run"
    r = cli("train", "--preset", "tiny", "--data", corpus, "--out", out, "--max-steps", 6,
            "--eval-every", 2, "--set", "n_embd=64", "--set", "sample_tokens=0",
            "--set", "eval_batches=1", "--set", "batch_size=2", "--set", "context_length=32")
    refused(r, "no space left on tmpfs", "writing", "the last checkpoint (step 2) is intact",
            code=1)
    assert not _temp_files(small_disk)
    from tinyllm.train.state import load_state, state_path

    assert load_state(state_path(out))["step"] == 2  # the checkpoint the message names, whole


def test_full_disk_while_tokenising(small_disk, tmp_path):
    corpus = shakespeare_file(tmp_path / "big.txt", 1_100_000)
    big = tmp_path / "big4.txt"
    big.write_text(corpus.read_text() * 4)
    r = cli("train", "--preset", "tiny", "--data", big, "--out", tmp_path / "o", "--max-steps", 1,
            "--set", f"cache_dir={small_disk / 'cache'}")
    refused(r, "no space left on tmpfs", "token cache", code=1)
    assert not _temp_files(small_disk)


def test_full_disk_during_export(small_disk, tmp_path):
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import CharTokenizer

    tok = CharTokenizer(list("abcdefgh "))
    torch.manual_seed(0)
    d = save_model(GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=32, n_layer=4,
                                   n_head=2, n_embd=192)), tok, tmp_path / "m")  # ~7 MB graph
    r = cli("export-onnx", d, "-o", small_disk / "onnx")
    refused(r, "no space left on tmpfs", code=1)
    assert not _temp_files(small_disk)


def test_finetune_into_its_own_model_is_refused(tiny_lm_dir, corpus):
    before = snapshot(tiny_lm_dir)
    r = cli("finetune", "lm", "--model", tiny_lm_dir, "--data", corpus, "--out", tiny_lm_dir,
            "--overwrite")
    refused(r, "is the model being fine-tuned")
    assert snapshot(tiny_lm_dir) == before


def test_an_imported_config_json_is_validated_like_every_config():
    from tinyllm.convert.gpt2 import GPT2Error, model_config_from_hf

    with pytest.raises(GPT2Error, match="model.n_layer must be a whole number, not 2.5"):
        model_config_from_hf({"model_type": "gpt2", "n_layer": 2.5}, "config.json")


def test_tui_train_screen_refuses_to_start_in_a_folder_being_written(tmp_path):
    import asyncio

    from tinyllm_tui.app import TinyLLMApp
    from tinyllm_tui.runner import RunSpec
    from tui_fakes import wait_for

    out = modeldir.models_home() / "busy-run"
    started = []

    async def scenario():
        app = TinyLLMApp(screen="train", trainer_factory=lambda spec: started.append(spec))
        async with app.run_test(size=(130, 40)) as pilot:
            app.screen.spec_from_form = lambda resume=False: RunSpec(out=out)
            app.screen.action_start()
            await wait_for(pilot, lambda: any("is being written by pid" in n.message
                                              for n in app._notifications))
    with held(out):
        asyncio.run(scenario())
    assert not started


def test_overwrite_refused_late_still_leaves_the_old_model(tmp_path, tiny_lm_dir, corpus):
    out = tmp_path / "m"
    shutil.copytree(tiny_lm_dir, out)
    before = snapshot(out)
    r = cli("train", "--preset", "tiny", "--data", corpus, "--out", out, "--overwrite", *SMALL,
            "--set", "seq_len=1000")  # refused once the model is built, after the folder checks
    refused(r, "longer than the model's context_length")
    assert snapshot(out) == before
