"""Snapshot tests (pytest-textual-snapshot): the layout of every screen, in the dark and light themes.

Update after an intended change with ``pytest tests/tui/test_tui_snapshots.py --snapshot-update`` and look
at the SVGs under tests/tui/__snapshots__/. Timings shown on screen come from a fake clock so the pictures
do not change from run to run.
"""
from __future__ import annotations

import json
import shutil
import time as real_time
from pathlib import Path

import pytest
from textual.widgets import Input

from tinyllm import modeldir
from tinyllm_tui.app import TinyLLMApp
from tinyllm_tui.screens import chat as chat_screen
from tinyllm_tui.screens import data as data_screen
from tinyllm_tui.screens import inspect as inspect_screen

from tui_fakes import FakeEngine, make_model, wait_for

SIZE = (120, 34)
DATA = Path(__file__).resolve().parents[2] / "tinyllm" / "bundled" / "data"
SHAKESPEARE = modeldir.BUNDLED_MODELS / "shakespeare-char"   # before fixed_world hides them


class FakeClock:
    """perf_counter advances one second per call; sleep is real."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self) -> float:
        self.t += 1.0
        return self.t

    sleep = staticmethod(real_time.sleep)


@pytest.fixture(autouse=True)
def fixed_world(monkeypatch, tmp_path):
    monkeypatch.setattr(modeldir, "BUNDLED_MODELS", tmp_path / "no-bundled-models")
    monkeypatch.setattr(chat_screen, "time", FakeClock())
    monkeypatch.setattr(data_screen, "time", FakeClock())
    monkeypatch.setattr(inspect_screen, "time", FakeClock())
    monkeypatch.setattr(Input, "cursor_blink", False)      # no blink phase in the pictures


async def settled(pilot) -> None:
    """Every worker done and every message handled: nothing left to change the picture."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def chat_app(theme: str = "dark") -> TinyLLMApp:
    engine = FakeEngine(pieces=["Shall I compare thee", " to a summer's day?", "\nThou art more",
                                " lovely and more temperate."], name="fake-model")
    return TinyLLMApp(model="fake-model", theme=theme,
                      engine_factory=lambda model, backend: engine)


async def chat_once(pilot) -> None:
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.engine is not None)
    screen.query_one("#prompt").value = "Sonnet 18:"
    await pilot.press("enter")
    await wait_for(pilot, lambda: not screen.generating and screen.query(".message.assistant"))
    await settled(pilot)


def test_chat_screen(snap_compare):
    assert snap_compare(chat_app(), terminal_size=SIZE, run_before=chat_once)


def test_chat_screen_light_theme(snap_compare):
    assert snap_compare(chat_app("light"), terminal_size=SIZE, run_before=chat_once)


def test_train_screen(snap_compare):
    run = modeldir.models_home() / "snap-run"
    run.mkdir(parents=True)
    events = [{"event": "start", "step": 0, "max_steps": 200, "params": 421120, "device": "cpu",
               "precision": "fp32"}]
    for step in range(1, 121):
        events.append({"event": "step", "step": step, "loss": 4.2 * step ** -0.25, "lr": 9.5e-4,
                       "tokens_per_s": 8123.0, "elapsed": step * 0.25, "eta": (200 - step) * 0.25})
        if step % 40 == 0:
            events.append({"event": "eval", "step": step, "train_loss": 4.2 * step ** -0.25,
                           "val_loss": 4.4 * step ** -0.24, "sample": "ROMEO:\nWhat light is this?"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    async def follow(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.state.step == 120)
        await settled(pilot)
    app = TinyLLMApp(screen="train", theme="dark", attach=str(run))
    assert snap_compare(app, terminal_size=(130, 40), run_before=follow)


def test_data_screen(snap_compare):
    async def loaded(pilot):
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.counts is not None)
        await wait_for(pilot, lambda: "tokens," in str(screen.query_one("#token-preview").content))
        await settled(pilot)
    app = TinyLLMApp(screen="data", theme="dark", data="tinyllm/bundled/data/SMSSpamCollection.tsv")
    assert snap_compare(app, terminal_size=(130, 40), run_before=loaded)


def test_models_screen(snap_compare):
    home = modeldir.models_home()
    make_model(home, "shakespeare-small", n_layer=4, weights=3_400_000,
               train={"data": "tinyshakespeare.txt", "step": 2000, "val_loss": 1.52})
    d = make_model(home, "sms-spam", task="classify", labels=["ham", "spam"], weights=500_000)
    (d / "model.onnx").write_bytes(b"\0" * 510_000)

    async def listed(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#models-table").row_count == 2)
        await settled(pilot)
    app = TinyLLMApp(screen="models", theme="dark")
    assert snap_compare(app, terminal_size=SIZE, run_before=listed)


def test_help_screen(snap_compare):
    app = TinyLLMApp(screen="models", theme="dark")
    assert snap_compare(app, terminal_size=SIZE, press=["f1"])


async def inspect_romeo(pilot) -> None:
    """Inspect a line of Romeo and Juliet on the (copied) bundled model, three tokens back, one
    layer down from the last."""
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.inspector is not None)
    screen.query_one("#inspect-prompt").value = \
        "ROMEO:\\nBut soft, what light through yonder window breaks?"
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.inspection is not None and not screen.busy)
    await pilot.press("left", "left", "left", "up")
    await settled(pilot)


def inspect_app() -> TinyLLMApp:
    shutil.copytree(SHAKESPEARE, modeldir.models_home() / "shakespeare-char")
    return TinyLLMApp(screen="inspect", theme="dark")


def test_inspect_screen(snap_compare):
    assert snap_compare(inspect_app(), terminal_size=(120, 40), run_before=inspect_romeo)


def test_inspect_screen_80_columns(snap_compare):
    assert snap_compare(inspect_app(), terminal_size=(80, 30), run_before=inspect_romeo)
