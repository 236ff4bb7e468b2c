"""The bundled-model build command: staging and swap-in, and the size budget of all bundled models
together (tiny stand-in builders: no training here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tinyllm.bundled import build  # noqa: F401  (the recipes' module)
from tinyllm.cli import build_models as command  # the build command's main() and the BUILDERS it runs


def sized_builder(n_bytes: int, calls: list):
    """A builder that writes a model folder of ``n_bytes`` (a sparse file: no disk used)."""
    def builder(out_dir: Path, **kwargs):
        calls.append((out_dir.name, kwargs))
        out_dir.mkdir(parents=True)
        (out_dir / "config.yaml").write_text("task: lm\n")
        with open(out_dir / "model.safetensors", "wb") as f:
            f.truncate(n_bytes - len("task: lm\n"))
        return {"steps": 1}
    return builder


@pytest.fixture
def builders(monkeypatch):
    calls: list = []

    def use(**sizes):
        monkeypatch.setattr(command, "BUILDERS", {name.replace("_", "-"): sized_builder(n, calls)
                                                for name, n in sizes.items()})
        return calls
    return use


def test_models_within_the_budget_build_and_swap_in(builders, tmp_path, capsys):
    calls = builders(lm=build.MAX_BYTES // 2, clf=build.MAX_BYTES // 2)   # exactly the limit
    assert command.main(["--out", str(tmp_path), "--no-onnx", "--threads", "3", "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf", "lm"]   # no staging folders left
    assert build.dir_bytes(tmp_path / "lm") == build.MAX_BYTES // 2
    assert [c[0] for c in calls] == [".lm.new", ".clf.new"]             # built in staging folders
    assert all(c[1]["threads"] == 3 for c in calls)
    err = capsys.readouterr().err
    assert "all bundled models: 10.00 MB (limit 10 MB)" in err and "error" not in err


def test_over_the_budget_fails_and_says_so(builders, tmp_path, capsys):
    builders(lm=6_000_000, clf=4_000_001)
    assert command.main(["--out", str(tmp_path), "--no-onnx", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "all bundled models: 10.00 MB (limit 10 MB)" in err
    assert "error: the bundled models are over the size limit" in err


def test_the_budget_counts_models_already_there(builders, tmp_path, capsys):
    """Rebuilding one model: the others in the folder count too (the limit is for all together)."""
    builders(lm=6_000_000, clf=6_000_000)
    sized_builder(6_000_000, [])(tmp_path / "lm")            # shipped earlier, not rebuilt now
    sized_builder(9_000_000, [])(tmp_path / ".scratch")      # hidden folders do not count
    assert command.main(["clf", "--out", str(tmp_path), "--no-onnx", "--quiet"]) == 1
    assert "12.00 MB" in capsys.readouterr().err
    assert command.main(["clf", "--out", str(tmp_path / "alone"), "--no-onnx", "--quiet"]) == 0


def test_unknown_model_is_refused(builders, tmp_path, capsys):
    builders(lm=10)
    with pytest.raises(SystemExit) as e:
        command.main(["nope", "--out", str(tmp_path)])
    assert e.value.code == 2 and "unknown model(s) nope" in capsys.readouterr().err
