"""Data: browse a text, TSV/CSV, JSONL or Alpaca JSON file before training on it.

Loading, token counting and searching run in worker threads, and the table shows one page of rows
at a time, so a 100k-row file opens without freezing the screen.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Label, Select, Static
from textual.worker import get_current_worker

from tinyllm import modeldir
from tinyllm_tui.datafile import Dataset, TokenStats, load_dataset, token_stats
from tinyllm_tui.screens.base import TinyScreen
from tinyllm_tui.fmt import describe_error
from tinyllm_tui.widgets.tokens import label_bars, token_preview

PAGE = 100            # rows in the table at a time
CELL = 90             # characters shown per cell
BUNDLED_DATA = Path(modeldir.__file__).parent / "bundled" / "data"
DATA_SUFFIXES = (".txt", ".tsv", ".csv", ".jsonl", ".json")


def sample_files() -> list[Path]:
    if not BUNDLED_DATA.is_dir():
        return []
    return sorted(p for p in BUNDLED_DATA.iterdir()
                  if p.suffix in DATA_SUFFIXES and p.stem.lower() != "readme")


def tokenizer_choices() -> list[tuple[str, str]]:
    out = [("gpt2 (GPT-2 BPE)", "gpt2"), ("char (this file's characters)", "char")]
    for m in modeldir.list_models():
        if m.tokenizer in ("char", "bpe", "wordpiece"):
            out.append((f"{m.tokenizer} of model {m.name}", f"model:{m.path}"))
    return out


def make_tokenizer(choice: str, ds: Dataset):
    from tinyllm import tokenizer as tk

    if choice == "gpt2":
        return tk.get_gpt2()
    if choice == "char":
        return tk.CharTokenizer.train("".join(ds.text_of(i) for i in range(len(ds))) or " ")
    return modeldir.load_tokenizer(Path(choice.removeprefix("model:")))


def cell(value: str) -> str:
    value = value.replace("\n", "⏎").replace("\t", "→")
    return value if len(value) <= CELL else value[:CELL - 1] + "…"


class DataScreen(TinyScreen):
    MODE = "data"
    BINDINGS = [
        Binding("ctrl+f", "search", "Search"),
        Binding("ctrl+l", "focus_path", "Open file"),
        Binding("left_square_bracket", "page(-1)", "Prev page"),
        Binding("right_square_bracket", "page(1)", "Next page"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.ds: Dataset | None = None
        self.view: list[int] | range = []  # indices of the rows that match the search
        self.page = 0
        self.stats: TokenStats | None = None   # tokens per row with the chosen tokenizer
        self.tokenizer = None
        self.load_seconds = 0.0

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="data-bar"):
            yield Input(placeholder="path to a data file, then Enter", id="data-path",
                        select_on_focus=False)
            yield Select([(p.name, str(p)) for p in sample_files()], prompt="sample data",
                         id="data-sample", compact=True)
            yield Select(tokenizer_choices(), value="gpt2", allow_blank=False, id="data-tokenizer",
                         compact=True)
        with Horizontal(id="data-split"):
            with Vertical(id="data-left"):
                yield Input(placeholder="search rows (Ctrl+F)", id="data-search", compact=True,
                            select_on_focus=False)
                yield DataTable(id="data-table", cursor_type="row", zebra_stripes=True)
                yield Static("open a file: type its path above, or pick sample data",
                             id="data-page", markup=False)
            with VerticalScroll(id="data-right", classes="side"):
                yield Static("", id="data-summary", markup=False)
                yield Label("tokens per row", classes="section")
                yield _hist_widget()
                yield Static("", id="label-dist", markup=False)
                yield Label("tokenisation preview", classes="section")
                yield Static("select a row", id="token-preview", markup=False)

    def on_mount(self) -> None:
        if self.app.start_data:   # after the first paint, which the reading worker would slow
            self.call_after_refresh(self.open, self.app.start_data)

    def screen_commands(self) -> Iterable[SystemCommand]:
        for p in sample_files():
            yield SystemCommand(f"Data: open {p.name}", f"Browse {p}", lambda p=p: self.open(p))

    # ---- opening ------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "data-path" and event.value.strip():
            event.stop()
            self.open(event.value.strip())

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "data-sample" and event.value is not Select.NULL:
            self.open(str(event.value))
        elif event.select.id == "data-tokenizer" and self.ds is not None:
            self._count(self.ds, str(event.value))

    def open(self, path: str | Path) -> None:
        self.query_one("#data-path", Input).value = str(path)
        self.query_one("#data-page", Static).update(f"loading {path}…")
        self._load(str(path))

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self, path: str) -> None:
        worker = get_current_worker()
        t0 = time.perf_counter()

        def progress(n: int) -> None:
            if not worker.is_cancelled:
                self.app.call_from_thread(self.query_one("#data-page", Static).update,
                                          f"loading {path}… {n:,} lines read")
        try:
            ds = load_dataset(path, progress)
            labels = ds.label_counts()
        except BaseException as e:  # a bad data file is reported, never a crash
            if not worker.is_cancelled:
                self.app.call_from_thread(self._load_failed, path, describe_error(e))
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._loaded, ds, labels, time.perf_counter() - t0)

    def _load_failed(self, path: str, message: str) -> None:
        self.query_one("#data-page", Static).update(f"could not open {path}")
        self.error(message)

    def _loaded(self, ds: Dataset, labels, seconds: float) -> None:
        self.ds, self.stats, self.load_seconds = ds, None, seconds
        self.view = range(len(ds))
        self.page = 0
        search = self.query_one("#data-search", Input)
        with search.prevent(Input.Changed):
            search.value = ""
        table = self.query_one("#data-table", DataTable)
        table.clear(columns=True)
        for c in ds.columns:
            table.add_column(c, key=c)
        table.add_column("tokens", key="_tokens")
        self.query_one("#label-dist", Static).update(label_bars(labels) if labels else "")
        self.show_summary()
        self.show_page()
        choice = self.query_one("#data-tokenizer", Select).value
        self._count(ds, str(choice))
        for note in ds.notes[:3]:
            self.app.notify(note, severity="warning", timeout=6)

    # ---- table --------------------------------------------------------------------------------
    def show_page(self) -> None:
        if self.ds is None:
            return
        table = self.query_one("#data-table", DataTable)
        table.clear()
        pages = max(1, -(-len(self.view) // PAGE))
        self.page = min(max(self.page, 0), pages - 1)
        start = self.page * PAGE
        for i in self.view[start:start + PAGE]:
            tokens = str(self.counts[i]) if self.counts is not None else "…"
            table.add_row(*(cell(v) for v in self.ds.rows[i]), tokens, key=str(i))
        shown = f"rows {start + 1:,}–{min(start + PAGE, len(self.view)):,} of {len(self.view):,}" \
            if self.view else "no rows match"
        query = self.query_one("#data-search", Input).value.strip()
        match = f" matching {query!r} (of {len(self.ds):,})" if query else ""
        self.query_one("#data-page", Static).update(
            f"{shown}{match} · page {self.page + 1}/{pages} · [ and ] change page")

    def action_page(self, delta: int) -> None:
        self.page += delta
        self.show_page()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None:
            self.show_preview(int(event.row_key.value))

    def show_preview(self, i: int) -> None:
        if self.ds is None or self.tokenizer is None:
            return
        try:
            preview = token_preview(self.tokenizer, self.ds.text_of(i)[:6000])
        except Exception as e:
            preview = f"cannot tokenise this row: {describe_error(e)}"
        self.query_one("#token-preview", Static).update(preview)

    # ---- search -------------------------------------------------------------------------------
    def action_search(self) -> None:
        self.query_one("#data-search", Input).focus()

    def action_focus_path(self) -> None:
        self.query_one("#data-path", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "data-search" and self.ds is not None:
            self._search(self.ds, event.value)

    @work(thread=True, exclusive=True, group="search", exit_on_error=False)
    def _search(self, ds: Dataset, query: str) -> None:
        time.sleep(0.15)   # debounce: a newer keystroke cancels this search
        worker = get_current_worker()
        if worker.is_cancelled:
            return
        matches = ds.search(query)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._searched, ds, matches)

    def _searched(self, ds: Dataset, matches: list[int]) -> None:
        if ds is self.ds:
            self.view, self.page = matches, 0
            self.show_page()

    # ---- token counts -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="count", exit_on_error=False)
    def _count(self, ds: Dataset, choice: str) -> None:
        worker = get_current_worker()
        try:
            tok = make_tokenizer(choice, ds)
            counts: list[int] = []
            for i in range(len(ds)):   # one by one: faster than encode_batch for short rows
                if i % 1000 == 0:
                    if worker.is_cancelled:
                        return
                    time.sleep(0.001)  # hand the GIL to the UI thread now and then
                counts.append(len(tok.encode(ds.text_of(i))))
            stats = token_stats(counts)
        except BaseException as e:
            if not worker.is_cancelled:
                self.app.call_from_thread(self.error, f"tokenizer {choice}: {describe_error(e)}")
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._counted, ds, tok, stats)

    @property
    def counts(self) -> list[int] | None:
        return self.stats.counts if self.stats else None

    def _counted(self, ds: Dataset, tok, stats: TokenStats) -> None:
        if ds is not self.ds:
            return
        self.tokenizer, self.stats = tok, stats
        self.show_summary()
        self.show_page()
        plot = self.query_one("#token-hist")
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.bar(stats.bin_centers, stats.bin_heights, width=0.9)
        lo, hi = stats.bin_centers[0], stats.bin_centers[-1]
        ticks = [lo + (hi - lo) * k / 4 for k in range(5)] if hi > lo else [lo]
        plt.xticks(ticks, [f"{t:.0f}" for t in ticks])     # fixed ticks: plotext's own vary
        yticks, ylabels = count_ticks(max(stats.bin_heights, default=0))
        plt.yticks(yticks, ylabels)          # whole rows, never 1302.5
        plt.ylim(0, yticks[-1])
        plt.xlabel("tokens per row")
        plot.refresh()
        table = self.query_one("#data-table", DataTable)
        if table.row_count:
            row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self.show_preview(int(row_key.value))

    def show_summary(self) -> None:
        ds, st = self.ds, self.stats
        if ds is None:
            return
        lines = [f"{ds.path.name}: {ds.kind}, {len(ds):,} rows, read in {self.load_seconds:.2f} s"]
        if st:
            lines.append(f"tokens: {st.total:,} total · mean {st.mean:.1f} · median {st.median} · "
                         f"max {st.max} · 95% ≤ {st.p95}")
            lines.append(f"tokenizer: {getattr(self.tokenizer, 'name', '?')} "
                         f"(vocabulary {getattr(self.tokenizer, 'vocab_size', 0):,})")
        self.query_one("#data-summary", Static).update("\n".join(lines))


def count_ticks(top: int, n: int = 4) -> tuple[list[int], list[str]]:
    """Axis ticks for a count from 0 to ``top``: whole numbers only (a count of rows has no
    fractions), 1, 2 or 5 x 10^k apart, labelled like 1,500."""
    step = max(1, -(-top // n))
    scale = 10 ** (len(str(step)) - 1)
    step = next(m * scale for m in (1, 2, 5, 10) if m * scale >= step)  # 1, 2 or 5 x 10^k
    ticks = list(range(0, top + step, step)) if top else [0]
    return ticks, [f"{t:,}" for t in ticks]


def _hist_widget():
    from textual_plotext import PlotextPlot

    return PlotextPlot(id="token-hist")
