"""Classification data: TSV, CSV and JSONL/JSON readers, label discovery, balancing and splits.

Each example remembers the line it came from, so every error names ``file:line``. Files are read by
:mod:`tinyllm.data.files` (UTF-8, JSON and JSONL as every reader reads them). Columns are given
by header name (case-insensitive) or 1-based number. A TSV/CSV header is told by content, not by
its names (:func:`has_header_row`), and so are its text and label columns when no names say
(:func:`guess_columns`); a headerless two-column file is read as ``label<TAB>text`` (the SMS Spam
Collection layout) unless its contents say ``text,label``. :func:`check_label_spread` refuses a
label column that holds nearly one value per row (the text read as labels).
"""
from __future__ import annotations

import csv
import io
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tinyllm.data.files import iter_lines, parse_records, read_text
from tinyllm.errors import DataError, Log, no_log

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
        raise DataError(f"{path}:{line}: missing column {s!r}: the first row is data, not a header "
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


# ---- which row is a header, which column the text and which the label -------------------------
SAMPLE_ROWS = 2000   # rows looked at to tell a header and the columns apart
TEXT_NAMES = ("text", "message", "sentence", "content", "review", "sms", "body", "document")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "status", "y")
COLUMN_NAMES = frozenset(TEXT_NAMES + LABEL_NAMES)  # usual names of a header's columns


def _column_values(rows: list[list[str]], j: int) -> list[str]:
    return [r[j].strip() for r in rows if len(r) > j]


def _repeats(values: list[str]) -> bool:
    """Whether a column's values repeat as labels do (at most half of them distinct)."""
    return len(values) >= 2 and len(set(values)) * 2 <= len(values)


def has_header_row(rows: list[list[str]], kind: str = "csv", sample: str = "") -> bool:
    """Whether the first of ``rows`` (fields of a TSV/CSV file) is a header, told by content.

    It is when none of its cells equals a later value of its column, and either some column's
    later values repeat (a label column whose values the header cell is not one of), or a cell is
    a usual column name (``text``, ``message``, ``label``, ``category``, ...), or, with enough rows
    to judge, :meth:`csv.Sniffer.has_header` says so (a header cell of another type or length
    than its column's values). A first row that names "text" and "label" is a header.
    """
    if not rows:
        return False
    first, later = rows[0], rows[1:SAMPLE_ROWS]
    names = {f.strip().lower() for f in first}
    if {"text", "label"} <= names:
        return True
    if not later:
        return False
    columns = [_column_values(later, j) for j in range(len(first))]
    if any(first[j].strip() in set(col) for j, col in enumerate(columns)):
        return False
    if any(len(set(col)) < len(col) for col in columns) or names & COLUMN_NAMES:
        return True
    if len(later) < 5 or not sample:
        return False
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return False


def guess_columns(rows: list[list[str]], width: int) -> tuple[int, int] | None:
    """(text, label) 0-based columns told apart by content, or None when they cannot be.

    The label column is the one column whose values repeat (at most half distinct); the text
    column is the one with the longest values among the others.
    """
    sample = rows[:SAMPLE_ROWS]
    columns = [_column_values(sample, j) for j in range(width)]
    labels = [j for j, col in enumerate(columns) if _repeats(col)]
    if len(labels) != 1:
        return None
    others = [j for j in range(width) if j != labels[0] and columns[j]]
    if not others:
        return None
    mean = {j: sum(map(len, columns[j])) / len(columns[j]) for j in others}
    text = max(others, key=lambda j: mean[j])
    if len(others) > 1 and sorted(mean.values())[-2] * 2 > mean[text]:
        return None  # two columns of similar length: which one is the text?
    return text, labels[0]


def _is_name(col) -> bool:
    return col is not None and not str(col).strip().isdigit()


def _choose_columns(path: Path, kind: str, rows: list[tuple[int, list[str]]], header: bool,
                    text_col, label_col, log: Log) -> tuple[int, int, bool]:
    """(text, label, headerless label<TAB>text pair) 0-based columns."""
    line1, first = rows[0]
    names = first if header else None
    width = len(first)
    data = [f for _, f in rows[1 if header else 0:]]
    given = [c for c in (text_col, label_col) if c is not None]
    if len(given) == 1 and width == 2:  # one column named: the other is the other one
        i = _column(given[0], names, path, line1)
        other = 1 - i if i in (0, 1) else None
        if other is not None:
            return (i, other, False) if text_col is not None else (other, i, False)
    if given:
        ti = _column("text" if text_col is None else text_col, names, path, line1)
        li = _column("label" if label_col is None else label_col, names, path, line1)
        return ti, li, False
    if header:
        lower = [f.strip().lower() for f in first]
        if "text" in lower and "label" in lower:
            return lower.index("text"), lower.index("label"), False
        guess = guess_columns(data, width)
        shown = ", ".join(f.strip() for f in first)
        if guess is None:
            raise DataError(f"{path}:{line1}: the header row ({shown}) names no 'text' and 'label' "
                            "columns and their contents do not tell them apart; give --text-col "
                            "and --label-col (header names or 1-based numbers)")
        ti, li = guess
        log(f"{path}: reading the text from column {first[ti].strip()!r} and the labels from "
            f"{first[li].strip()!r} (told by content; --text-col/--label-col to choose)")
        return ti, li, False
    pair = width == 2 or (kind == "tsv" and width > 2)  # TSV text may hold tabs
    if not pair:
        raise DataError(f"{path}:{line1}: no header row naming the 'text' and 'label' columns in "
                        f"a file of {width} columns; give --text-col and --label-col as numbers")
    guess = guess_columns(data, 2) if width == 2 else None
    if guess == (0, 1):  # headerless text,label: the contents say so
        log(f"{path}: no header row; reading the text from column 1 and the labels from column 2 "
            "(told by content; --text-col/--label-col to choose)")
        return 0, 1, False
    return 1, 0, kind == "tsv"  # headerless label<TAB>text (the SMS Spam Collection layout)


def read_table(path: Path, text: str, kind: str, text_col: str | int | None,
               label_col: str | int | None, log: Log | None = None) -> list[Example]:
    """Examples from a TSV or CSV file; see :func:`read_examples` for how columns are found."""
    log = log or no_log
    rows = list(_rows(kind, text))
    if not rows:
        raise DataError(f"{path}: empty file (no examples)")
    header = has_header_row([f for _, f in rows], kind, text[:16384])
    if not header and (_is_name(text_col) or _is_name(label_col)):
        names = {f.strip().lower() for f in rows[0][1]}
        header = any(_is_name(c) and str(c).strip().lower() in names for c in (text_col, label_col))
    ti, li, headerless_pair = _choose_columns(path, kind, rows, header, text_col, label_col, log)
    width = 2 if headerless_pair else len(rows[0][1])  # every row has the first row's columns
    out = []
    for line, fields in rows[1 if header else 0:]:
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
    if not out:
        raise DataError(f"{path}: a header row and no examples")
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
                  label_col: str | int | None = None, log: Log | None = None) -> list[Example]:
    """Every example in a TSV, CSV, JSONL or JSON file.

    JSON keys default to "text" and "label". In a TSV/CSV file the first row is a header when its
    content says so (:func:`has_header_row`); without columns given, a header naming "text" and
    "label" decides, else the contents (:func:`guess_columns`: the label column's values repeat,
    the text is the longest), else a headerless two-column file is ``label<TAB>text``. A header
    whose columns cannot be told apart is refused, naming it. What was chosen by content is said
    through ``log``.
    """
    path = Path(path)
    text = read_text(path)
    kind = detect_format(path, text[:4096])
    if kind in ("tsv", "csv"):
        return read_table(path, text, kind, text_col, label_col, log)
    return read_records(path, text, kind, "text" if text_col is None else str(text_col),
                        "label" if label_col is None else str(label_col))


# ---- labels, balancing, splits ------------------------------------------------------------------
def discover_labels(examples: list[Example]) -> list[str]:
    """The label set, sorted (the index of a label is its class id)."""
    return sorted({e.label for e in examples})


def check_label_spread(examples: list[Example], path: str | Path) -> None:
    """Refuse labels that are nearly one per row (more distinct labels than half the rows, from 10
    rows on): the text column read as the labels, not a classification."""
    n, distinct = len(examples), len({e.label for e in examples})
    if n >= 10 and distinct * 2 > n:
        raise DataError(f"{path}: {distinct} distinct labels in {n} rows: is --label-col the text? "
                        "(give --text-col/--label-col, or --allow-many-labels if it is right)")


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

