"""Task registry: built-ins come from entry points, plugins load the same way, broken ones are skipped."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.tasks import registry
from tinyllm.tasks.base import Task

ROOT = Path(__file__).resolve().parents[1]


def fake_dist(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """An installed-looking distribution (dist-info with entry points) plus its modules under root."""
    info = root / f"{name.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[tinyllm.tasks]\n{eps}")
    for mod, src in modules.items():
        (root / f"{mod}.py").write_text(src)
    return root


GOOD = '''
from tinyllm.tasks import Task
class Echo(Task):
    name = "echo"
    description = "repeats its input"
    def answer(self, engine, inputs):
        return list(inputs)
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    root = fake_dist(tmp_path / "site", "tinyllm-echo", {"echo": "echo_task:Echo",
                                                         "broken": "missing_module_xyz:Task"},
                     {"echo_task": GOOD})
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(registry, "_REPORTED", set())
    monkeypatch.setattr(registry, "_ENTRIES", None)
    yield root
    monkeypatch.undo()
    registry.entries(reload=True)


def test_builtins_are_entry_points_of_tinyllm():
    entries = registry.entries()
    for name in ("lm", "classify", "instruct"):
        assert entries[name].package == "tinyllm"
        assert entries[name].task is not None, entries[name].error
        assert registry.get(name).name == name
    assert registry.get("classify").head == "classify"
    assert registry.get("lm").head == "lm"


def test_plugin_loads_and_broken_plugin_is_reported_once(plugins, capsys):
    entries = registry.entries()
    assert entries["echo"].package == "tinyllm-echo" and entries["echo"].version == "0.3"
    assert registry.get("echo").answer(None, ["x"]) == ["x"]
    assert entries["broken"].task is None and "missing_module_xyz" in entries["broken"].error
    registry.entries(reload=True)  # loading again does not warn again
    err = capsys.readouterr().err
    assert err.count("task plugin 'broken'") == 1
    assert "classify" in registry.tasks()  # the rest keeps working
    with pytest.raises(registry.UnknownTask, match="failed to load"):
        registry.get("broken")


def test_unknown_task_lists_installed():
    with pytest.raises(registry.UnknownTask, match=r"unknown task 'nope'; installed tasks: .*classify"):
        registry.get("nope")
    r = CliRunner().invoke(main, ["finetune", "nope", "--data", "x", "--out", "y"])
    assert r.exit_code == 2 and "unknown task 'nope'" in r.output


def test_tasks_command_lists_package(plugins):
    r = CliRunner().invoke(main, ["tasks", "--json"])
    assert r.exit_code == 0, r.output
    rows = {t["name"]: t for t in json.loads(r.stdout)}
    assert rows["classify"]["package"] == "tinyllm" and rows["classify"]["status"] == "ok"
    assert rows["echo"]["package"] == "tinyllm-echo"
    assert rows["broken"]["status"].startswith("failed: ModuleNotFoundError")
    r = CliRunner().invoke(main, ["tasks"])
    line = next(x for x in r.stdout.splitlines() if x.startswith("echo"))
    assert "tinyllm-echo 0.3" in line and "repeats its input" in line


def test_finetune_subcommands_come_from_tasks(plugins):
    r = CliRunner().invoke(main, ["finetune", "--help"])
    assert r.exit_code == 0
    for name in ("classify", "instruct", "lm", "echo"):
        assert f"  {name}" in r.output
    r = CliRunner().invoke(main, ["finetune", "classify", "--help"])
    for opt in ("--data", "--text-col", "--label-col", "--balance", "--train-layers", "--lora-rank",
                "--out"):
        assert opt in r.output


def test_generic_finetune_command_calls_the_task(tmp_path):
    calls = []

    class Toy(Task):
        name = "toy"
        finetune_options = (click.Option(["--strength"], type=int, default=1),)

        def finetune(self, data, out, model=None, **opts):
            calls.append((data, out, model, opts))
            return {"model": out, "data": data, "n": 3, "metrics": {"score": 0.5}}

    registry.register(Toy())
    try:
        r = CliRunner().invoke(main, ["finetune", "toy", "--data", "d.txt", "--out", "o",
                                      "--strength", "7"])
        assert r.exit_code == 0, r.output
        assert calls == [("d.txt", "o", None, {"strength": 7})]
        assert "score" in r.output and "0.5000" in r.output
        r = CliRunner().invoke(main, ["finetune", "toy", "--data", "d", "--out", "o", "--json"])
        assert json.loads(r.stdout)["metrics"] == {"score": 0.5}
    finally:
        registry.entries(reload=True)


def test_eval_rejects_options_of_other_tasks(tiny_lm_dir, tmp_path):
    data = tmp_path / "t.txt"
    data.write_text("To be, or not to be, that is the question.\n" * 40)
    r = CliRunner().invoke(main, ["eval", str(tiny_lm_dir), "--data", str(data), "--backend", "torch"])
    assert r.exit_code == 2 and "--backend does not apply to lm models" in r.output
    r = CliRunner().invoke(main, ["eval", str(tiny_lm_dir), "--data", str(data), "--json",
                                  "--max-windows", "4"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["task"] == "lm" and report["n"] == 4
    assert report["metrics"]["perplexity"] > 1


def test_broken_plugin_in_a_real_process(tmp_path):
    """The console entry: one warning on stderr, the listing still works, exit 0."""
    site = fake_dist(tmp_path / "site", "tinyllm-bad", {"bad": "no_such_module_abc:Task"}, {})
    env = {**os.environ, "PYTHONPATH": str(site)}
    p = subprocess.run([sys.executable, "-m", "tinyllm", "tasks"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("task plugin 'bad' from tinyllm-bad failed to load") == 1
    assert "classify" in p.stdout and "failed: ModuleNotFoundError" in p.stdout
