"""Classification data: TSV, CSV and JSONL/JSON readers, label discovery, balancing and splits.

Each example remembers the line it came from, so every error names ``file:line``. Files are read by
:mod:`tinyllm.data.files` (UTF-8, JSON and JSONL as every reader reads them). Columns are given
by header name (case-insensitive) or 1-based number. A two-column TSV/CSV without a header naming the
columns is read as ``label<TAB>text`` (the SMS Spam Collection layout).
"""
from __future__ import annotations

import csv
import io
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tinyllm.data.files import iter_lines, parse_records, read_text
from tinyllm.errors import DataError

FORMATS = ("tsv", "csv", "jsonl", "json")
_SUFFIXES = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "json"}


@dataclass
class Example:
    text: str     # the input text
    label: str    # its label, as written in the file
    line: int     # 1-based line in the file (JSON: 1-based index in the top-level list)


def detect_format(path: Path, head: str) -> str:
    """The file kind from its suffix, else from its first non-blank character."""
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind:
        return kind
    first = head.lstrip()[:1]
    if first == "{":
        return "jsonl"
    if first == "[":
        return "json"
    return "tsv" if "\t" in head.split("\n", 1)[0] else "csv"


def _column(spec: str | int, header: list[str] | None, path: Path, line: int) -> int:
    """0-based index of a column given by 1-based number or header name."""
    s = str(spec).strip()
    if s.isdigit():
        if int(s) < 1:
            raise DataError(f"{path}: column numbers start at 1 (got {s})")
        return int(s) - 1
    if header is None:
        raise DataError(f"{path}:{line}: missing column {s!r}: the file has no header row "
                        "(give the column as a number, e.g. --text-col 2)")
    names = [h.strip().lower() for h in header]
    if s.lower() not in names:
        raise DataError(f"{path}:{line}: missing column {s!r} (header columns: {', '.join(header)})")
    return names.index(s.lower())


def _rows(kind: str, text: str):
    """(line, fields) for every non-blank row of a TSV or CSV text."""
    if kind == "tsv":
        for i, row in iter_lines(text):
            yield i, row.split("\t")
        return
    reader = csv.reader(io.StringIO(text))
    start = 1
    for fields in reader:
        if any(f.strip() for f in fields):
            yield start, fields
        start = reader.line_num + 1


def read_table(path: Path, text: str, kind: str, text_col: str | int, label_col: str | int,
               defaults: bool) -> list[Example]:
    rows = iter(_rows(kind, text))
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: empty file (no examples)")
    line1, fields1 = first
    names = [f.strip().lower() for f in fields1]
    numeric = str(text_col).strip().isdigit() and str(label_col).strip().isdigit()
    has_header = not numeric and str(text_col).lower() in names and str(label_col).lower() in names
    pair = len(fields1) == 2 or (kind == "tsv" and len(fields1) > 2)  # TSV text may hold tabs
    if not numeric and not has_header and defaults and pair:
        text_col, label_col = 2, 1            # headerless label<TAB>text
    header = fields1 if has_header else None
    ti = _column(text_col, header, path, line1)
    li = _column(label_col, header, path, line1)
    headerless_pair = header is None and (ti, li) == (1, 0) and kind == "tsv"
    width = 2 if headerless_pair else len(fields1)  # every row has the first row's columns
    out = []
    for line, fields in ([] if has_header else [first]) + list(rows):
        if headerless_pair and len(fields) > 2:  # tabs inside the text stay in the text
            fields = [fields[0], "\t".join(fields[1:])]
        if len(fields) > width:  # refused like a missing column: a field was split, or shifted
            hint = "a tab inside a field?" if kind == "tsv" else "an unquoted comma inside a field? " \
                "Quote the field"
            raise DataError(f"{path}:{line}: {len(fields)} fields, but the "
                            f"{'header' if header else 'first row'} has {width} ({hint})")
        need = max(ti, li) + 1
        if len(fields) < need:
            missing = "text" if len(fields) <= ti else "label"
            raise DataError(f"{path}:{line}: missing column ({missing} column {need} of a row "
                            f"with {len(fields)} field{'s' if len(fields) != 1 else ''})")
        out.append(_example(path, line, fields[ti], fields[li]))
    return out


def _example(path: Path, line: int | str, text, label) -> Example:
    if label is None or (isinstance(label, str) and not label.strip()):
        raise DataError(f"{path}:{line}: empty label")
    if isinstance(label, (dict, list)):
        raise DataError(f"{path}:{line}: a label must be a string or number, not {type(label).__name__}")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise DataError(f"{path}:{line}: the text must be a string, not {type(text).__name__}")
    return Example(text=text, label=str(label).strip(), line=int(str(line).strip("[]")))


def read_records(path: Path, text: str, kind: str, text_col: str, label_col: str) -> list[Example]:
    """JSONL (one object per line) or JSON (one array of objects; a record is named ``[n]``)."""
    for col in (text_col, label_col):
        if str(col).strip().isdigit():
            raise DataError(f"{path}: {kind.upper()} columns are keys, not numbers (got {col})")
    form, records = parse_records(path, text)
    out = []
    for n, rec in records:
        where = f"[{n}]" if form == "json" else n
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{where}: expected an object, got {type(rec).__name__}")
        for col in (text_col, label_col):
            if col not in rec:
                raise DataError(f"{path}:{where}: missing column {col!r} (keys: {', '.join(rec) or 'none'})")
        out.append(_example(path, where, rec[text_col], rec[label_col]))
    if not out:
        raise DataError(f"{path}: empty file (no examples)")
    return out


def read_examples(path: str | Path, text_col: str | int | None = None,
                  label_col: str | int | None = None) -> list[Example]:
    """Every example in a TSV, CSV, JSONL or JSON file (columns default to "text" and "label")."""
    path = Path(path)
    text = read_text(path)
    kind = detect_format(path, text[:4096])
    defaults = text_col is None and label_col is None
    text_col = "text" if text_col is None else text_col
    label_col = "label" if label_col is None else label_col
    if kind in ("tsv", "csv"):
        return read_table(path, text, kind, text_col, label_col, defaults)
    return read_records(path, text, kind, str(text_col), str(label_col))


# ---- labels, balancing, splits ------------------------------------------------------------------
def discover_labels(examples: list[Example]) -> list[str]:
    """The label set, sorted (the index of a label is its class id)."""
    return sorted({e.label for e in examples})


def check_labels(examples: list[Example], labels: list[str], path: str | Path) -> None:
    """Every label must be one the model knows; the first stranger is named with its line."""
    known = set(labels)
    for e in examples:
        if e.label not in known:
            raise DataError(f"{path}:{e.line}: unknown label {e.label!r}; the model knows: "
                            f"{', '.join(labels)}")


def by_label(examples: list[Example]) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = {}
    for e in examples:
        groups.setdefault(e.label, []).append(e)
    return {k: groups[k] for k in sorted(groups)}


def undersample(examples: list[Example], seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Keep a seeded random sample of every class as large as the smallest: (kept, left out)."""
    groups = by_label(examples)
    n = min(len(g) for g in groups.values())
    rng = random.Random(seed)
    kept, rest = [], []
    for g in groups.values():
        idx = set(rng.sample(range(len(g)), n))
        kept += [e for i, e in enumerate(g) if i in idx]
        rest += [e for i, e in enumerate(g) if i not in idx]
    return kept, rest


def stratified_split(examples: list[Example], fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                     seed: int = 0) -> tuple[list[Example], list[Example], list[Example]]:
    """Seeded train/val/test split keeping every label's share in each part."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    rng = random.Random(seed)
    parts: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    for g in by_label(examples).values():
        g = g[:]
        rng.shuffle(g)
        n_train = round(len(g) * fractions[0])
        n_val = round(len(g) * fractions[1])
        parts[0].extend(g[:n_train])
        parts[1].extend(g[n_train:n_train + n_val])
        parts[2].extend(g[n_train + n_val:])
    for p in parts:
        rng.shuffle(p)
    return parts


def label_counts(examples: list[Example]) -> dict[str, int]:
    return dict(sorted(Counter(e.label for e in examples).items()))

