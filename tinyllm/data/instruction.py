"""Instruction data (Alpaca JSON or JSONL): reading, the seeded split, tokenizing, and batching.

An entry is ``{"instruction": str, "input": str (may be empty or missing), "output": str}``.
A file is either one JSON array of entries (``.json``) or one entry per line (``.jsonl``). Bad data
names the file and the entry (``data.json: entry [12]: missing 'instruction'``) or the line
(``data.jsonl:13: ...``) and exits with code 2.

Batches follow "Build a Large Language Model (From Scratch)", chapter 7: each example is the
prompt followed by the response and one end-of-text token; a batch is padded to its longest example
with the end-of-text token; the targets are the inputs shifted by one, with every padding position
set to -100 (ignored by the loss) except the first, so the model learns to stop. ``mask_prompt``
also sets the targets inside the prompt to -100, so only the response is learned.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from tinyllm.data.files import parse_records, read_text
from tinyllm.errors import DataError, UserError
from tinyllm.data.templates import Template, format_prompt, load_template
from tinyllm.tokenizer import Tokenizer

IGNORE_INDEX = -100
SPLIT = (0.85, 0.10, 0.05)  # train, test, validation (the book's proportions and order)


@dataclass
class Entry:
    instruction: str     # what to do
    input: str           # optional context for the instruction ("" when absent)
    output: str          # the desired response ("" when the file has none, e.g. for generation)
    where: str = ""      # "data.json: entry [12]" or "data.jsonl:13", for messages

    def to_dict(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


def _entry(obj: Any, where: str, need_output: bool) -> Entry:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object with 'instruction', 'input' and "
                                   f"'output', got {type(obj).__name__}")
    required = ("instruction", "output") if need_output else ("instruction",)
    for key in required:
        if key not in obj:
            raise DataError(f"{where}: missing '{key}'")
    values = {}
    for key in ("instruction", "input", "output"):
        v = obj.get(key)
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise DataError(f"{where}: '{key}' must be a string, not {type(v).__name__}")
        values[key] = v
    if not values["instruction"].strip():
        raise DataError(f"{where}: 'instruction' is empty")
    return Entry(where=where, **values)


def read_instructions(path: str | Path, need_output: bool = True) -> list[Entry]:
    """All entries of an Alpaca JSON array or JSONL file (told apart by the first character, as
    :func:`tinyllm.data.files.parse_records` tells every JSON file)."""
    path = Path(path)
    name = path.name
    text = read_text(path, "JSON file")
    if not text.strip():
        raise DataError(f"{name}: empty file (expected a JSON array of entries or JSONL)")
    form, records = parse_records(path, text)
    if form == "json":
        entries = [_entry(obj, f"{name}: entry [{i - 1}]", need_output) for i, obj in records]
    else:
        entries = [_entry(obj, f"{name}:{n}", need_output) for n, obj in records]
    if not entries:
        raise DataError(f"{name}: no entries")
    return entries


def split_entries(entries: Sequence[Entry], seed: int = 123,
                  fractions: tuple[float, float, float] = SPLIT
                  ) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """Seeded shuffle, then (train, test, val) by ``fractions`` (85/10/5: 935/110/55 of 1,100)."""
    order = list(range(len(entries)))
    random.Random(seed).shuffle(order)
    n_train = int(len(order) * fractions[0])
    n_test = int(len(order) * fractions[1])
    pick = lambda idx: [entries[i] for i in idx]  # noqa: E731
    return (pick(order[:n_train]), pick(order[n_train:n_train + n_test]),
            pick(order[n_train + n_test:]))


@dataclass
class Example:
    ids: list[int]       # prompt tokens followed by response tokens (no end-of-text yet)
    prompt_len: int      # how many of ``ids`` are the prompt


def encode_entry(entry: Entry, tokenizer: Tokenizer, template: Template) -> Example:
    """Tokens of prompt + response, encoded apart so the boundary matches generation exactly."""
    prompt = tokenizer.encode(format_prompt(template, entry.instruction, entry.input))
    response = tokenizer.encode(entry.output)
    return Example(prompt + response, len(prompt))


def encode_entries(entries: Iterable[Entry], tokenizer: Tokenizer,
                   template: "Template | dict | str | None" = None) -> list[Example]:
    template = load_template(template)
    return [encode_entry(e, tokenizer, template) for e in entries]


def pad_id_for(tokenizer: Tokenizer) -> int:
    """The end-of-text id used to end and pad examples (instruct tuning needs one)."""
    if tokenizer.eot_id is None:
        raise UserError(f"instruction tuning needs a tokenizer with an end-of-text token "
                        f"(gpt2 or bpe); this model's {tokenizer.name!r} tokenizer has none")
    return tokenizer.eot_id


def collate(examples: Sequence[Example], pad_id: int, max_length: int | None = None,
            mask_prompt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), both (B, T) int64.

    Each example gets one ``pad_id`` (end-of-text) appended, then all are padded with ``pad_id``;
    inputs drop the last column, targets the first (T = longest example, capped at ``max_length``).
    So ``targets[b, t]`` is token t+1; padding targets are -100 except the first one (the
    end-of-text the model must learn to emit); with ``mask_prompt`` the targets that are prompt
    tokens are -100 too.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    T = max(len(ex.ids) for ex in examples)
    inputs = torch.full((len(examples), T), pad_id, dtype=torch.long)            # (B, T)
    targets = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)     # (B, T)
    for b, ex in enumerate(examples):
        n = len(ex.ids)
        inputs[b, :n] = torch.tensor(ex.ids, dtype=torch.long)
        targets[b, :n - 1] = inputs[b, 1:n]
        targets[b, n - 1] = pad_id            # the first padding token: learn to stop
        if mask_prompt:
            targets[b, :max(ex.prompt_len - 1, 0)] = IGNORE_INDEX
    if max_length is not None:
        inputs, targets = inputs[:, :max_length], targets[:, :max_length]
    return inputs, targets


def trainable(examples: Sequence[Example], max_length: int, mask_prompt: bool
              ) -> tuple[list[Example], int]:
    """Drop examples that would teach nothing once cut to ``max_length`` (prompt fills the window
    when prompt tokens are masked); returns (kept, dropped count)."""
    if not mask_prompt:
        return list(examples), 0
    kept = [ex for ex in examples if ex.prompt_len < max_length]
    return kept, len(examples) - len(kept)


def batches(examples: Sequence[Example], batch_size: int, pad_id: int, max_length: int | None = None,
            mask_prompt: bool = False) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over ``examples`` in order, ``batch_size`` at a time (for evaluation; training
    draws its batches through :class:`tinyllm.data.batching.StepBatches`)."""
    for i in range(0, len(examples), batch_size):
        yield collate(examples[i:i + batch_size], pad_id, max_length, mask_prompt)
