"""Models screen: the list, info, delete with confirmation, ONNX export, chat with a model."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tinyllm import modeldir
from tinyllm.config import write_yaml
from tinyllm_tui.app import TinyLLMApp
from tinyllm_tui.screens import models as models_screen

from tui_fakes import FakeEngine, make_model, text_of, wait_for

SIZE = (130, 34)


@pytest.fixture(autouse=True)
def no_bundled_models(monkeypatch, tmp_path):
    """Only the models a test makes (the bundled ones change as the project grows)."""
    monkeypatch.setattr(modeldir, "BUNDLED_MODELS", tmp_path / "no-bundled-models")


def rows(app) -> list[str]:
    table = app.screen.query_one("#models-table")
    return [table.get_row_at(i)[0] for i in range(table.row_count)]


def test_list_info_and_delete_with_confirmation():
    home = modeldir.models_home()
    make_model(home, "alpha", n_layer=2)
    beta = make_model(home, "beta", task="classify", labels=["ham", "spam"], weights=2 * 1024 * 1024)

    async def scenario():
        app = TinyLLMApp(screen="models")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: rows(app) == ["alpha", "beta"])
            table = app.screen.query_one("#models-table")
            assert tuple(table.get_row_at(1)) == ("beta", "classify", "29.67k", "char", "2.0 MiB",
                                                  "-", "user")
            await pilot.press("down")
            info = text_of(app.screen.query_one("#model-info"))
            assert "beta" in info and "labels  ham, spam" in info and "$TINYLLM_HOME/models/beta" in info
            # "n" keeps the model
            await pilot.press("d")
            await wait_for(pilot, lambda: app.screen.query(".dialog"))
            await pilot.press("n")
            await wait_for(pilot, lambda: not app.screen.query(".dialog"))
            assert beta.exists()
            # "y" deletes it and the list follows
            await pilot.press("d")
            await wait_for(pilot, lambda: app.screen.query(".dialog"))
            assert "Delete beta (2.0 MiB)?" in text_of(app.screen.query_one(".dialog-question"))
            await pilot.press("y")
            await wait_for(pilot, lambda: rows(app) == ["alpha"])
            assert not beta.exists()
    asyncio.run(scenario())


def test_bundled_models_cannot_be_deleted(tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    shipped = make_model(bundled, "shipped")
    monkeypatch.setattr(modeldir, "BUNDLED_MODELS", bundled)

    async def scenario():
        app = TinyLLMApp(screen="models")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: rows(app) == ["shipped"])
            await pilot.press("d")
            await pilot.pause()
            assert not app.screen.query(".dialog")
            assert any("cannot be deleted" in n.message for n in app._notifications)
            assert shipped.exists()
    asyncio.run(scenario())


def test_export_runs_in_a_worker_and_the_list_shows_it(monkeypatch):
    d = make_model(modeldir.models_home(), "alpha")
    calls = []

    def fake_export(path, int8=False):
        calls.append((Path(path), int8))
        (Path(path) / "model.onnx").write_bytes(b"onnx")
        if int8:
            (Path(path) / "model.int8.onnx").write_bytes(b"int8")
        return "wrote model.onnx"
    monkeypatch.setattr(models_screen, "export_onnx", fake_export)

    async def scenario():
        app = TinyLLMApp(screen="models")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: rows(app) == ["alpha"])
            await pilot.press("x")
            table = app.screen.query_one("#models-table")
            await wait_for(pilot, lambda: table.get_row_at(0)[5] == "fp32")
            await pilot.press("i")
            await wait_for(pilot, lambda: table.get_row_at(0)[5] == "int8 + fp32")
            assert calls == [(d, False), (d, True)]
    asyncio.run(scenario())


def test_export_failure_is_reported(monkeypatch):
    make_model(modeldir.models_home(), "alpha")

    def failing(path, int8=False):
        raise RuntimeError("exporter exploded")
    monkeypatch.setattr(models_screen, "export_onnx", failing)

    async def scenario():
        app = TinyLLMApp(screen="models")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: rows(app) == ["alpha"])
            await pilot.press("x")
            await wait_for(pilot, lambda: any("exporter exploded" in n.message
                                              for n in app._notifications))
            assert app.is_running
    asyncio.run(scenario())


def test_broken_config_is_shown_not_a_crash():
    d = make_model(modeldir.models_home(), "odd")
    write_yaml(d / "config.yaml", {"task": "lm", "model": {"n_embd": 33, "n_head": 2}})

    async def scenario():
        app = TinyLLMApp(screen="models")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: rows(app) == ["odd"])
            assert str(app.screen.query_one("#models-table").get_row_at(0)[2]) == "broken"
            assert "divisible" in text_of(app.screen.query_one("#model-info"))
    asyncio.run(scenario())


def test_enter_opens_chat_with_the_selected_model():
    make_model(modeldir.models_home(), "alpha")
    make_model(modeldir.models_home(), "beta")
    opened = []

    def factory(model, backend):
        opened.append(model)
        return FakeEngine(name=model)

    async def scenario():
        app = TinyLLMApp(screen="models", engine_factory=factory)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: rows(app) == ["alpha", "beta"])
            await pilot.press("down", "enter")
            await wait_for(pilot, lambda: app.current_mode == "chat" and opened
                           and opened[-1] == "beta" and app.screen.engine is not None)
            assert "beta" in text_of(app.screen.query_one("#chat-model-info"))
    asyncio.run(scenario())


def test_serve_the_selected_model_shows_its_url_and_stops(tiny_lm_dir):
    import json
    import shutil
    import urllib.request

    shutil.copytree(tiny_lm_dir, modeldir.models_home() / "servable")

    async def scenario():
        app = TinyLLMApp(screen="models")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: rows(app) == ["servable"])
            await pilot.press("s")
            screen = app.screen
            await wait_for(pilot, lambda: "serving at http://127.0.0.1:"
                           in text_of(screen.query_one("#model-info")))
            server = screen.servers["servable"]
            req = urllib.request.Request(server.url + "/completions", method="POST",
                                         data=json.dumps({"model": "servable", "prompt": "Hi",
                                                          "max_tokens": 3}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert json.load(r)["usage"]["completion_tokens"] <= 3
            await pilot.press("s")
            await wait_for(pilot, lambda: not server.running)
            assert "serving at" not in text_of(screen.query_one("#model-info"))
    asyncio.run(scenario())


def test_models_screen_lists_encoders(tiny_bert_dir):
    import shutil

    from tinyllm import modeldir
    from tinyllm_tui.screens.models import model_details, model_row

    shutil.copytree(tiny_bert_dir, modeldir.models_home() / "tiny-bert")
    info = next(m for m in modeldir.list_models() if m.name == "tiny-bert")
    assert model_row(info)[1] == "embed (bert)"
    text = model_details(info).plain
    assert "bert (encoder)" in text and "pooler, masked-LM" in text and "mean" in text
