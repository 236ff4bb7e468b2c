"""The lm task: continue training a model on a text file; loss and perplexity."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.config import read_yaml
from tinyllm.errors import UserError
from tinyllm.tasks.lm import LMTask

from conftest import shakespeare_file


@pytest.fixture
def corpus(tmp_path):
    return shakespeare_file(tmp_path / "sonnets.txt", 6000)


def test_finetune_lm_through_the_cli_lowers_perplexity(tiny_lm_dir, corpus, tmp_path):
    before = LMTask().evaluate(tiny_lm_dir, corpus)["metrics"]["perplexity"]
    out = tmp_path / "more"
    r = CliRunner().invoke(main, ["finetune", "lm", "--model", str(tiny_lm_dir), "--data", str(corpus),
                                  "--out", str(out), "--max-steps", "30", "--lr", "3e-3",
                                  "--batch-size", "8", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["task"] == "lm" and report["metrics"]["perplexity"] < 0.8 * before
    assert read_yaml(out / "config.yaml")["task"] == "lm"


def test_eval_windows_and_errors(tiny_lm_dir, corpus):
    r = LMTask().evaluate(tiny_lm_dir, corpus, max_windows=3)
    assert r["n"] == 3 and r["tokens"] == 3 * 64
    with pytest.raises(UserError, match="needs --model"):
        LMTask().finetune(corpus, "out")
