"""`tinyllm train` from the command line: a short run, resume, presets, and clear errors (exit 2)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tinyllm.cli import main

from conftest import SHARED_DATA

SMALL = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=32", "--set", "context_length=32",
         "--set", "batch_size=4", "--set", "eval_batches=1", "--set", "sample_tokens=10"]


def invoke(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def assert_user_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit)
    for n in needles:
        assert n in result.output, result.output


@pytest.fixture
def verdict(tmp_path) -> Path:
    p = tmp_path / "the-verdict.txt"
    p.write_text((SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8"), encoding="utf-8")
    return p


def test_short_run_then_resume_then_generate(verdict, tmp_path):
    out = tmp_path / "m"
    r = invoke("--preset", "tiny", "--data", verdict, "--out", out, "--max-steps", 6, "--eval-every", 3,
               *SMALL)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out.resolve())  # stdout: the model directory, for scripts
    assert (out / "config.yaml").is_file() and (out / "tokenizer.json").is_file()

    r = invoke("--data", verdict, "--out", out, "--max-steps", 6, *SMALL)
    assert_user_error(r, "already holds a training run", "--resume")

    r = invoke("--out", out, "--resume", "--max-steps", 9, "--set", f"data={tmp_path / 'other.txt'}")
    assert_user_error(r, "cannot change on resume")

    r = invoke("--out", out, "--resume", "--max-steps", 9, "--json")
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    assert done["event"] == "done" and done["step"] == 9 and done["reason"] == "finished"

    g = CliRunner().invoke(main, ["generate", "--model", str(out), "--max-new-tokens", "8", "--seed", "1",
                                  "I HAD"])
    assert g.exit_code == 0, g.output
    assert len(g.stdout) > 0


def test_overwrite_starts_over(verdict, tmp_path):
    out = tmp_path / "m"
    assert invoke("--data", verdict, "--out", out, "--max-steps", 2, "-q", *SMALL).exit_code == 0
    r = invoke("--data", verdict, "--out", out, "--max-steps", 2, "--overwrite", "--json", *SMALL)
    assert r.exit_code == 0, r.output
    starts = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "start" for e in starts) == 1


def test_empty_corpus(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("")
    assert_user_error(invoke("--data", p, "--out", tmp_path / "o"), "empty.txt", "empty")


def test_whitespace_corpus(tmp_path):
    p = tmp_path / "blank.txt"
    p.write_text("   \n\n  \n")
    assert_user_error(invoke("--data", p, "--out", tmp_path / "o", "--tokenizer", "gpt2"),
                      "blank.txt", "empty")


def test_corpus_shorter_than_one_window(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("To be or not to be.\n" * 3)
    assert_user_error(invoke("--preset", "tiny", "--data", p, "--out", tmp_path / "o"),
                      "short.txt", "fewer than one window", "seq_len")


def test_validation_split_shorter_than_one_window(tmp_path):
    p = tmp_path / "smallish.txt"
    p.write_text("abcdefghij" * 80)  # 800 chars: train 720, val 80 < 129
    assert_user_error(invoke("--preset", "tiny", "--data", p, "--out", tmp_path / "o"),
                      "smallish.txt (validation split", "val_fraction=0")


def test_non_utf8_corpus(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("first line\ncaf\xe9 au lait\n".encode("latin-1"))
    assert_user_error(invoke("--data", p, "--out", tmp_path / "o"), "latin1.txt:2: not UTF-8",
                      "byte offset 14")


def test_missing_data_and_bad_options(tmp_path):
    assert_user_error(invoke("--data", tmp_path / "nope.txt", "--out", tmp_path / "o"), "nope.txt")
    assert_user_error(invoke("--out", tmp_path / "o"), "no training data")
    assert_user_error(invoke("--data", "x.txt", "--set", "nonsense=1"), "nonsense")
    assert_user_error(invoke("--data", "x.txt", "--set", "train.lr=-1"), "lr")
    assert_user_error(invoke("--preset", "huge-thing", "--data", "x.txt"), "unknown preset", "tiny")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1\n")
    assert_user_error(invoke(bad, "--data", "x.txt"), "bad.yaml")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {preset: tiny}\ntrain: {wobble: 3}\n")
    assert_user_error(invoke(cfg, "--data", "x.txt"), "c.yaml", "wobble")


def test_config_yaml_paths_and_precedence(tmp_path, verdict):
    from tinyllm.train.runconfig import load_run

    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: exp\nmodel: {preset: tiny, dropout: 0.1}\n"
                   "train: {data: the-verdict.txt, lr: 3e-4, max_steps: 10}\n")
    run = load_run(cfg, max_steps=20, sets=["train.lr=1e-3", "n_layer=3"])
    assert run.train.data == str(verdict.resolve())       # relative to the YAML
    assert run.train.lr == 1e-3 and run.train.max_steps == 20  # --set > option > YAML
    assert run.model["n_layer"] == 3 and run.model["dropout"] == 0.1 and run.model["n_embd"] == 128
    assert run.name == "exp" and Path(run.train.out).name == "exp"  # default: $TINYLLM_HOME/models/exp


def test_bundled_training_preset_resolves():
    from tinyllm.train.runconfig import load_run, training_presets

    assert "shakespeare-char" in training_presets()
    run = load_run(preset="shakespeare-char")
    assert Path(run.train.data).is_file() and Path(run.train.data).name == "tinyshakespeare.txt"
    assert run.train.tokenizer == "char"
    r = CliRunner().invoke(main, ["train", "--list-presets", "--json"])
    names = {p["name"] for p in json.loads(r.stdout)}
    assert {"tiny", "gpt2", "shakespeare-char"} <= names


def test_ten_minute_preset_is_bounded_by_time_not_steps():
    """`shakespeare-char-10min` (README: val 1.52 in 10 minutes): the budget ends it, the schedule
    decays over the budget, and the bundled model is built from the same recipe."""
    from tinyllm.bundled.build import SHAKESPEARE_PRESET
    from tinyllm.train.runconfig import load_run
    from tinyllm.train.schedule import lr_at

    run = load_run(preset="shakespeare-char-10min")
    cfg = run.train
    assert cfg.max_time_minutes == 10 and cfg.max_steps >= 50_000 and cfg.tokenizer == "char"
    assert run.model["n_layer"] == 4 and run.model["n_embd"] == 128 and run.model["dropout"] == 0.0
    assert lr_at(100, cfg, wall=599.0) < 1.01 * cfg.min_lr + 1e-3 * (cfg.lr - cfg.min_lr)
    assert lr_at(100, cfg, wall=60.0) > 0.9 * cfg.lr
    assert SHAKESPEARE_PRESET == "shakespeare-char-10min"


def test_resume_of_a_finished_run_is_refused_and_writes_nothing(verdict, tmp_path):
    out = tmp_path / "done"
    r = invoke("--preset", "tiny", "--data", verdict, "--out", out, "--max-steps", 4, "--eval-every", 2,
               *SMALL)
    assert r.exit_code == 0, r.output
    before = {p.name: p.read_bytes() for p in (out / "metrics.jsonl", out / "train.yaml")}
    for extra in ([], ["-q"], ["--max-steps", 3], ["--max-steps", 4, "-q"]):
        r = invoke("--out", out, "--resume", *extra)
        assert_user_error(r, f"{out.resolve()} already reached step 4", "larger --max-steps")
        assert {p.name: p.read_bytes() for p in (out / "metrics.jsonl", out / "train.yaml")} == before
    assert "asked for 3" in invoke("--out", out, "--resume", "--max-steps", 3).output


def test_errors_name_the_real_problem(verdict, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_user_error(invoke("--preset", "tiny", "--data", verdict, "--out", afile, "--max-steps", 2),
                      "afile: is a file, not a directory")
    assert_user_error(invoke("--out", tmp_path / "none", "--resume"),
                      f"no run in {tmp_path / 'none'} to resume")
    assert_user_error(invoke("--resume"), "--resume needs --out")
    assert_user_error(invoke("--preset", "tiny", "--data", tmp_path, "--out", tmp_path / "o"),
                      "is a directory, not a text file")
    assert not (tmp_path / "o").exists()


def test_progress_start_line_of_a_run_with_nothing_left(capsys):
    """The start event of a run at its end has no tokens_per_step: no TypeError formatting it."""
    from tinyllm.cli.progress import TrainProgress

    TrainProgress(quiet=False)({"event": "start", "step": 5, "max_steps": 5, "params": None,
                                "tokens_per_step": None, "device": "cpu", "precision": "fp32",
                                "world_size": 1, "out": "x"})
    assert "step 5/5" in capsys.readouterr().err
