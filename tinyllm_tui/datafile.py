"""Reading a data file for the browser: text, TSV/CSV, JSONL or (Alpaca) JSON, into display rows.

This is a viewer's reader: it keeps every row with its source line so a bad row can be pointed at,
guesses which column holds the text and which the label, and reports progress so a 100k-row file can
load in a worker thread. It imports no torch. Files are read as the CLI reads them
(:mod:`tinyllm.data.files`: UTF-8, JSON arrays and JSONL, the same errors).
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tinyllm.data.classification import LABEL_NAMES, TEXT_NAMES
from tinyllm.data.files import iter_lines, parse_records, read_text
from tinyllm.errors import DataError as DataFileError, UserError

INSTRUCTION_KEYS = ("instruction", "input", "output")

Progress = Callable[[int], None]




@dataclass
class Dataset:
    path: Path
    kind: str                          # "text", "classification", "instruction" or "table"
    columns: list[str]                 # column titles (the first is always "line")
    rows: list[tuple[str, ...]]        # display values, one tuple per row, line number first
    text_column: int | None = None     # index in a row of the text to tokenise (None: instruction)
    label_column: int | None = None    # index of the label (classification data)
    notes: list[str] = field(default_factory=list)  # remarks: "file:line: why" for rows left out, ...
    _haystack: list[str] | None = field(default=None, repr=False)  # lower-cased rows for search

    def __len__(self) -> int:
        return len(self.rows)

    def text_of(self, i: int) -> str:
        """The text of row ``i`` a model would see (instruction rows: prompt and response)."""
        row = self.rows[i]
        if self.kind == "instruction":
            return instruction_text(*row[1:4])
        return row[self.text_column] if self.text_column is not None else " ".join(row[1:])

    def label_counts(self) -> Counter:
        if self.label_column is None:
            return Counter()
        return Counter(r[self.label_column] for r in self.rows)

    def search(self, query: str) -> list[int]:
        """Indices of rows containing ``query`` (case-insensitive) in any column."""
        q = query.lower().strip()
        if not q:
            return list(range(len(self.rows)))
        if self._haystack is None:   # built on the first search, then reused
            self._haystack = ["\x00".join(r[1:]).lower() for r in self.rows]
        return [i for i, h in enumerate(self._haystack) if q in h]


@dataclass
class TokenStats:
    """Token counts of every row and what the screen shows about them (computed off the UI thread)."""
    counts: list[int]                   # tokens per row, in row order
    total: int
    mean: float
    median: int
    p95: int
    max: int
    bin_centers: list[float]            # histogram of the counts
    bin_heights: list[int]
    bin_width: float


def token_stats(counts: list[int], bins: int = 40) -> TokenStats:
    import numpy as np

    a = np.asarray(counts, dtype=np.int64)
    if a.size == 0:
        return TokenStats([], 0, 0.0, 0, 0, 0, [], [], 1.0)
    n_bins = int(min(bins, max(1, a.max() - a.min() + 1)))
    heights, edges = np.histogram(a, bins=n_bins)
    return TokenStats(counts=list(counts), total=int(a.sum()), mean=float(a.mean()),
                      median=int(np.median(a)), p95=int(np.percentile(a, 95)), max=int(a.max()),
                      bin_centers=((edges[:-1] + edges[1:]) / 2).tolist(),
                      bin_heights=heights.tolist(), bin_width=float(edges[1] - edges[0]))


def instruction_text(instruction: str, input: str = "", output: str = "") -> str:
    """An instruction example as the model reads it: the default prompt template, then the response."""
    from tinyllm.data.templates import format_prompt, load_template

    if not _TEMPLATE:   # read the template file once, not once per row
        _TEMPLATE.append(load_template(None))
    return format_prompt(_TEMPLATE[0], instruction, input) + output


_TEMPLATE: list = []


def load_dataset(path: str | Path, progress: Progress | None = None) -> Dataset:
    """Read a data file by its extension (.tsv .csv .jsonl .json; anything else is plain text)."""
    path = Path(path).expanduser()
    text = read_text(path)
    ext = path.suffix.lower()
    if ext not in (".tsv", ".csv", ".jsonl", ".json"):
        return _read_text(path, text, progress)
    if ext in (".jsonl", ".json"):
        records = _read_records(path, text, progress)
        if records and "instruction" in records[0][1]:
            return _from_records(path, records)
    note = None
    try:  # text + label data: the classification reader decides, as fine-tuning will
        return _classification(path)
    except UserError as e:
        note = f"not read as classification data: {e}"
    if ext in (".tsv", ".csv"):
        ds = _read_table(path, text, "\t" if ext == ".tsv" else ",", progress)
    else:
        ds = _from_records(path, records)
    ds.notes.insert(0, note)
    return ds


def _classification(path: Path) -> Dataset:
    from tinyllm.data.classification import check_label_spread, read_examples

    notes: list[str] = []
    examples = read_examples(path, log=notes.append)
    check_label_spread(examples, path)
    first = "record" if path.suffix.lower() == ".json" else "line"
    rows = [(str(e.line), e.label, e.text) for e in examples]
    return Dataset(path, "classification", [first, "label", "text"], rows, text_column=2,
                   label_column=1, notes=notes)


def _tick(progress: Progress | None, n: int) -> None:
    if progress and n % 5000 == 0:
        progress(n)


def _read_text(path: Path, text: str, progress: Progress | None) -> Dataset:
    rows = []
    for n, line in iter_lines(text):
        rows.append((str(n), line))
        _tick(progress, n)
    return Dataset(path, "text", ["line", "text"], rows, text_column=1)


def _read_table(path: Path, text: str, delim: str, progress: Progress | None) -> Dataset:
    if delim == "\t":   # TSV: no quoting (SMS texts contain bare quotes)
        records = ((n, line.split("\t")) for n, line in iter_lines(text))
    else:
        records = ((n, rec) for n, rec in enumerate(csv.reader(text.splitlines()), 1))
    from tinyllm.data.classification import SAMPLE_ROWS, has_header_row

    records = [(n, rec) for n, rec in records if any(f.strip() for f in rec)]
    rows, skipped, width, header = [], [], None, None
    if records:
        width = len(records[0][1])
        if has_header_row([rec for _, rec in records[:SAMPLE_ROWS]], sample=text[:16384]):
            header = [f.strip() for f in records[0][1]]
            records = records[1:]
    for n, rec in records:
        _tick(progress, n)
        if len(rec) != width:
            skipped.append(f"{path}:{n}: {len(rec)} fields, expected {width}")
            continue
        rows.append((str(n), *rec))
    if width is None:
        raise DataFileError(f"{path}: empty file")
    columns = ["line"] + (header or _default_columns(width))
    ds = Dataset(path, "table", columns, rows, notes=skipped)
    _guess_columns(ds)
    return ds


def _default_columns(width: int) -> list[str]:
    if width == 2:
        return ["label", "text"]
    return [f"col{i + 1}" for i in range(width)]


def _guess_columns(ds: Dataset) -> None:
    """Pick the text column (by name, else the longest) and the label column (by name, else few
    distinct short values)."""
    names = [c.lower() for c in ds.columns]
    sample = ds.rows[:2000]
    if not sample:
        return
    candidates = range(1, len(names))
    mean_len = {i: sum(len(r[i]) for r in sample) / len(sample) for i in candidates}
    ds.text_column = next((i for i in candidates if names[i] in TEXT_NAMES),
                          max(candidates, key=lambda i: mean_len[i]))
    label = next((i for i in candidates if names[i] in LABEL_NAMES), None)
    if label is None:
        for i in candidates:
            distinct = len({r[i] for r in sample})
            if i != ds.text_column and distinct <= 50 and mean_len[i] < 30 \
                    and distinct * 10 <= len(sample):
                label = i
                break
    if label is not None and label != ds.text_column:
        ds.label_column = label
        ds.kind = "classification"


def _read_records(path: Path, text: str, progress: Progress | None) -> list[tuple[int, dict]]:
    """(line, or record number in a JSON array, object) for every record."""
    form, records = parse_records(path, text)
    out = []
    for n, obj in records:
        _tick(progress, n)
        if not isinstance(obj, dict):
            where = f"{path}: record {n}" if form == "json" else f"{path}:{n}"
            raise DataFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        out.append((n, obj))
    return out


def _from_records(path: Path, records: list[tuple[int, dict]]) -> Dataset:
    if not records:
        raise DataFileError(f"{path}: no records")
    keys: list[str] = []
    for _, obj in records[:1000]:
        keys += [k for k in obj if k not in keys]
    first = "line" if path.suffix.lower() == ".jsonl" else "record"
    if "instruction" in keys and "output" in keys:
        cols = list(INSTRUCTION_KEYS) + [k for k in keys if k not in INSTRUCTION_KEYS]
        kind = "instruction"
    else:
        cols, kind = keys, "table"
    rows = [(str(n), *(_cell(obj.get(k)) for k in cols)) for n, obj in records]
    ds = Dataset(path, kind, [first] + cols, rows)
    if kind == "instruction":
        ds.text_column = None
    else:
        _guess_columns(ds)
    return ds


def _cell(v) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
