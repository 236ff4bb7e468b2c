"""Text corpora for language modelling: checked reading, token files, sliding windows.

A corpus is read in chunks of about a megabyte, split only where the tokenizers cannot join text across
the cut (after a newline with non-space characters on both sides), and checked as strict UTF-8: a bad byte is
reported with its file, line and byte offset (opening and errors are :mod:`tinyllm.data.files`'s). ``prepare_tokens`` tokenises a corpus once into a raw
token file (uint16 when the vocabulary has fewer than 65,536 ids, else uint32) that is read back through
``np.memmap``/``pread`` without loading it, so a corpus larger than RAM trains with flat memory. An
interrupted tokenisation resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from tinyllm.atomic import atomic_write_text, reporting_full_disk
from tinyllm.data.files import open_regular, utf8_error
from tinyllm.errors import DataError, DiskFull, Log, no_log
from tinyllm.tokenizer import CharTokenizer, Tokenizer

CHUNK_BYTES = 1 << 20          # read size; chunks grow up to MAX_CHUNK_BYTES to find a safe cut
MAX_CHUNK_BYTES = 16 << 20
FLUSH_BYTES = 16 << 20         # tokenisation progress is made durable about this often




# ---- reading ----------------------------------------------------------------------------------
_WS = frozenset(b" \t\n\r\x0b\x0c")


def _safe_cut(buf: bytes) -> int:
    """Position after the last lone newline (non-whitespace on both sides), 0 if none.

    GPT-2-style pre-tokenizers never join text across such a newline, and a piece that ends in one
    newline encodes it like the whole text does (a run of whitespace at the end would not).
    """
    end = len(buf)
    while True:
        i = buf.rfind(b"\n", 0, end)
        if i < 1:
            return 0
        if i + 1 < len(buf) and buf[i + 1] not in _WS and buf[i - 1] not in _WS:
            return i + 1
        end = i


def _utf8_boundary(buf: bytes) -> int:
    """Largest cut <= len(buf) that does not split a UTF-8 sequence."""
    i = len(buf)
    while i > 0 and len(buf) - i < 4 and (buf[i - 1] & 0xC0) == 0x80:
        i -= 1
    if i > 0 and buf[i - 1] >= 0xC0:  # a lead byte whose continuation was cut off
        i -= 1
    return i if i > 0 else len(buf)


def iter_text_chunks(path: str | Path, start: int = 0, chunk_bytes: int = CHUNK_BYTES
                     ) -> Iterator[tuple[int, str]]:
    """Yield ``(end_byte_offset, text)`` pieces of a UTF-8 file from byte ``start``.

    Raises DataError naming the line and byte offset of the first invalid UTF-8 byte.
    """
    path = Path(path)
    line = 1
    with open_regular(path, "text file") as f:
        f.seek(start)
        offset, pending = start, b""
        while True:
            data = f.read(chunk_bytes)
            buf = pending + data
            if not buf:
                return
            if data:
                cut = _safe_cut(buf)
                if cut == 0:
                    if len(buf) < MAX_CHUNK_BYTES:  # no safe cut yet: read more before deciding
                        pending = buf
                        continue
                    cut = _utf8_boundary(buf)
            else:
                cut = len(buf)  # end of file
            piece, pending = buf[:cut], buf[cut:]
            try:
                text = piece.decode("utf-8")
            except UnicodeDecodeError as e:
                raise utf8_error(path, piece, e, line, offset) from None
            line += piece.count(b"\n")
            offset += len(piece)
            yield offset, text
            if not data and not pending:
                return


# ---- token files --------------------------------------------------------------------------------
def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < 65536 else np.dtype(np.uint32)


def tokenizer_fingerprint(tok: Tokenizer) -> str:
    """A hash of the tokenizer's spec and saved files: a token file is only reused with the same one."""
    h = hashlib.sha256(json.dumps(tok.spec(), sort_keys=True).encode())
    for name, data in tok.saved_files().items():
        h.update(name.encode())
        h.update(data)
    return h.hexdigest()[:16]


def encode_array(tok: Tokenizer, text: str) -> np.ndarray:
    """Token ids of ``text`` as an int64 array (vectorised for the char tokenizer)."""
    if isinstance(tok, CharTokenizer):
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        lut = getattr(tok, "_lut", None)
        if lut is None:
            size = max(ord(c) for c in tok.chars) + 1
            lut = np.full(size, tok.unk_id, dtype=np.int64)
            lut[[ord(c) for c in tok.chars]] = np.arange(len(tok.chars))
            tok._lut = lut
        out = np.full(cps.shape, tok.unk_id, dtype=np.int64)
        ok = cps < len(lut)
        out[ok] = lut[cps[ok]]
        return out
    return np.asarray(tok.encode_plain(text), dtype=np.int64)


@dataclass
class TokenSpan:
    """A contiguous range ``[offset, offset + n)`` of a token file, read without loading the file."""
    path: Path
    dtype: np.dtype
    offset: int
    n: int

    def __len__(self) -> int:
        return self.n

    def read(self, start: int, count: int) -> np.ndarray:
        """Tokens ``[start, start + count)`` of this span as int64."""
        if start < 0 or start + count > self.n:
            raise IndexError(f"tokens {start}..{start + count} outside a span of {self.n}")
        size = self.dtype.itemsize
        fd = _fd(self.path)
        raw = os.pread(fd, count * size, (self.offset + start) * size)
        return np.frombuffer(raw, dtype=self.dtype).astype(np.int64)

    def array(self) -> np.memmap:
        """The span as a read-only ``np.memmap``."""
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset * self.dtype.itemsize,
                         shape=(self.n,))


_FDS: dict[tuple[int, str], int] = {}


def _fd(path: Path) -> int:
    key = (os.getpid(), str(path))
    if key not in _FDS:
        _FDS[key] = os.open(path, os.O_RDONLY)
    return _FDS[key]


@dataclass
class TokenFile(TokenSpan):
    """A whole token file (``.tok``) with its sidecar metadata (``.json``)."""
    meta: dict | None = None


def default_cache_dir() -> Path:
    from tinyllm.modeldir import tinyllm_home

    return tinyllm_home() / "cache" / "tokens"


def no_progress(total: int, description: str, start: int = 0, unit: str = "bytes"):
    """The default ``progress=`` of long work: a context manager yielding ``advance(n)`` that shows
    nothing (the CLI passes one that draws a bar). ``unit`` says what ``total`` counts: "bytes"
    (reading files), or a plural noun such as "entries"."""
    return contextlib.nullcontext(lambda n: None)


def prepare_tokens(path: str | Path, tok: Tokenizer, cache_dir: str | Path | None = None,
                   progress: Callable | None = None, log: Log | None = None) -> TokenFile:
    """Tokenise ``path`` once into a cached token file and return it (reused while the file and
    tokenizer are unchanged; an interrupted run continues from its last flushed chunk).

    ``progress(total_bytes, description, start=done_bytes)`` is a context manager that yields an
    ``advance(n_bytes)`` callback (:func:`no_progress` by default). Characters the tokenizer does
    not know (a char model on a new text) are said once through ``log``.
    """
    log = log or no_log
    path = Path(path)
    open_regular(path, "text file").close()  # refused as every reader refuses it
    st = path.stat()
    if st.st_size == 0:
        raise DataError(f"{path}: the corpus is empty")
    fp = tokenizer_fingerprint(tok)
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{fp}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"{path.stem}-{key}.tok"
    meta_path = final.with_suffix(".json")
    partial = final.with_name(final.name + ".partial")
    dtype = token_dtype(tok.vocab_size)

    meta = _read_meta(meta_path)
    if meta and meta.get("complete") and final.is_file() \
            and final.stat().st_size == meta["n"] * dtype.itemsize:
        _say_unknown(tok, meta.get("unknown"), path, log)
        return TokenFile(final, dtype, 0, meta["n"], meta)

    done_bytes, n, nonspace = 0, 0, False
    if meta and not meta.get("complete") and partial.is_file() \
            and partial.stat().st_size >= meta["n"] * dtype.itemsize:
        # resume an interrupted tokenisation from its last flushed chunk
        done_bytes, n, nonspace = meta["bytes_done"], meta["n"], meta.get("nonspace", False)
    unknown: dict[str, int] = dict((meta or {}).get("unknown") or {}) if done_bytes else {}
    meta = {"source": str(path.resolve()), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns,
            "tokenizer": tok.spec(), "tokenizer_fingerprint": fp, "dtype": dtype.name,
            "n": n, "bytes_done": done_bytes, "complete": False, "nonspace": nonspace,
            "unknown": unknown}

    progress = progress or no_progress
    mode = "r+b" if done_bytes else "wb"
    try:
        with reporting_full_disk(partial), open(partial, mode) as out, \
                progress(st.st_size, f"tokenising {path.name}", start=done_bytes) as advance:
            out.truncate(n * dtype.itemsize)
            out.seek(n * dtype.itemsize)
            unflushed = 0
            for end, text in iter_text_chunks(path, start=done_bytes):
                ids = encode_array(tok, text)
                for c, k in tok.unknown(text).items():
                    unknown[c] = unknown.get(c, 0) + k
                out.write(ids.astype(dtype).tobytes())
                n += len(ids)
                meta["nonspace"] = meta["nonspace"] or bool(text.strip())
                unflushed += end - done_bytes
                advance(end - done_bytes)
                done_bytes = end
                if unflushed >= FLUSH_BYTES:
                    out.flush()
                    os.fsync(out.fileno())
                    meta.update(n=n, bytes_done=done_bytes)
                    atomic_write_text(meta_path, json.dumps(meta))
                    unflushed = 0
            out.flush()
            os.fsync(out.fileno())
    except DiskFull as e:  # the half-written cache goes: the space is the user's, not the cache's
        partial.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise DiskFull(f"{e} (the token cache of {path.name}); free some space, or set "
                       f"train.cache_dir to a disk with room", e.path) from None
    if n == 0 or not meta["nonspace"]:
        partial.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise DataError(f"{path}: the corpus is empty (no text besides whitespace)")
    os.replace(partial, final)
    meta.update(n=n, bytes_done=done_bytes, complete=True)
    atomic_write_text(meta_path, json.dumps(meta))
    _say_unknown(tok, unknown, path, log)
    return TokenFile(final, dtype, 0, n, meta)


def _say_unknown(tok: Tokenizer, unknown: dict[str, int] | None, path: Path, log: Log) -> None:
    if unknown:
        from tinyllm.tokenizer import unknown_warning

        log(unknown_warning(tok, unknown, str(path)))


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def split_tokens(tokens: TokenSpan, val_fraction: float) -> tuple[TokenSpan, TokenSpan]:
    """Split by position: the first ``1 - val_fraction`` of the tokens train, the rest validate."""
    n_val = int(round(tokens.n * val_fraction))
    n_train = tokens.n - n_val
    return (TokenSpan(tokens.path, tokens.dtype, tokens.offset, n_train),
            TokenSpan(tokens.path, tokens.dtype, tokens.offset + n_train, n_val))


# ---- windows ------------------------------------------------------------------------------------
def eval_plans(splits: dict[str, "SlidingWindowDataset"], n: int) -> dict[str, np.ndarray]:
    """The windows each split is scored on at every evaluation: up to ``n`` of them, evenly spread
    (:meth:`SlidingWindowDataset.eval_indices`), the same every time."""
    return {name: ds.eval_indices(min(len(ds), n)) for name, ds in splits.items()}


class SlidingWindowDataset:
    """Windows of ``max_length`` inputs and the next-token targets, starting every ``stride`` tokens.

    ``ds[i]`` -> ``(x, y)`` int64 arrays of shape (max_length,), y = x shifted by one token.
    ``ds.batch(indices)`` -> ``(x, y)`` LongTensors of shape (B, max_length).
    """

    def __init__(self, tokens: TokenSpan, max_length: int, stride: int | None = None,
                 name: str = "corpus"):
        self.tokens, self.max_length = tokens, max_length
        self.stride = stride or max_length
        if len(tokens) < max_length + 1:
            raise DataError(f"{name}: {len(tokens)} tokens, fewer than one window needs "
                            f"({max_length} + 1); use more text or a shorter seq_len "
                            f"(--set seq_len=N)")
        self.n = (len(tokens) - max_length - 1) // self.stride + 1

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        w = self.tokens.read(i * self.stride, self.max_length + 1)
        return w[:-1], w[1:]

    def batch(self, indices) -> tuple["torch.Tensor", "torch.Tensor"]:  # noqa: F821
        import torch

        w = np.stack([self.tokens.read(int(i) * self.stride, self.max_length + 1) for i in indices])
        w = torch.from_numpy(w)  # (B, max_length + 1)
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    def eval_indices(self, count: int) -> np.ndarray:
        """``count`` window indices spread evenly over the dataset (the same at every eval)."""
        return np.linspace(0, self.n - 1, count).round().astype(np.int64)
