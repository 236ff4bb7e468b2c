"""The stars plugin: fastText data, ordinal metrics, registration, fine-tune + eval via the CLI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.tasks import registry
from tinyllm.tasks.base import DataError
from tinyllm_stars import SAMPLE, StarsTask, ordinal_metrics, read_fasttext


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLLM_HOME", str(tmp_path / "home"))
    import torch

    torch.set_num_threads(1)


def test_sample_reads():
    ex = read_fasttext(SAMPLE)
    assert len(ex) == 200 and sorted({e.label for e in ex}) == ["1", "2", "3", "4", "5"]
    assert ex[0].label == "4" and ex[0].text.startswith("Good value") and ex[0].line == 1


@pytest.mark.parametrize("line,message", [
    ("no label here", "r.ft:2: no __label__ prefix"),
    ("__label__7 too many stars", "r.ft:2: unknown label '7'"),
    ("__label__1 __label__2 undecided", "r.ft:2: 2 labels"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    p = tmp_path / "r.ft"
    p.write_text("__label__5 great\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        read_fasttext(p)


def test_ordinal_metrics():
    perfect = ordinal_metrics([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    assert perfect == {"mae": 0.0, "within_one": 1.0, "qwk": 1.0}
    m = ordinal_metrics([1, 1, 4, 0], [0, 1, 2, 4])   # off by 1, 0, 2, 4
    assert m["mae"] == pytest.approx(7 / 4) and m["within_one"] == pytest.approx(0.5)
    assert m["qwk"] < 0.5
    # a 1-star review called 5 stars costs more kappa than one called 2 stars
    near = ordinal_metrics([1, 1, 2, 3, 4], [0, 1, 2, 3, 4])["qwk"]
    far = ordinal_metrics([4, 1, 2, 3, 4], [0, 1, 2, 3, 4])["qwk"]
    assert near > far
    full = StarsTask().metrics([1, 1, 4, 0], [0, 1, 2, 4])
    assert full["accuracy"] == 0.25 and full["mae"] == m["mae"] and "confusion" in full


def test_registered_and_trained_from_the_cli(tmp_path):
    assert registry.entries()["stars"].package == "tinyllm-stars"
    out = tmp_path / "stars"
    r = CliRunner().invoke(main, ["finetune", "stars", "--data", str(SAMPLE), "--out", str(out),
                                  "--epochs", "1", "--batch-size", "32", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["n"] == 40 and set(report["metrics"]) >= {"accuracy", "mae", "within_one", "qwk"}
    r = CliRunner().invoke(main, ["eval", str(out), "--data", str(out / "test.ft")])
    assert r.exit_code == 0, r.output
    assert "mae" in r.stdout and "qwk" in r.stdout and "confusion matrix" in r.stdout
