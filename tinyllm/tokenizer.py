"""Tokenizers behind one interface: ``gpt2`` (tiktoken, offline), ``char`` and ``bpe`` (trained),
``hf`` (an imported Hugging Face ``tokenizer.json``: Llama, SmolLM2, Qwen2, Mistral, GGUF files)
and ``wordpiece`` (BERT's, imported from ``vocab.txt``/``tokenizer.json`` or trained).

Imports no torch: the ONNX runtime path uses this module too.

Every tokenizer has ``encode(text) -> list[int]`` (no special tokens added; special tokens written
in the text, such as ``<|im_start|>``, are recognised), ``decode(ids) -> str``,
``token_bytes(id) -> bytes`` (for streaming without broken UTF-8), ``vocab_size``, ``eot_id``
(end-of-text id or None), ``eos_ids`` (every id that ends a reply), ``bos_id`` with ``add_bos``
(whether a prompt starts with it) and ``spec()``, the mapping stored under ``tokenizer:`` in a
model directory's ``config.yaml``. ``save(dir)`` writes whatever files the spec names.
``pad_id`` is the padding id (or None); ``encode`` gives what a model reads (for WordPiece:
``[CLS] text [SEP]``); ``encode_plain`` the text's tokens alone, for corpora; ``truncate(ids, n)``
shortens a model input keeping its closing special token.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tinyllm.errors import UserError

BUNDLED = Path(__file__).parent / "bundled"
GPT2_DIR = BUNDLED / "gpt2"
EOT = "<|endoftext|>"


class TokenizerError(UserError):
    """A tokenizer spec, file or input is wrong."""


class Tokenizer:
    name: str = ""
    vocab_size: int = 0
    eot_id: int | None = None
    bos_id: int | None = None      # beginning-of-sequence token, if the tokenizer has one
    add_bos: bool = False          # prompts start with bos_id (Llama 2/3 base models)
    pad_id: int | None = None      # the padding id (encoders), if the tokenizer has one

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Every token id that ends generation (end of text, end of turn)."""
        return () if self.eot_id is None else (self.eot_id,)

    def prompt_ids(self, text: str) -> list[int]:
        """The ids a prompt starts generation from: ``bos_id`` first when ``add_bos``."""
        ids = self.encode(text)
        if self.add_bos and self.bos_id is not None and ids[:1] != [self.bos_id]:
            ids = [self.bos_id] + ids
        return ids

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_plain(self, text: str) -> list[int]:
        """The tokens of ``text`` without the special tokens a model input adds (corpora)."""
        return self.encode(text)

    def truncate(self, ids: list[int], max_len: int) -> list[int]:
        """A model input of at most ``max_len`` tokens (its start is kept)."""
        return ids[:max_len]

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        raise NotImplementedError

    @property
    def max_token_chars(self) -> int:
        """The most characters one token stands for (the longest token's bytes): a text cut to
        ``n * max_token_chars`` characters still gives its first ``n`` tokens (classify and
        embed cut long lines before tokenising them)."""
        cached = getattr(self, "_max_token_chars", None)
        if cached is None:
            longest = 1
            for i in range(self.vocab_size):
                try:
                    longest = max(longest, len(self.token_bytes(i)))
                except Exception:  # an id without bytes (a gap in the vocabulary)
                    continue
            cached = self._max_token_chars = longest
        return cached

    def token_str(self, token_id: int) -> str:
        """A printable form of one token (for previews)."""
        return self.token_bytes(token_id).decode("utf-8", errors="replace")

    def spec(self) -> dict:
        return {"type": self.name}

    def unknown(self, text: str) -> dict[str, int]:
        """Characters of ``text`` this tokenizer cannot represent (read as a stand-in), with their
        counts; byte-level tokenizers represent everything."""
        return {}

    def save(self, directory: str | Path) -> None:
        """Write the files the spec refers to (none for gpt2)."""

    def saved_files(self) -> dict[str, bytes]:
        """What :meth:`save` writes, by file name in name order (to hash or send a tokenizer)."""
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            self.save(d)
            return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


def unknown_warning(tokenizer: Tokenizer, unknown: dict[str, int], what: str = "the prompt"
                    ) -> str | None:
    """One warning line for the characters ``tokenizer`` does not know, with their counts (as
    :meth:`Tokenizer.unknown` gives them; None when there are none): which, how many, and what
    they were read as."""
    if not unknown:
        return None
    n = sum(unknown.values())
    shown = ", ".join(f"{c!r} x{k}" if k > 1 else repr(c)
                      for c, k in sorted(unknown.items(), key=lambda x: -x[1])[:10])
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    stand_in = getattr(tokenizer, "unk", None)
    return (f"warning: the {tokenizer.name} tokenizer does not know {n:,} character"
            f"{'s' if n != 1 else ''} of {what} and reads {'them' if n != 1 else 'it'} as "
            f"{stand_in!r}: {shown}{more}")


# ---- gpt2 -------------------------------------------------------------------------------------
_GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters (used in encoder.json)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class GPT2Tokenizer(Tokenizer):
    """OpenAI's GPT-2 byte-level BPE through tiktoken, built from the vocabulary files in the package."""

    name = "gpt2"

    def __init__(self, directory: Path = GPT2_DIR):
        import tiktoken

        encoder_path = Path(directory) / "encoder.json"
        try:
            encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TokenizerError(f"{encoder_path}: GPT-2 vocabulary file missing") from None
        byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        ranks = {bytes(byte_decoder[c] for c in tok): i for tok, i in encoder.items() if tok != EOT}
        self.eot_id = encoder[EOT]
        self.vocab_size = len(encoder)
        self._enc = tiktoken.Encoding("gpt2", pat_str=_GPT2_PAT, mergeable_ranks=ranks,
                                      special_tokens={EOT: self.eot_id},
                                      explicit_n_vocab=self.vocab_size)

    def encode(self, text: str) -> list[int]:
        return self._enc.encode(text, allowed_special={EOT})

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._enc.encode_batch(texts, allowed_special={EOT})

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        return self._enc.decode_single_token_bytes(token_id)


# ---- char -------------------------------------------------------------------------------------
class CharTokenizer(Tokenizer):
    """One id per character of the training corpus. Characters it never saw map to ``unk``."""

    name = "char"
    max_token_chars = 1

    def __init__(self, chars: list[str], unk: str | None = None, where: str = "char tokenizer"):
        if not isinstance(chars, list) or not chars:
            raise TokenizerError(f"{where}: 'chars' must be a non-empty list of characters")
        bad = next((c for c in chars if not isinstance(c, str) or len(c) != 1), None)
        if bad is not None or any(isinstance(c, bool) for c in chars):
            raise TokenizerError(f"{where}: 'chars' must hold single characters, not {bad!r}")
        if len(set(chars)) != len(chars):
            dup = next(c for i, c in enumerate(chars) if c in chars[:i])
            raise TokenizerError(f"{where}: character {dup!r} appears twice in 'chars'")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)
        if unk is None:
            unk = " " if " " in self.stoi else self.chars[0]
        if unk not in self.stoi:
            raise TokenizerError(f"{where}: 'unk' {unk!r} is not one of its characters")
        self.unk = unk
        self.unk_id = self.stoi[unk]

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(c, unk) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def unknown(self, text: str) -> dict[str, int]:
        from collections import Counter

        return dict(Counter(c for c in text if c not in self.stoi))

    def token_bytes(self, token_id: int) -> bytes:
        return self.chars[token_id].encode("utf-8")

    def spec(self) -> dict:
        return {"type": "char", "file": "tokenizer.json"}

    def save(self, directory: str | Path) -> None:
        from tinyllm.atomic import atomic_write_text

        atomic_write_text(Path(directory) / "tokenizer.json",
                          json.dumps({"type": "char", "chars": self.chars, "unk": self.unk},
                                     ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> "CharTokenizer":
        data = _read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("chars"), list) or not data["chars"]:
            raise TokenizerError(f"{path}: not a char tokenizer file (expected an object with a "
                                 f"'chars' list)")
        return cls(data["chars"], data.get("unk"), str(path))


# ---- bpe (trained with Hugging Face tokenizers) ------------------------------------------------
class BPETokenizer(Tokenizer):
    """Byte-level BPE trained on the user's corpus; round-trips any Unicode text exactly."""

    name = "bpe"

    def __init__(self, tok):
        self._tok = tok
        self.vocab_size = tok.get_vocab_size()
        self.eot_id = tok.token_to_id(EOT)
        byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        vocab = tok.get_vocab()
        self._bytes = [b""] * self.vocab_size
        for s, i in vocab.items():
            if s == EOT:
                self._bytes[i] = EOT.encode()
            else:
                self._bytes[i] = bytes(byte_decoder[c] for c in s)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096) -> "BPETokenizer":
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts)]

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def spec(self) -> dict:
        return {"type": "bpe", "file": "tokenizer.json"}

    def save(self, directory: str | Path) -> None:
        from tinyllm.atomic import atomic_write_text

        atomic_write_text(Path(directory) / "tokenizer.json", self._tok.to_str())

    @classmethod
    def load(cls, path: Path) -> "BPETokenizer":
        from tokenizers import Tokenizer as HFTokenizer

        _check_file(path)
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except FileNotFoundError:
            raise TokenizerError(f"{path}: tokenizer file missing") from None
        except TokenizerError:
            raise
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise TokenizerError(f"{path}: not a BPE tokenizer file "
                                 f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                                 ) from None


# ---- hf (imported tokenizer.json) --------------------------------------------------------------
def _decoder_kinds(node: dict | None) -> set[str]:
    """The decoder types of a tokenizer.json (a Sequence lists several)."""
    if not node:
        return set()
    if node.get("type") == "Sequence":
        return {k for d in node.get("decoders", []) for k in _decoder_kinds(d)}
    return {node.get("type")}


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizer.json`` (byte-level BPE or SentencePiece-style) imported with a
    model, with its special tokens: ``eos_ids`` lists every id that ends a reply (end of text,
    end of turn), ``bos_token``/``eos_token`` are the strings chat templates write."""

    name = "hf"

    def __init__(self, tok, bos_token: str | None = None, eos_token: str | None = None,
                 eos_ids: Iterable[int] = (), add_bos: bool = False, pad_token: str | None = None):
        self._tok = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        self.bos_id = tok.token_to_id(bos_token) if bos_token else None
        self.eot_id = tok.token_to_id(eos_token) if eos_token else None
        ids = [self.eot_id] if self.eot_id is not None else []
        self._eos_ids = tuple(dict.fromkeys(ids + [int(i) for i in eos_ids]))
        self.add_bos = bool(add_bos) and self.bos_id is not None
        self._bytes = self._byte_table()

    def _byte_table(self) -> list[bytes]:
        data = json.loads(self._tok.to_str())
        special = {t["id"]: t["content"] for t in data.get("added_tokens", [])}
        byte_level = "ByteLevel" in _decoder_kinds(data.get("decoder"))
        byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        table = [b""] * self.vocab_size
        for piece, i in self._tok.get_vocab(with_added_tokens=True).items():
            if i >= self.vocab_size:
                continue
            if i in special:
                table[i] = special[i].encode("utf-8")
            elif byte_level and all(c in byte_decoder for c in piece):
                table[i] = bytes(byte_decoder[c] for c in piece)
            elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                table[i] = bytes([int(piece[3:5], 16)])  # SentencePiece byte fallback
            else:
                table[i] = piece.replace("\u2581", " ").encode("utf-8")
        return table

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return self._eos_ids

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def with_eos_ids(self, extra: Iterable[int]) -> "HFTokenizer":
        """The same tokenizer with more ids that end a reply (a chat template's end of turn)."""
        return HFTokenizer(self._tok, self.bos_token, self.eos_token,
                           list(self._eos_ids) + list(extra), self.add_bos, self.pad_token)

    def token_id(self, token: str) -> int | None:
        """The id of a token written as text (``<|im_end|>``), or None."""
        return self._tok.token_to_id(token)

    def spec(self) -> dict:
        return {"type": "hf", "file": "tokenizer.json", "bos_token": self.bos_token,
                "eos_token": self.eos_token, "pad_token": self.pad_token,
                "eos_ids": list(self._eos_ids), "add_bos": self.add_bos}

    def save(self, directory: str | Path) -> None:
        from tinyllm.atomic import atomic_write_text

        atomic_write_text(Path(directory) / "tokenizer.json", self._tok.to_str())

    @classmethod
    def from_str(cls, text: str, **special) -> "HFTokenizer":
        from tokenizers import Tokenizer as RustTokenizer

        return cls(RustTokenizer.from_str(text), **special)

    @classmethod
    def load(cls, path: Path, spec: dict | None = None) -> "HFTokenizer":
        from tokenizers import Tokenizer as RustTokenizer

        spec = spec or {}
        _check_file(path)
        try:
            tok = RustTokenizer.from_file(str(path))
        except FileNotFoundError:
            raise TokenizerError(f"{path}: tokenizer file missing") from None
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise TokenizerError(f"{path}: not a tokenizer.json file ({e})") from None
        return cls(tok, bos_token=spec.get("bos_token"), eos_token=spec.get("eos_token"),
                   eos_ids=spec.get("eos_ids") or (), add_bos=bool(spec.get("add_bos")),
                   pad_token=spec.get("pad_token"))


MAX_TOKENIZER_BYTES = 256 << 20  # the largest tokenizer file read


def _check_file(path: Path) -> None:
    if not Path(path).exists():
        raise TokenizerError(f"{path}: tokenizer file missing")
    if not Path(path).is_file():
        raise TokenizerError(f"{path}: not a regular file, not a tokenizer file")


def _read_json(path: Path):
    from tinyllm.atomic import read_bytes_limited

    _check_file(path)
    raw = read_bytes_limited(path, MAX_TOKENIZER_BYTES, "tokenizer file")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: not a tokenizer file (not UTF-8 text: byte "
                             f"0x{raw[e.start]:02x} at offset {e.start})") from None
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


# ---- wordpiece (BERT, through Hugging Face tokenizers) -----------------------------------------
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
WORDPIECE_SPECIALS = (PAD, UNK, CLS, SEP, MASK)


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece: normalisation (lower-casing, accent stripping) as its file says, then
    ``[CLS] text [SEP]`` for one text and ``[CLS] a [SEP] b [SEP]`` for a pair, with token types
    0 for the first segment and 1 for the second. Stored as a Hugging Face ``tokenizer.json``."""

    name = "wordpiece"

    def __init__(self, tok, where: str = "tokenizer"):
        tok.no_truncation()  # tinyllm truncates to the model's context itself, and pads per batch
        tok.no_padding()
        self._tok = tok
        self.vocab_size = tok.get_vocab_size()
        ids = {t: tok.token_to_id(t) for t in WORDPIECE_SPECIALS}
        missing = [t for t in (PAD, CLS, SEP) if ids[t] is None]
        if missing:
            raise TokenizerError(f"{where}: not a BERT WordPiece vocabulary (no {', '.join(missing)})")
        self.pad_id, self.cls_id, self.sep_id = ids[PAD], ids[CLS], ids[SEP]
        if tok.post_processor is None:  # a trained vocabulary: add [CLS] ... [SEP] as BERT does
            from tokenizers import processors

            tok.post_processor = processors.BertProcessing((SEP, self.sep_id), (CLS, self.cls_id))
        self.unk_id, self.mask_id = ids[UNK], ids[MASK]
        self.special_ids = frozenset(i for i in ids.values() if i is not None)

    @classmethod
    def from_vocab(cls, path: str | Path, lowercase: bool = True, strip_accents: bool | None = None,
                   chinese_chars: bool = True) -> "WordPieceTokenizer":
        """From a ``vocab.txt`` (one token a line); ``strip_accents`` None follows ``lowercase``,
        as in BERT."""
        from tokenizers.implementations import BertWordPieceTokenizer

        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: vocabulary file missing")
        try:
            impl = BertWordPieceTokenizer(str(path), lowercase=lowercase, strip_accents=strip_accents,
                                          handle_chinese_chars=chinese_chars)
        except Exception as e:  # tokenizers raises bare Exceptions
            raise TokenizerError(f"{path}: not a WordPiece vocabulary ({e})") from None
        return cls(impl._tokenizer, str(path))

    @classmethod
    def load(cls, path: str | Path, spec: dict | None = None) -> "WordPieceTokenizer":
        """From a Hugging Face ``tokenizer.json`` with a WordPiece model."""
        from tokenizers import Tokenizer as RustTokenizer

        path = Path(path)
        _check_file(path)
        try:
            tok = RustTokenizer.from_file(str(path))
        except FileNotFoundError:
            raise TokenizerError(f"{path}: tokenizer file missing") from None
        except Exception as e:
            raise TokenizerError(f"{path}: not a tokenizer file ({e})") from None
        kind = json.loads(tok.to_str()).get("model", {}).get("type")
        if kind != "WordPiece":
            raise TokenizerError(f"{path}: a {kind} tokenizer, not WordPiece")
        return cls(tok, str(path))

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8192, lowercase: bool = True
              ) -> "WordPieceTokenizer":
        """A WordPiece vocabulary learned from ``texts``, with BERT's special tokens first."""
        from tokenizers.implementations import BertWordPieceTokenizer

        impl = BertWordPieceTokenizer(lowercase=lowercase)
        impl.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=list(WORDPIECE_SPECIALS),
                                 show_progress=False)
        return cls(impl._tokenizer)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def encode_plain(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts)]

    def encode_pair(self, first: str, second: str) -> tuple[list[int], list[int]]:
        """``[CLS] first [SEP] second [SEP]``: (ids, token types)."""
        e = self._tok.encode(first, second)
        return e.ids, e.type_ids

    def truncate(self, ids: list[int], max_len: int) -> list[int]:
        if len(ids) <= max_len:
            return ids
        if ids and ids[-1] == self.sep_id:  # keep the closing [SEP], as transformers' truncation does
            return ids[:max_len - 1] + [self.sep_id]
        return ids[:max_len]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        return (self._tok.id_to_token(token_id) or "").encode("utf-8")

    @property
    def lowercase(self) -> bool:
        """Whether the normalizer lower-cases (an uncased vocabulary)."""
        return bool((json.loads(self._tok.to_str()).get("normalizer") or {}).get("lowercase"))

    def tokens(self) -> list[str]:
        """Every token, by id (the lines of a vocab.txt)."""
        return [t for t, _ in sorted(self._tok.get_vocab().items(), key=lambda kv: kv[1])]

    def spec(self) -> dict:
        return {"type": "wordpiece", "file": "tokenizer.json"}

    def save(self, directory: str | Path) -> None:
        from tinyllm.atomic import atomic_write_text

        atomic_write_text(Path(directory) / "tokenizer.json", self._tok.to_str())


# ---- factory ----------------------------------------------------------------------------------
_GPT2_CACHE: list[GPT2Tokenizer] = []
TOKENIZER_TYPES = ("gpt2", "char", "bpe", "hf", "wordpiece")
_FILE_TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer, "hf": HFTokenizer,
                    "wordpiece": WordPieceTokenizer}


def get_gpt2() -> GPT2Tokenizer:
    """The shared GPT-2 tokenizer (built once per process)."""
    if not _GPT2_CACHE:
        _GPT2_CACHE.append(GPT2Tokenizer())
    return _GPT2_CACHE[0]


def from_spec(spec: dict | str | None, model_dir: str | Path | None = None) -> Tokenizer:
    """A tokenizer from a ``config.yaml`` spec such as ``{type: char, file: tokenizer.json}``."""
    if spec is None:
        spec = {"type": "gpt2"}
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise TokenizerError(f"a tokenizer spec is a name or a mapping, not {spec!r}")
    kind = spec.get("type")
    if kind == "gpt2":
        return get_gpt2()
    if kind in _FILE_TOKENIZERS:
        if model_dir is None:
            raise TokenizerError(f"a {kind} tokenizer is stored in a model directory; give --model")
        from tinyllm.config import path_inside

        path = Path(model_dir) / spec.get("file", "tokenizer.json")
        path_inside(model_dir, spec.get("file", "tokenizer.json"), f"{model_dir}: tokenizer.file")
        if kind in ("hf", "wordpiece"):
            return _FILE_TOKENIZERS[kind].load(path, spec)
        return _FILE_TOKENIZERS[kind].load(path)
    raise TokenizerError(f"unknown tokenizer type {kind!r}; known: {', '.join(TOKENIZER_TYPES)}")

