"""Models: every model directory with its size and shape; info, ONNX export, delete, chat, and
an OpenAI-compatible server for the selected model (``tinyllm serve`` in a child process)."""
from __future__ import annotations

import shutil
from typing import Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from tinyllm import modeldir, runlock
from tinyllm.errors import UserError
from tinyllm.units import human, human_bytes
from tinyllm_tui.screens.base import TinyScreen
from tinyllm_tui.fmt import describe_error, pretty_path
from tinyllm_tui.runner import ServeProcess

DELETE_ADVICE = "it cannot be deleted while it is being written; stop that first"
COLUMNS = ("name", "task", "params", "tokenizer", "size", "onnx", "source")


def export_onnx(path, int8: bool = False) -> str:
    """Export a model directory to ONNX (tinyllm.export.onnx); a line saying what was written."""
    from tinyllm.export.onnx import export_model

    r = export_model(path, int8=int8)
    files = ", ".join(p.name for p in (r.fp32_path, r.int8_path) if p)
    return f"wrote {files} ({r.exporter} exporter, {r.seconds:.1f} s)"


class ModelsScreen(TinyScreen):
    MODE = "models"
    BINDINGS = [
        Binding("enter", "chat", "Chat with it", show=True),
        Binding("x", "export", "Export ONNX"),
        Binding("i", "export(True)", "ONNX + int8"),
        Binding("s", "serve", "Serve"),
        Binding("d,delete", "delete", "Delete"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.infos: dict[str, modeldir.ModelInfo] = {}
        self.servers: dict[str, ServeProcess] = {}   # model name -> its running server

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="models-body"):
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="model-info-box", classes="side"):
                yield Static("", id="model-info", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#models-table", DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col)
        self.action_refresh()
        table.focus()

    def screen_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Models: export to ONNX", "Export the selected model", self.action_export)
        yield SystemCommand("Models: export to ONNX with int8", "Export fp32 and int8 graphs",
                            lambda: self.action_export(True))
        yield SystemCommand("Models: serve / stop serving",
                            "An OpenAI-compatible server for the selected model", self.action_serve)
        yield SystemCommand("Models: delete", "Delete the selected model (asks first)",
                            self.action_delete)
        yield SystemCommand("Models: refresh", "Read the model folders again", self.action_refresh)

    # ---- list ---------------------------------------------------------------------------------
    def action_refresh(self) -> None:
        table = self.query_one("#models-table", DataTable)
        keep = self.selected_name()
        table.clear()
        self.infos = {}
        for info in modeldir.list_models(include_broken=True):
            self.infos[info.name] = info
            table.add_row(*model_row(info), key=info.name)
        if not self.infos:
            self.query_one("#model-info", Static).update(
                f"No models yet. Train one (Train screen or `tinyllm train`) or import GPT-2; "
                f"models live in {pretty_path(modeldir.models_home())}.")
            return
        names = list(self.infos)
        table.move_cursor(row=names.index(keep) if keep in names else 0)
        self.show_info(self.selected_name())

    def selected_name(self) -> str | None:
        table = self.query_one("#models-table", DataTable)
        if not table.row_count:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:
            return None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_info(event.row_key.value if event.row_key else None)

    def show_info(self, name: str | None) -> None:
        info = self.infos.get(name or "")
        box = self.query_one("#model-info", Static)
        if info is None:
            box.update("")
            return
        details = model_details(info)
        server = self.servers.get(info.name)
        if server is not None:
            details.append("\n")
            if server.error:
                details.append(f"server failed: {server.error}\n", style="bold red")
            else:
                state = "serving" if server.ready else "starting"
                details.append(f"{state} at {server.url or '…'}", style="bold green")
                details.append("  (s stops it; the model's id is its name)\n", style="dim")
        box.update(details)

    # ---- actions ------------------------------------------------------------------------------
    def action_chat(self) -> None:
        name = self.selected_name()
        if not name:
            return
        info = self.infos[name]
        if info.source == "bundled" or info.source == "user":
            ref = name
        else:
            ref = str(info.path)
        self.app.model_ref = ref
        self.app.switch_mode("chat")
        from tinyllm_tui.widgets.model_picker import ModelPicker

        try:
            self.app.screen.query_one(ModelPicker).set_current(ref, announce=True)
        except Exception:
            pass

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_chat()

    def action_serve(self) -> None:
        """Start a server for the selected model, or stop the one running for it."""
        name = self.selected_name()
        if not name:
            return
        info = self.infos[name]
        server = self.servers.pop(name, None)
        if server is not None and server.running:
            server.stop()
            self.app.notify(f"stopped serving {name}", title="Serve")
            self.show_info(name)
            return
        if info.task not in ("lm", "instruct", "chat", "classify", "embed"):
            self.error(f"{name} ({info.task}) cannot be served")
            return
        ref = name if info.source in ("bundled", "user") else str(info.path)
        server = ServeProcess(ref, name)
        try:
            server.start()
        except OSError as e:
            self.error(f"could not start tinyllm serve: {e}")
            return
        self.servers[name] = server
        self.app.notify(f"starting a server for {name}…", title="Serve")
        self._watch_server(name, server)

    @work(thread=True, group="serve", exit_on_error=False)
    def _watch_server(self, name: str, server: ServeProcess) -> None:
        """Follow a starting server until it is ready or failed (the URL shows as soon as known)."""
        import time

        url = None
        while not (server.ready or server.error):
            if server.url != url:
                url = server.url
                self.app.call_from_thread(self._server_changed, name, server)
            time.sleep(0.1)
        self.app.call_from_thread(self._server_changed, name, server)

    def _server_changed(self, name: str, server: ServeProcess) -> None:
        if server.ready:
            self.app.notify(f"serving {name} at {server.url}", title="Serve")
        elif server.error:
            self.error(f"could not serve {name}: {server.error}")
        if self.selected_name() == name:
            self.show_info(name)

    def on_unmount(self) -> None:
        for server in self.servers.values():
            server.stop()

    def action_export(self, int8: bool = False) -> None:
        name = self.selected_name()
        if not name:
            return
        what = "ONNX (fp32 + int8)" if int8 else "ONNX"
        self.app.notify(f"exporting {name} to {what}…", title="ONNX")
        self._export(self.infos[name], int8)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, info: modeldir.ModelInfo, int8: bool) -> None:
        try:
            out = export_onnx(info.path, int8)
        except BaseException as e:
            self.app.call_from_thread(self.error, f"ONNX export of {info.name} failed: "
                                                  f"{describe_error(e)}")
            return
        self.app.call_from_thread(self._exported, info.name, out)

    def _exported(self, name: str, out: str) -> None:
        self.app.notify(f"{name}: {out}", title="ONNX")
        self.action_refresh()

    def action_delete(self) -> None:
        from tinyllm_tui.screens.dialogs import ConfirmDialog

        name = self.selected_name()
        if not name:
            return
        info = self.infos[name]
        if info.source == "bundled":
            self.error(f"{name} is bundled with tinyllm and cannot be deleted")
            return
        if not self._free(info):
            return
        size = human_bytes(info.size_bytes())
        self.app.push_screen(ConfirmDialog(f"Delete {name} ({size})?\n{pretty_path(info.path)}"),
                             lambda yes: self.delete(info) if yes else None)

    def _free(self, info: modeldir.ModelInfo) -> bool:
        """False (and an error naming the holder) while a trainer or an export writes the model."""
        try:
            runlock.ensure_free(info.path, DELETE_ADVICE)
        except UserError as e:
            self.error(str(e))
            return False
        return True

    def delete(self, info: modeldir.ModelInfo) -> None:
        try:  # held while deleting: a run that started while the dialog was open is refused
            with runlock.acquire(info.path, action=DELETE_ADVICE):
                shutil.rmtree(info.path)
        except UserError as e:
            self.error(str(e))
            return
        except OSError as e:
            self.error(f"could not delete {info.path}: {e}")
            return
        self.app.notify(f"deleted {info.name}", title="Models")
        self.action_refresh()


def model_row(info: modeldir.ModelInfo) -> tuple:
    if info.problem:
        broken = Text("broken", style="bold red")
        return (info.name, "-", broken, "-", human_bytes(info.size_bytes()), "-", info.source)
    try:
        params = human(info.model_config.num_params())
    except Exception:
        params = Text("bad config", style="bold red")
    task = f"{info.task} ({info.family})" if info.is_encoder else info.task
    return (info.name, task, params, info.tokenizer, human_bytes(info.size_bytes()),
            info.onnx_label, info.source)


def model_details(info: modeldir.ModelInfo) -> Text:
    out = Text()
    out.append(f"{info.name}\n", style="bold")
    out.append(f"{pretty_path(info.path)}\n\n", style="dim")
    if info.problem:
        out.append(f"broken: {info.problem}\n", style="bold red")
        return out
    try:
        s = info.summary()
        rows = [("task", s["task"]), ("parameters", f"{s['params']:,}"),
                ("layers × heads × width", f"{s['n_layer']} × {s['n_head']} × {s['n_embd']}"),
                ("context", s["context_length"]), ("vocabulary", f"{s['vocab_size']:,}"),
                ("tokenizer", s["tokenizer"]), ("size on disk", human_bytes(s["size_bytes"])),
                ("onnx", info.onnx_label)]
        if info.is_encoder:
            cfg = info.model_config
            rows.insert(1, ("family", f"{info.family} (encoder)"))
            heads = [h for h, on in (("pooler", cfg.pooler), ("masked-LM", cfg.mlm_head),
                                     ("classifier", cfg.n_classes)) if on]
            rows.append(("heads", ", ".join(heads) or "none"))
            embed = info.meta.get("embed") or {}
            pooling = cfg.pooling if cfg.n_classes else embed.get("pooling", "mean")
            rows.append(("pooling", pooling + (" + normalize" if embed.get("normalize") else "")))
        if s.get("labels"):
            rows.append(("labels", ", ".join(map(str, s["labels"]))))
        for k, v in rows:
            out.append(f"{k:>22}  ", style="dim")
            out.append(f"{v}\n")
    except Exception as e:
        out.append(f"config.yaml problem: {describe_error(e)}\n", style="bold red")
    extra = {k: v for k, v in info.meta.items() if k in ("saved_at", "format", "train", "template")}
    if extra:
        out.append("\n")
    for key, value in flatten(extra):
        out.append(f"{key:>22}  ", style="dim")
        out.append(f"{value}\n")
    return out


def flatten(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested config values as ("train.step", "2000") pairs."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += flatten(v, f"{prefix}{k}.")
        else:
            text = str(v).replace("\n", "⏎")
            out.append((f"{prefix}{k}", text if len(text) <= 60 else text[:59] + "…"))
    return out
