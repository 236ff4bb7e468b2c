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

from tinyllm.cli import main, notes
from tinyllm.cli.task_options import click_option
from tinyllm.tasks import Option, registry
from tinyllm.tasks.base import Task

ROOT = Path(__file__).resolve().parents[2]


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
    monkeypatch.setattr(notes, "_SAID", set())  # warnings are said once per process
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


def test_plugin_loads_and_broken_plugin_is_recorded(plugins, capsys):
    entries = registry.entries()
    assert entries["echo"].package == "tinyllm-echo" and entries["echo"].version == "0.3"
    assert registry.get("echo").answer(None, ["x"]) == ["x"]
    assert entries["broken"].task is None and "missing_module_xyz" in entries["broken"].error
    assert registry.warnings() == [entries["broken"].warnings[0]]
    assert "task plugin 'broken' from tinyllm-echo failed to load" in registry.warnings()[0]
    registry.entries(reload=True)  # loading again records it once
    assert len(registry.warnings()) == 1
    assert capsys.readouterr().err == ""  # the library never prints; the CLI says it
    assert "classify" in registry.tasks()  # the rest keeps working
    with pytest.raises(registry.UnknownTask, match="failed to load"):
        registry.get("broken")


def test_the_cli_says_a_broken_plugin_once_and_lists_the_rest(plugins):
    r = CliRunner().invoke(main, ["tasks"])
    assert r.exit_code == 0, r.output
    assert r.stderr.count("warning: task plugin 'broken' from tinyllm-echo failed to load") == 1
    names = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert {"classify", "echo", "instruct", "lm", "broken"} <= set(names)
    # the next command of the same process does not repeat it
    r = CliRunner().invoke(main, ["finetune", "--help"])
    assert r.exit_code == 0 and "broken" not in r.stderr and "  echo" in r.output


def test_a_duplicate_task_name_is_a_warning_on_the_first_entry(tmp_path, monkeypatch):
    a = fake_dist(tmp_path / "a", "tinyllm-a", {"twin": "twin_a:Echo"}, {"twin_a": GOOD})
    b = fake_dist(tmp_path / "b", "tinyllm-b", {"twin": "twin_b:Echo"}, {"twin_b": GOOD})
    monkeypatch.syspath_prepend(str(b))
    monkeypatch.syspath_prepend(str(a))
    monkeypatch.setattr(notes, "_SAID", set())
    monkeypatch.setattr(registry, "_ENTRIES", None)
    try:
        entry = registry.entries()["twin"]
        assert entry.package == "tinyllm-a" and entry.task is not None
        assert entry.warnings == ["task 'twin' is declared by both tinyllm-a and tinyllm-b; "
                                  "using the first"]
        r = CliRunner().invoke(main, ["tasks"])
        assert r.stderr.count("declared by both") == 1
    finally:
        monkeypatch.undo()
        registry.entries(reload=True)


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
        finetune_options = (Option("--strength", int, 1),)

        def finetune(self, data, out, model=None, callbacks=(), progress=None, log=None, **opts):
            assert callable(progress) and callable(log) and len(callbacks) == 1  # for people
            calls.append((data, out, model, opts))
            return {"model": out, "data": data, "n": 3, "metrics": {"score": 0.5}}

    registry.register(Toy())
    try:
        r = CliRunner().invoke(main, ["finetune", "toy", "--data", "d.txt", "--out", "o",
                                      "--strength", "7"])
        assert r.exit_code == 0, r.output
        assert calls == [("d.txt", "o", None, {"overwrite": False, "strength": 7})]
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


# ---- task options: plain data in the task, click flags in the CLI -----------------------------
class Knobs(Task):
    name = "knobs"
    description = "a task with one option of each kind"
    finetune_options = (
        Option("--rate", float, 0.5, "A fraction.", min=0, max=1, max_open=True, show_default=True),
        Option("--steps", int, None, "How many.", min=1),
        Option("--mode", choices=("fast", "slow"), default="fast", help="Speed."),
        Option("--notes", "file", None, "A file.", metavar="PATH"),
        Option("--pair", str, "1,2", "Two ints.", parse=lambda v: tuple(int(x) for x in v.split(","))),
        Option("--dry-run", is_flag=True, help="Do nothing."),
    )

    def finetune(self, data, out, model=None, **opts):
        return {"model": out, "data": data, "n": 0, "metrics": {},
                "options": {k: opts[k] for k in ("rate", "steps", "mode", "notes", "pair",
                                                 "dry_run")}}


@pytest.fixture
def knobs():
    registry.register(Knobs())
    yield
    registry.entries(reload=True)


def test_an_option_becomes_the_click_flag_it_describes():
    rate, steps, mode, notes_file, pair, dry = (click_option(o) for o in Knobs.finetune_options)
    assert rate.opts == ["--rate"] and rate.name == "rate" and rate.default == 0.5
    assert isinstance(rate.type, click.FloatRange) and rate.type.max_open and rate.show_default
    assert isinstance(steps.type, click.IntRange) and steps.type.min == 1 and steps.default is None
    assert isinstance(mode.type, click.Choice) and list(mode.type.choices) == ["fast", "slow"]
    assert isinstance(notes_file.type, click.Path) and not notes_file.type.dir_okay
    assert notes_file.metavar == "PATH"
    assert dry.is_flag and dry.name == "dry_run"
    assert [o.name for o in Knobs.finetune_options] == [rate.name, steps.name, mode.name,
                                                        notes_file.name, pair.name, dry.name]


def test_task_options_parse_check_and_reach_the_task(knobs, tmp_path):
    base = ["finetune", "knobs", "--data", "d", "--out", "o", "--json"]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["options"] == {"rate": 0.5, "steps": None, "mode": "fast",
                                               "notes": None, "pair": [1, 2], "dry_run": False}
    r = CliRunner().invoke(main, [*base, "--rate", "0.25", "--steps", "3", "--mode", "slow",
                                  "--notes", "n.txt", "--pair", "7,8", "--dry-run"])
    assert json.loads(r.stdout)["options"] == {"rate": 0.25, "steps": 3, "mode": "slow",
                                               "notes": "n.txt", "pair": [7, 8], "dry_run": True}
    for bad, message in ((["--rate", "1"], "'--rate': 1.0 is not in the range 0<=x<1"),
                         (["--steps", "0"], "'--steps': 0 is not in the range x>=1"),
                         (["--mode", "warp"], "'--mode': 'warp' is not one of 'fast', 'slow'"),
                         (["--notes", str(tmp_path)], "is a directory"),
                         (["--pair", "x"], "Invalid value for '--pair'")):
        r = CliRunner().invoke(main, [*base, *bad])
        assert r.exit_code == 2 and message in r.stderr, (bad, r.output)
    r = CliRunner().invoke(main, ["finetune", "knobs", "--help"])
    assert "--rate FLOAT RANGE" in r.output and "[default: 0.5; 0<=x<1]" in r.output
    assert "--mode [fast|slow]" in r.output and "--notes PATH" in r.output


def test_a_bad_option_declaration_is_refused_at_once():
    with pytest.raises(ValueError, match="long flag"):
        Option("-x")
    with pytest.raises(ValueError, match="the command's own"):
        Option("--data")
    with pytest.raises(ValueError, match="not one of"):
        Option("--n", type=list)
    with pytest.raises(ValueError, match="min/max need"):
        Option("--n", str, min=1)
    assert Option("--flag", is_flag=True).default is False
