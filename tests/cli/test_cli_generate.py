"""`tinyllm generate` and `tinyllm chat` on tiny models made on the spot."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.engines import open_engine
from tinyllm.runtime.sampling import SamplingConfig


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def engine_text(model_dir, prompt, **kw) -> str:
    return "".join(open_engine(model_dir, "torch").generate(prompt, SamplingConfig(**kw)))


def test_generate_greedy_matches_the_engine(tiny_lm_dir):
    r = run("generate", "--model", str(tiny_lm_dir), "--temperature", "0", "-n", "30", "ROMEO:")
    assert r.exit_code == 0, r.output
    want = engine_text(tiny_lm_dir, "ROMEO:", temperature=0, max_new_tokens=30)
    assert len(want) == 30
    assert r.stdout == want + ("" if want.endswith("\n") else "\n")


def test_generate_seed_is_reproducible_and_matters(tiny_lm_dir):
    a = run("generate", "-m", str(tiny_lm_dir), "--seed", "1", "-n", "40", "To be")
    b = run("generate", "-m", str(tiny_lm_dir), "--seed", "1", "-n", "40", "To be")
    c = run("generate", "-m", str(tiny_lm_dir), "--seed", "2", "-n", "40", "To be")
    assert a.exit_code == 0 and a.stdout == b.stdout
    assert a.stdout != c.stdout


def test_generate_from_stdin_and_echo(tiny_lm_dir):
    args = ["generate", "-m", str(tiny_lm_dir), "--temperature", "0", "-n", "10"]
    from_arg = run(*args, "KING:")
    from_stdin = run(*args, "-", input="KING:\n")
    assert from_stdin.stdout == from_arg.stdout
    echoed = run(*args, "--echo", "KING:")
    assert echoed.stdout == "KING:" + from_arg.stdout


def test_generate_stop_string_and_sampling_options(tiny_gpt2_dir):
    base = ["generate", "-m", str(tiny_gpt2_dir), "--temperature", "0", "-n", "20"]
    full = run(*base, "Hello").stdout.rstrip("\n")
    assert full
    word = full.split()[1] if len(full.split()) > 1 else full.split()[0]
    cut = run(*base, "--stop", word, "Hello").stdout.rstrip("\n")
    assert cut == full[:full.index(word)].rstrip("\n")
    r = run("generate", "-m", str(tiny_gpt2_dir), "--seed", "3", "--top-k", "5", "--top-p", "0.9",
            "--repetition-penalty", "1.3", "--temperature", "1.2", "-n", "8", "Hello")
    assert r.exit_code == 0 and r.stdout.strip()


def test_generate_without_prompt_starts_from_nothing(tiny_gpt2_dir):
    r = run("generate", "-m", str(tiny_gpt2_dir), "--seed", "0", "-n", "5")
    assert r.exit_code == 0 and r.stdout.endswith("\n")


def test_generate_uses_the_default_model(tiny_lm_dir, tinyllm_home):
    shutil.copytree(tiny_lm_dir, tinyllm_home / "models" / "shakespeare-char")
    r = run("generate", "--temperature", "0", "-n", "12", "ROMEO:")
    assert r.exit_code == 0
    assert r.stdout == engine_text(tiny_lm_dir, "ROMEO:", temperature=0, max_new_tokens=12) + "\n"


def test_generate_applies_the_instruct_template(tiny_gpt2_dir):
    from tinyllm.config import read_yaml, write_yaml
    from tinyllm.data.templates import format_prompt

    meta = read_yaml(tiny_gpt2_dir / "config.yaml")
    meta.update(task="instruct", template="alpaca")
    write_yaml(tiny_gpt2_dir / "config.yaml", meta)
    r = run("generate", "-m", str(tiny_gpt2_dir), "--temperature", "0", "-n", "15", "Say hi.")
    assert r.exit_code == 0
    meta.update(task="lm")
    write_yaml(tiny_gpt2_dir / "config.yaml", meta)
    raw = engine_text(tiny_gpt2_dir, format_prompt("alpaca", "Say hi."), temperature=0,
                      max_new_tokens=15)
    assert r.stdout.rstrip("\n") == raw.rstrip("\n")


@pytest.mark.parametrize("args, message", [
    (["-m", "no-such-model", "x"], "model 'no-such-model' not found"),
    (["--backend", "onnx", "x"], "no model.onnx"),
    (["--temperature", "-1", "x"], "Invalid value for '--temperature'"),
    (["--top-p", "0", "x"], "Invalid value for '--top-p'"),
])
def test_generate_bad_input_exits_2(tiny_lm_dir, args, message):
    if args[0] == "--backend":
        args = ["-m", str(tiny_lm_dir), *args]
    r = CliRunner().invoke(main, ["generate", *args])
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output


def test_generate_a_classifier_is_a_clear_error(tmp_path):
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import CharTokenizer

    tok = CharTokenizer.train("abc")
    model = GPT(ModelConfig(vocab_size=3, context_length=8, n_layer=1, n_head=1, n_embd=8,
                            n_classes=2))
    torch.manual_seed(0)
    d = save_model(model, tok, tmp_path / "clf", task="classify", extra={"labels": ["x", "y"]})
    r = CliRunner().invoke(main, ["generate", "-m", str(d), "abc"])
    assert r.exit_code == 2 and "does not generate text" in r.output


def test_chat_continues_the_conversation(tiny_lm_dir):
    r = run("chat", "-m", str(tiny_lm_dir), "--temperature", "0", "-n", "8", "--stop", "QQQ",
            input="ROMEO:\n/reset\nJULIET:\n\nHow now\n/quit\nnever read\n")
    assert r.exit_code == 0
    first = engine_text(tiny_lm_dir, "ROMEO:\n", temperature=0, max_new_tokens=8)
    second = engine_text(tiny_lm_dir, "JULIET:\n", temperature=0, max_new_tokens=8)
    history = "JULIET:\n" + second.rstrip("\n") + "\n\nHow now\n"
    third = engine_text(tiny_lm_dir, history, temperature=0, max_new_tokens=8)
    end = lambda t: "\n" if t.endswith("\n") else "\n\n"  # noqa: E731
    assert r.stdout == first + end(first) + second + end(second) + third + end(third)
    assert "conversation cleared" in r.stderr


def test_chat_with_an_instruct_model_answers_each_line(tiny_gpt2_dir):
    from tinyllm.config import read_yaml, write_yaml

    meta = read_yaml(tiny_gpt2_dir / "config.yaml")
    meta.update(task="instruct", template="alpaca")
    write_yaml(tiny_gpt2_dir / "config.yaml", meta)
    r = run("chat", "-m", str(tiny_gpt2_dir), "--temperature", "0", "-n", "6",
            input="Name a colour.\nName a colour.\n")
    assert r.exit_code == 0
    one = engine_text(tiny_gpt2_dir, "Name a colour.", temperature=0, max_new_tokens=6)
    end = "\n" if one.endswith("\n") else "\n\n"
    assert r.stdout == (one + end) * 2  # no history: the same answer twice


def test_generate_module_does_not_import_torch():
    code = ("import sys, tinyllm.cli.generate_cmd, tinyllm.cli.models_cmd, tinyllm.engines;"
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_generate_beyond_the_context_slides_the_window(tiny_lm_dir):
    # context 64: 150 new characters need two cache rebuilds
    r = run("generate", "-m", str(tiny_lm_dir), "--seed", "0", "-n", "150", "--top-k", "0", "ROMEO:")
    assert r.exit_code == 0
    assert len(r.stdout) in (150, 151)  # plus the final newline unless the text ends with one


def test_a_prompt_longer_than_the_context_is_cut_with_one_warning(tiny_lm_dir):
    prompt = "ROMEO: " * 30                                   # 210 characters, context 64
    r = run("generate", "-m", str(tiny_lm_dir), "--seed", "0", "-n", "3", prompt)
    assert r.exit_code == 0
    warnings = [x for x in r.stderr.splitlines() if "longer than" in x]
    assert warnings == ["warning: the prompt is 210 tokens, longer than the model's 64-token "
                        "context; only its last 32 are read (178 cut)"]


def test_characters_the_char_tokenizer_does_not_know_are_said(tiny_lm_dir):
    r = run("generate", "-m", str(tiny_lm_dir), "--seed", "0", "-n", "3", "café 😀😀")
    assert r.exit_code == 0
    assert "warning: the char tokenizer does not know 3 characters of the prompt and reads them " \
           "as ' ': '😀' x2, 'é'" in r.stderr
    r = run("tokenize", "--model", str(tiny_lm_dir), "naïve")
    assert r.exit_code == 0 and "does not know 1 character of TEXT" in r.stderr and "'ï'" in r.stderr


def _on_a_terminal(args, env, input=b""):
    """Run the CLI with stderr on a pseudo-terminal: (stdout, what the terminal showed)."""
    import os
    import pty

    master, slave = pty.openpty()
    p = subprocess.run([sys.executable, "-m", "tinyllm", *args], stdout=subprocess.PIPE,
                       stderr=slave, env=env, timeout=120, input=input)
    os.close(slave)
    shown = b""
    try:
        while chunk := os.read(master, 4096):
            shown += chunk
    except OSError:
        pass
    os.close(master)
    assert p.returncode == 0
    return p.stdout.decode(), shown.decode()


def test_the_backend_note_is_said_once_to_a_terminal_and_never_to_pipelines(tmp_path):
    import os

    from tinyllm import modeldir

    model = modeldir.BUNDLED_MODELS / "shakespeare-char"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out, shown = _on_a_terminal(["generate", "-m", str(model), "-n", "3", "ROMEO:"], env)
    assert shown.count("using the onnx backend (model.int8.onnx found)") == 1 and out
    _, shown = _on_a_terminal(["generate", "-q", "-m", str(model), "-n", "3", "ROMEO:"], env)
    assert "onnx backend" not in shown
    for q in ([], ["-q"]):   # classify says it the same way, and -q silences it there too
        _, shown = _on_a_terminal(["classify", *q], env, input=b"WIN a prize\n")
        assert shown.count("using the onnx backend") == (0 if q else 1)
    p = subprocess.run([sys.executable, "-m", "tinyllm", "generate", "-m", str(model), "-n", "3",
                        "ROMEO:"], capture_output=True, env=env, timeout=120)
    assert p.returncode == 0 and b"onnx backend" not in p.stderr   # a pipeline: not a terminal
