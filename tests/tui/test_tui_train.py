"""Train screen: following metrics.jsonl, a real tiny run landing on the plot, stop/resume, PNG."""
from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import replace
from pathlib import Path

from tinyllm import modeldir
from tinyllm_tui.app import TinyLLMApp
from tinyllm_tui.run_log import MetricsFollower, RunState
from tinyllm_tui.runner import TrainProcess

from tui_fakes import FakeRun, text_of, wait_for

DATA = Path(__file__).resolve().parents[2] / "tinyllm" / "bundled" / "data"
SIZE = (130, 40)


def plot_text(app) -> str:
    plot = app.screen.query_one("#loss-plot")
    plot.plt.plotsize(100, 20)
    return plot.plt.build()


def braille_points(text: str) -> int:
    return sum(1 for ch in text if 0x2801 <= ord(ch) <= 0x28FF)


def fill_form(app, steps: int, data: Path = DATA / "the-verdict.txt", name: str = "run") -> None:
    s = app.screen
    s.query_one("#train-data").value = str(data)
    s.query_one("#train-steps").value = str(steps)
    s.query_one("#train-name").value = name


# ---- following metrics.jsonl ---------------------------------------------------------------------
def test_follower_reads_only_complete_lines_and_restarts_on_replace(tmp_path):
    path = tmp_path / "metrics.jsonl"
    f = MetricsFollower(path)
    assert f.read() == ([], False)                       # no file yet
    path.write_text('{"event": "step", "step": 1, "loss": 3.0}\n{"event": "st')
    events, reset = f.read()
    assert [e["step"] for e in events] == [1] and not reset
    with open(path, "a") as fh:
        fh.write('ep", "step": 2, "loss": 2.5}\nnot json\n')
    events, _ = f.read()
    assert [e["step"] for e in events] == [2] and f.bad_lines == 1
    # a resumed run rewrites the file (atomic replace): read again from the top
    tmp = tmp_path / "new.jsonl"
    tmp.write_text('{"event": "step", "step": 1, "loss": 3.0}\n')
    os.replace(tmp, path)
    events, reset = f.read()
    assert reset and [e["step"] for e in events] == [1]


def test_run_state_folds_events():
    s = RunState()
    s.apply({"event": "start", "step": 0, "max_steps": 100, "out": "/x"})
    for step in range(1, 31):
        s.apply({"event": "step", "step": step, "loss": 5 - step / 10, "lr": 1e-3,
                 "tokens_per_s": 900.0, "eta": 70.0, "elapsed": step})
    s.apply({"event": "eval", "step": 30, "train_loss": 2.0, "val_loss": 2.2, "sample": "hi"})
    assert (s.step, s.train_loss, s.val_loss, s.samples) == (30, 2.0, 2.2, [(30, "hi")])
    s.apply({"event": "start", "step": 20, "max_steps": 100, "resumed": True})
    assert s.train[-1][0] == 20 and s.val == [] and s.status == "resumed at step 20"
    s.apply({"event": "done", "step": 100, "reason": "finished", "elapsed": 12.0})
    assert s.status == "finished at step 100" and s.eta == 0.0


# ---- the screen ----------------------------------------------------------------------------------
def test_real_tiny_training_run_lands_points_on_the_loss_plot():
    """`tinyllm train` in a child process; the dashboard follows it to the end."""
    def small(spec):
        return TrainProcess(replace(spec, extra=["train.batch_size=4", "train.eval_batches=2",
                                                 "train.sample_tokens=40"]))

    async def scenario():
        app = TinyLLMApp(screen="train", trainer_factory=small)
        async with app.run_test(size=SIZE) as pilot:
            fill_form(app, steps=20, name="verdict-tiny")
            await pilot.press("ctrl+s")
            screen = app.screen
            await wait_for(pilot, lambda: screen.state.done is not None or
                           (screen.process and screen.process.poll() not in (None, 0)),
                           step=0.2)
            assert screen.state.done["reason"] == "finished", screen.process.tail()
            assert [p[0] for p in screen.state.train] == list(range(1, 21))
            assert [p[0] for p in screen.state.val] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
            assert braille_points(plot_text(app)) > 20       # the curves are drawn
            assert "20/20" in text_of(screen.query_one("#stat-step"))
            assert "sample at step 20" in "\n".join(str(x) for x in screen.query_one("#train-log").lines)
            out = modeldir.models_home() / "verdict-tiny"
            assert (out / "model.safetensors").exists() and (out / "train_state").is_dir()
    asyncio.run(scenario())


def test_stop_then_resume_continues_the_curve():
    # each run starts writing once the screen has started it; the first holds at step 10 until
    # stopped, the resumed one goes on from there
    runs = []

    def factory(spec):
        runs.append(FakeRun(spec, 60, hold_at=10, go=threading.Event()))
        return runs[-1]

    async def scenario():
        app = TinyLLMApp(screen="train", trainer_factory=factory)
        async with app.run_test(size=SIZE) as pilot:
            fill_form(app, steps=60)
            await pilot.press("ctrl+s")
            runs[0].go.set()
            screen = app.screen
            await wait_for(pilot, lambda: screen.state.step == 10)
            screen.query_one("#train-data").focus()             # Ctrl+X works from a form field too
            await pilot.press("ctrl+x")
            await wait_for(pilot, lambda: screen.state.done is not None)
            assert screen.state.done["reason"] == "interrupted" and screen.state.step == 10
            await pilot.press("ctrl+r")
            runs[1].go.set()
            await wait_for(pilot, lambda: screen.state.done is not None and
                           screen.state.done["reason"] == "finished")
            steps = [p[0] for p in screen.state.train]
            assert steps == list(range(1, 61))                    # one unbroken curve
            assert "finished at step 60" in text_of(screen.query_one("#train-status"))
    asyncio.run(scenario())


def test_attach_to_a_run_started_elsewhere(tmp_path):
    run = modeldir.models_home() / "elsewhere"
    run.mkdir(parents=True)
    metrics = run / "metrics.jsonl"
    metrics.write_text(json.dumps({"event": "start", "step": 0, "max_steps": 100}) + "\n")

    async def scenario():
        app = TinyLLMApp(screen="train", attach=str(run))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.state.max_steps == 100)
            with open(metrics, "a") as f:
                for step in range(1, 26):
                    f.write(json.dumps({"event": "step", "step": step, "loss": 4 - step / 10,
                                        "lr": 5e-4, "tokens_per_s": 1234.0, "eta": 75}) + "\n")
            await wait_for(pilot, lambda: screen.state.step == 25)
            assert "25/100" in text_of(screen.query_one("#stat-step"))
            assert "1,234" in text_of(screen.query_one("#stat-tokens-per-s"))
            assert "1:15" in text_of(screen.query_one("#stat-ETA"))
            assert braille_points(plot_text(app)) > 10
            await pilot.press("ctrl+x")                           # not ours to stop
            assert any("Ctrl+C in its terminal" in n.message for n in app._notifications)
    asyncio.run(scenario())


def test_png_export_of_the_loss_curves():
    async def scenario():
        app = TinyLLMApp(screen="train", trainer_factory=lambda spec: FakeRun(spec, 30))
        async with app.run_test(size=SIZE) as pilot:
            fill_form(app, steps=30, name="pngrun")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: app.screen.state.done is not None)
            await pilot.press("ctrl+g")
            png = modeldir.models_home() / "pngrun" / "loss.png"
            await wait_for(pilot, lambda: png.exists())
            data = png.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    asyncio.run(scenario())


def test_bad_form_and_failed_run_are_reported(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: {preset: tiny}\ntrain: {data: x.txt, no_such_key: 1}\n")

    async def scenario():
        app = TinyLLMApp(screen="train")
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            fill_form(app, steps=10, data=tmp_path / "missing.txt")
            await pilot.press("ctrl+s")
            assert screen.process is None
            assert any("missing.txt: no such data file" in n.message for n in app._notifications)
            # a config `tinyllm train` rejects: the child exits 2 and its message reaches the UI
            screen.query_one("#train-config").value = str(bad_yaml)
            screen.query_one("#train-data").value = ""
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: any("training did not start" in n.message
                                              for n in app._notifications), step=0.1)
            assert any("no_such_key" in n.message for n in app._notifications)
    asyncio.run(scenario())


def log_lines(app) -> list[str]:
    return [str(x.text) if hasattr(x, "text") else str(x) for x in app.screen.query_one("#train-log").lines]


def old_run(name: str, step: int, target: int) -> Path:
    """A run folder as `tinyllm train` leaves it after ``step`` of ``target`` steps."""
    from tinyllm.config import write_yaml

    run = modeldir.models_home() / name
    (run / "train_state").mkdir(parents=True)
    (run / "last").mkdir()
    write_yaml(run / "train.yaml", {"name": name, "model": {}, "train": {"max_steps": target}})
    write_yaml(run / "last" / "config.yaml", {"task": "lm", "train": {"step": step}})
    lines = [{"event": "start", "step": 0, "max_steps": target, "time": 1.0}]
    lines += [{"event": "step", "step": i, "loss": 3.0, "time": 1.0 + i} for i in range(1, step + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


def test_resume_continues_the_run_as_configured_unless_the_target_is_changed():
    specs = []

    def factory(spec):
        specs.append(spec)
        return FakeRun(spec, 0, 0)          # a run that ends at once

    run = old_run("attached", 100, 150)

    async def scenario():
        app = TinyLLMApp(screen="train", attach=str(run), trainer_factory=factory)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.state.step == 100)
            assert screen.query_one("#train-steps").value == "150"   # the run's target, shown
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: specs)
            assert specs[0].resume and specs[0].max_steps is None     # as configured: 150
            await wait_for(pilot, lambda: not screen.running)
            screen.query_one("#train-steps").value = "300"            # a new target, on purpose
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.screen.query(".dialog-question"))
            question = text_of(app.screen.query_one(".dialog-question"))
            assert "to 300 steps instead of its 150" in question and "stretched" in question
            await pilot.press("n")
            await pilot.pause(0.05)
            assert len(specs) == 1                                    # cancelled: nothing started
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.screen.query(".dialog-question"))
            await pilot.press("y")
            await wait_for(pilot, lambda: len(specs) == 2)
            assert specs[1].resume and specs[1].max_steps == 300
    asyncio.run(scenario())


def test_resume_after_the_run_finished_says_so_and_starts_nothing():
    specs = []
    run = old_run("finished", 150, 150)

    async def scenario():
        app = TinyLLMApp(screen="train", attach=str(run),
                         trainer_factory=lambda spec: specs.append(spec) or FakeRun(spec, 0, 0))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.state.step == 150)
            await pilot.press("ctrl+r")
            await pilot.pause(0.1)
            messages = [n.message for n in app._notifications]
            assert specs == [] and any("already reached step 150" in m for m in messages)
            assert not any("failed" in m for m in messages)
    asyncio.run(scenario())


def test_a_run_refused_by_tinyllm_train_is_not_a_failure(tmp_path):
    """The real child: `tinyllm train --resume` of a finished run exits 2 with its reason."""
    from click.testing import CliRunner

    from tinyllm.cli import main

    run = modeldir.models_home() / "done-real"
    r = CliRunner().invoke(main, ["train", "--preset", "tiny", "--data", str(DATA / "the-verdict.txt"),
                                  "--out", str(run), "--max-steps", "2", "-q", "--set",
                                  "batch_size=2", "--set", "seq_len=16", "--set", "eval_batches=1",
                                  "--set", "sample_tokens=0"])
    assert r.exit_code == 0, r.output
    metrics = (run / "metrics.jsonl").read_text()

    async def scenario():
        app = TinyLLMApp(screen="train")
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            screen.launch(__import__("tinyllm_tui.runner", fromlist=["RunSpec"]).RunSpec(
                out=run, preset=None, resume=True, max_steps=1))
            await wait_for(pilot, lambda: screen.process.poll() is not None, step=0.2)
            await pilot.pause(0.6)
            status = text_of(screen.query_one("#train-status"))
            assert "not started" in status and "failed" not in status, status
    asyncio.run(scenario())
    assert (run / "metrics.jsonl").read_text() == metrics          # nothing appended


def test_log_panel_starts_clean_and_shows_each_line_once_after_a_resume():
    class Failing(FakeRun):
        def _run(self):
            self.code = 1

        def tail(self, lines=12):
            return "Traceback (most recent call last):\nRuntimeError: boom"

    runs = iter([Failing, FakeRun, FakeRun])

    async def scenario():
        app = TinyLLMApp(screen="train",
                         trainer_factory=lambda spec: next(runs)(spec, 40, 0.02))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            fill_form(app, steps=40, name="logrun")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: any("Traceback" in x for x in log_lines(app)))
            await pilot.press("ctrl+s")                          # a new run: the old traceback goes
            await wait_for(pilot, lambda: screen.state.step >= 12)
            assert not any("Traceback" in x for x in log_lines(app))
            await pilot.press("ctrl+x")
            await wait_for(pilot, lambda: screen.state.done is not None)
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: screen.state.done is not None
                           and screen.state.done["reason"] == "finished")
            # a resume rewrites metrics.jsonl (atomic replace): nothing is logged twice
            metrics = screen.run_dir / "metrics.jsonl"
            tmp = metrics.with_suffix(".tmp")
            tmp.write_text(metrics.read_text())
            os.replace(tmp, metrics)
            await pilot.pause(1.2)
            lines = log_lines(app)
            evals = [x for x in lines if x.startswith("step 10:")]
            assert len(evals) == 1, lines
    asyncio.run(scenario())


def test_ctrl_q_asks_then_quitting_stops_a_run_started_here():
    runs = []

    def factory(spec):
        runs.append(FakeRun(spec, 100_000, hold_at=4))   # still going when the app quits
        return runs[-1]

    async def scenario():
        app = TinyLLMApp(screen="train", trainer_factory=factory)
        async with app.run_test(size=SIZE) as pilot:
            fill_form(app, steps=100_000)
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: app.screen.state.step > 3)
            # following another run while ours goes would leave Ctrl+X stopping the wrong one
            train = app.screen
            train.query_one("#train-attach").value = "/somewhere/else"
            train.query_one("#train-attach").focus()
            await pilot.press("enter")
            await pilot.pause(0.05)
            assert train.run_dir.name == "run"
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: app.screen.query(".dialog-question"))
            assert "is going" in text_of(app.screen.query_one(".dialog-question"))
            await pilot.press("n")
            await pilot.pause(0.1)
            assert app.is_running and runs[0].running
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: app.screen.query(".dialog-question"))
            await pilot.press("y")
            await wait_for(pilot, lambda: not app.is_running)
    asyncio.run(scenario())
    assert not runs[0].running and runs[0].code == 130    # stopped with a checkpoint, not killed
