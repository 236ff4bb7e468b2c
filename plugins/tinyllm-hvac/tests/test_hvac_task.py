"""The HVAC plugin: its data format, its registration, and a fine-tune + eval through the CLI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.tasks import registry
from tinyllm.tasks.base import DataError
from tinyllm_hvac import SAMPLE, HVACTask, read_hvac


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLLM_HOME", str(tmp_path / "home"))
    import torch

    torch.set_num_threads(1)


def test_sample_data_reads():
    ex = read_hvac(SAMPLE)
    assert len(ex) == 600 and {e.label for e in ex} == {"Good", "Bad"}
    assert ex[0].text.startswith("Is AHU-4 running normally? Reading: supply air")


@pytest.mark.parametrize("line,message", [
    ('{"question": "q", "reading": "r"}', "h.jsonl:2: missing column 'status'"),
    ('{"question": "q", "reading": "r", "status": "Meh"}', "h.jsonl:2: unknown status 'Meh'"),
    ("not json", "h.jsonl:2: invalid JSON"),
])
def test_bad_records_name_file_and_line(tmp_path, line, message):
    p = tmp_path / "h.jsonl"
    p.write_text('{"question": "q", "reading": "r", "status": "good"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_hvac(p)


def test_registered_through_its_entry_point():
    entry = registry.entries()["hvac"]
    assert entry.package == "tinyllm-hvac" and isinstance(entry.task, HVACTask)
    r = CliRunner().invoke(main, ["finetune", "hvac", "--help"])
    assert r.exit_code == 0 and "--lora-rank" in r.output and "--text-col" not in r.output


def test_finetune_and_eval_from_the_cli(tmp_path):
    out = tmp_path / "hvac-model"
    r = CliRunner().invoke(main, ["finetune", "hvac", "--data", str(SAMPLE), "--out", str(out),
                                  "--epochs", "1", "--batch-size", "32", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["task"] == "hvac" and report["n"] == 120
    assert report["metrics"]["labels"] == ["Good", "Bad"]
    meta = (out / "config.yaml").read_text()
    assert "task: hvac" in meta
    r = CliRunner().invoke(main, ["eval", str(out), "--data", str(out / "test.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["confusion"] == report["metrics"]["confusion"]
    r = CliRunner().invoke(main, ["classify", "--model", str(out)],
                           input="Is RTU-1 ok? Reading: supply air 55°F, suction 40 psig.\n")
    assert r.exit_code == 0 and r.stdout.split("\t")[0] in ("Good", "Bad")


def test_finetune_an_encoder_from_scratch(tmp_path):
    """The same task on an encoder: bert-tiny with a WordPiece vocabulary trained on the data."""
    out = tmp_path / "hvac-bert"
    r = CliRunner().invoke(main, ["finetune", "hvac", "--data", str(SAMPLE), "--out", str(out),
                                  "--preset", "bert-tiny", "--epochs", "1", "--batch-size", "32",
                                  "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["n"] == 120
    meta = (out / "config.yaml").read_text()
    assert "family: bert" in meta and "type: wordpiece" in meta and "pooling: cls" in meta
