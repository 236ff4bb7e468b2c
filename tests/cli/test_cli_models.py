"""`tinyllm tokenize`, `tinyllm models` and `tinyllm info`."""
from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from tinyllm.checkpoint import load_tokenizer
from tinyllm.cli import main
from tinyllm.config import ModelConfig, read_yaml


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_tokenize_gpt2_by_default():
    r = run("tokenize", "Hello, world!")
    assert r.exit_code == 0 and r.stdout == "15496 11 995 0\n"
    assert run("tokenize", "--tokenizer", "gpt2", "<|endoftext|>").stdout == "50256\n"


def test_tokenize_stdin_json_and_decode():
    r = run("tokenize", "-", input="Hello, world!")
    assert r.stdout == "15496 11 995 0\n"
    data = json.loads(run("tokenize", "--json", "Hello, world!").stdout)
    assert data == {"tokenizer": "gpt2", "ids": [15496, 11, 995, 0],
                    "tokens": ["Hello", ",", " world", "!"]}
    assert run("tokenize", "--decode", "15496 11 995 0").stdout == "Hello, world!\n"
    r = run("tokenize", "--decode", "1 x")
    assert r.exit_code == 2 and "integer ids" in r.output
    r = run("tokenize", "--decode", "99999")
    assert r.exit_code == 2 and "outside the vocabulary" in r.output


def test_tokenize_with_a_model_tokenizer(tiny_lm_dir):
    tok = load_tokenizer(tiny_lm_dir)
    for flag in ("--model", "--tokenizer"):
        r = run("tokenize", flag, str(tiny_lm_dir), "ROMEO:")
        assert r.exit_code == 0
        assert r.stdout.split() == [str(i) for i in tok.encode("ROMEO:")]
    r = run("tokenize", "--model", str(tiny_lm_dir), "--tokenizer", "gpt2", "x")
    assert r.exit_code == 2 and "not both" in r.output


def test_models_lists_user_models(tiny_lm_dir, tiny_gpt2_dir, tinyllm_home):
    for d in (tiny_lm_dir, tiny_gpt2_dir):
        shutil.copytree(d, tinyllm_home / "models" / d.name)
    (tinyllm_home / "models" / "not-a-model").mkdir()
    data = json.loads(run("models", "--json").stdout)
    mine = {m["name"]: m for m in data if m["source"] == "user"}
    assert set(mine) == {"tiny-lm", "tiny-gpt2"}
    cfg = ModelConfig(**read_yaml(tiny_gpt2_dir / "config.yaml")["model"])
    assert mine["tiny-gpt2"]["params"] == cfg.num_params()
    assert mine["tiny-gpt2"]["tokenizer"] == "gpt2" and mine["tiny-lm"]["tokenizer"] == "char"
    table = run("models").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "TASK", "PARAMS"]
    assert any(line.startswith("tiny-gpt2 ") and " user" in line for line in table)


def test_info_text_and_json(tiny_gpt2_dir):
    cfg = ModelConfig(**read_yaml(tiny_gpt2_dir / "config.yaml")["model"])
    data = json.loads(run("info", str(tiny_gpt2_dir), "--json").stdout)
    assert data["params"] == cfg.num_params()
    assert data["flops_per_token"] == cfg.flops_per_token()
    assert data["task"] == "lm" and data["tokenizer"] == "gpt2"
    assert data["files"] == ["config.yaml", "model.safetensors"]
    text = run("info", str(tiny_gpt2_dir)).stdout
    assert f"{cfg.num_params():,}" in text
    assert "FLOPs/token" in text and "2 layers, 2 heads, 32 wide, context 128" in text


def test_info_by_name_and_unknown(tiny_lm_dir, tinyllm_home):
    shutil.copytree(tiny_lm_dir, tinyllm_home / "models" / "mine")
    data = json.loads(run("info", "mine", "--json").stdout)
    assert data["source"] == "user" and data["name"] == "mine"
    r = run("info", "nothing-here")
    assert r.exit_code == 2 and "not found" in r.output and "Traceback" not in r.output


def test_info_on_a_broken_config_names_the_file(tmp_path):
    (tmp_path / "config.yaml").write_text("model:\n  n_layer: [1\n")
    r = run("info", str(tmp_path))
    assert r.exit_code == 2 and "config.yaml:" in r.output and "invalid YAML" in r.output


def test_onnx_graphs_are_one_answer_everywhere(tmp_path):
    """A folder with only model.int8.onnx: int8 in `info`, `models` and the TUI alike."""
    from tinyllm import modeldir
    from tinyllm_tui.screens.models import model_details, model_row

    src = modeldir.BUNDLED_MODELS / "shakespeare-char"
    assert modeldir.onnx_graphs(src) == ["int8"]
    info = modeldir.read_info(src)
    assert info.onnx_label == "int8"
    assert "int8 (model.int8.onnx)" in run("info", "shakespeare-char").stdout
    assert json.loads(run("info", "shakespeare-char", "--json").stdout)["onnx_graphs"] == ["int8"]
    row = next(line for line in run("models").stdout.splitlines()
               if line.startswith("shakespeare-char "))
    assert " int8 " in row
    assert "int8" in model_row(info) and "fp32" not in model_row(info)
    assert "int8 + fp32" not in str(model_details(info))
    both = tmp_path / "both"
    shutil.copytree(src, both)
    (both / "model.onnx").write_bytes(b"")
    assert modeldir.read_info(both).onnx_label == "int8 + fp32"


def test_models_in_extra_folders_are_found_by_name(tiny_lm_dir, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_lm_dir, runs / "verdict")
    r = run("models", "--path", str(runs))
    assert r.exit_code == 0
    row = next(line for line in r.stdout.splitlines() if line.startswith("verdict "))
    assert str(runs) in row
    assert "verdict" not in run("models").stdout                     # not without the folder
    assert run("info", "verdict").exit_code == 2
    monkeypatch.setenv("TINYLLM_PATH", f"{tmp_path / 'nothing'}:{runs}")
    assert any(line.startswith("verdict ") for line in run("models").stdout.splitlines())
    assert json.loads(run("info", "verdict", "--json").stdout)["path"] == str(runs / "verdict")
    r = CliRunner().invoke(main, ["generate", "-m", "verdict", "-n", "3", "--seed", "0", "x"])
    assert r.exit_code == 0, r.output
    from tinyllm_tui.widgets.model_picker import ModelPicker

    assert "verdict" in [name for _, name in ModelPicker()._options()]   # the TUI's picker too


def test_an_unknown_name_lists_the_closest(tinyllm_home):
    r = run("info", "shakespear-char")
    assert r.exit_code == 2
    assert "did you mean 'shakespeare-char'?" in r.output and "TINYLLM_HOME" not in r.output
    assert "`tinyllm models` lists them" in r.output


def test_mistyped_commands_get_a_suggestion():
    r = run("genrate", "x")
    assert r.exit_code == 2 and "No such command 'genrate'. Did you mean 'generate'?" in r.output
    assert "Did you mean" not in run("xyzzy").output


def test_help_examples_name_models_that_exist_or_paths():
    """`generate --help` once said `--model gpt2`, which is no model name."""
    import re

    from tinyllm import modeldir

    names = {m.name for m in modeldir.list_models()}
    for cmd in (["generate"], ["chat"], ["classify"], ["eval"], ["finetune"], ["models"],
                ["tokenize"], ["train"]):
        text = run(*cmd, "--help").stdout
        for ref in re.findall(r"--model ([^\s`]+)", text):
            assert "/" in ref or ref in names or ref in modeldir.PROVIDED or ref in ("M", "NAME"), \
                (cmd, ref)
