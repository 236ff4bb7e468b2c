"""Reading users' files: the one UTF-8 text reader and the one JSON/JSONL record reader.

Every reader of a user's data file (classification and instruction data, the TUI's browser, task
plugins, the chunked corpus reader of :mod:`tinyllm.data.text`) opens it here, so they all refuse
the same things with the same :class:`DataError`, naming the file and, where there is one, the line:

* a missing file, a directory, or anything that is not a regular file (``/dev/zero``, a pipe);
* bytes that are not UTF-8: ``data.tsv:12: not UTF-8 text (byte 0xe9 at byte offset 345: ...)``;
* a file read whole that is larger than ``MAX_BYTES`` (a corpus is read in chunks instead);
* JSON that does not parse: ``data.jsonl:3: invalid JSON (...)``.

Lines end at ``\\n`` only (a trailing ``\\r`` is dropped), so a line number here is the line number
an editor shows and the one a UTF-8 error names. A JSON or JSONL file is told apart by its content,
not its name: one JSON array of records (``[{...}, ...]``), or one JSON record per line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Iterator

from tinyllm.atomic import open_regular  # noqa: F401  (every reader opens files through it)
from tinyllm.errors import DataError
from tinyllm.units import human_bytes

MAX_BYTES = 512 << 20   # the largest file read whole into memory
MAX_STDIN_BYTES = 1 << 20  # the most text a prompt read from stdin may be (`generate -`, `tokenize -`)
JSONL_HINT = "JSONL has one JSON object per line; a JSON file is one array [...]"


def read_stdin(stream: IO[bytes], what: str = "stdin", limit: int = MAX_STDIN_BYTES) -> str:
    """All of ``stream`` (stdin as bytes) as UTF-8 text, refused past ``limit`` bytes (1 MiB): an
    endless stream (``yes | tinyllm generate -``) is an error, not a process that grows forever."""
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise DataError(f"{what}: more than {human_bytes(limit)} of text; a prompt read from stdin "
                        f"may be at most {human_bytes(limit)}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise utf8_error(what, raw, e) from None
    return text[1:] if text.startswith("\ufeff") else text


def utf8_error(path: str | Path, data: bytes, error: UnicodeDecodeError, line: int = 1,
               offset: int = 0) -> DataError:
    """The error for the first bad byte of ``data``, a piece of ``path`` that starts on ``line``
    at byte ``offset``."""
    bad_line = line + data.count(b"\n", 0, error.start)
    return DataError(f"{path}:{bad_line}: not UTF-8 text (byte 0x{data[error.start]:02x} at byte "
                     f"offset {offset + error.start}: {error.reason})")


def read_text(path: str | Path, what: str = "data file", limit: int = MAX_BYTES) -> str:
    """A whole file as a string: UTF-8 (a byte-order mark dropped), at most ``limit`` bytes."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        raw = f.read(limit + 1) if size <= limit else b""
    if size > limit or len(raw) > limit:
        raise DataError(f"{path}: {human_bytes(max(size, len(raw)))}, larger than the "
                        f"{human_bytes(limit)} a {what} may be; use a smaller file or a sample")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise utf8_error(path, raw, e) from None
    return text[1:] if text.startswith("\ufeff") else text


def iter_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number from 1, line)`` for every line of ``text`` that is not blank (``\\r`` dropped)."""
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if line.strip():
            yield n, line


def parse_jsonl(path: str | Path, text: str) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line of JSONL ``text`` read from ``path``."""
    first = True
    for n, line in iter_lines(text):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            hint = f"; {JSONL_HINT}" if first else ""
            raise DataError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno}{hint})") from None
        first = False
        yield n, value


def read_jsonl(path: str | Path, what: str = "JSONL file") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for every record of a JSONL file (read and checked at the call)."""
    return parse_jsonl(path, read_text(path, what))


def parse_records(path: str | Path, text: str) -> tuple[str, Iterator[tuple[int, Any]]]:
    """The records of a JSON or JSONL ``text`` read from ``path``: ``("json", (index from 1,
    value) ...)`` when it is one JSON array, else ``("jsonl", (line number, value) ...)``.

    The first non-blank character decides: ``[`` starts an array; anything else is JSONL, so a
    JSON object is one record when it fits on a line and an error (naming line 1) when it spans
    several. The CLI's readers and the TUI's browser give every file this one answer.
    """
    if not text.lstrip().startswith("["):
        return "jsonl", parse_jsonl(path, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    return "json", enumerate(data, 1)
