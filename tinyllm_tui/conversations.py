"""Chat conversations on disk: one JSON file each in ``$TINYLLM_HOME/conversations``.

A conversation remembers the model, backend, sampling settings and system prompt it was held
with, so reopening it restores them; its messages are what the model answers
(:meth:`Conversation.chat_messages`). ``to_markdown`` renders it for sharing.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyllm import modeldir
from tinyllm.atomic import atomic_write_text
from tinyllm.errors import UserError


def conversations_dir() -> Path:
    return modeldir.tinyllm_home() / "conversations"


@dataclass
class Message:
    role: str                                   # "user", "assistant" or "error"
    content: str                                # the text (for classifiers: the top label)
    probs: dict[str, float] | None = None       # classifier answers: label -> probability
    cancelled: bool = False                     # the generation was stopped with Esc


@dataclass
class Conversation:
    id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
    title: str = ""                             # the first user message, shortened
    model: str = ""                             # model name or path it was held with
    backend: str = "auto"                       # "auto", "torch" or "onnx"
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, top_k, top_p, max_new_tokens
    system: str = ""                            # system prompt ("" = the model's own default)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    messages: list[Message] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return conversations_dir() / f"{self.id}.json"

    def add(self, message: Message) -> Message:
        self.messages.append(message)
        if not self.title and message.role == "user":
            line = message.content.strip().splitlines()[0] if message.content.strip() else ""
            self.title = line[:60] + ("…" if len(line) > 60 else "")
        return message

    def chat_messages(self) -> list[dict[str, str]]:
        """The conversation as the model sees it: the system prompt, then the user and
        assistant turns (errors and classifier answers left out)."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        return out + [{"role": m.role, "content": m.content} for m in self.messages
                      if m.role in ("user", "assistant") and not m.probs]

    def save(self) -> Path:
        self.updated = time.time()
        atomic_write_text(self.path, json.dumps(asdict(self), indent=1, ensure_ascii=False))
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> "Conversation":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            messages = [Message(**m) for m in data.pop("messages", [])]
            return cls(**data, messages=messages)
        except FileNotFoundError:
            raise UserError(f"{path}: no such conversation") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: not a conversation file ({e.msg})") from None
        except TypeError as e:
            raise UserError(f"{path}: not a conversation file ({e})") from None

    def to_markdown(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        settings = ", ".join(f"{k} {v}" for k, v in self.sampling.items() if v is not None)
        out = [f"# {self.title or 'Conversation'}", "",
               f"*Model `{self.model or 'default'}` ({self.backend}), {when}"
               + (f"; {settings}" if settings else "") + "*", ""]
        if self.system:
            out += ["**System:**", "", self.system, ""]
        for m in self.messages:
            if m.role == "user":
                out += ["**You:**", "", m.content, ""]
            elif m.role == "assistant":
                out += ["**Model:**", ""]
                if m.probs:
                    out += [f"| label | probability |", "|---|---|"]
                    out += [f"| {k} | {v:.3f} |" for k, v in
                            sorted(m.probs.items(), key=lambda kv: -kv[1])]
                else:
                    out += [m.content + (" *(stopped)*" if m.cancelled else "")]
                out += [""]
            else:
                out += [f"> error: {m.content}", ""]
        return "\n".join(out)

    def export_markdown(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self.path.with_suffix(".md")
        atomic_write_text(path, self.to_markdown())
        return path


def list_conversations() -> list[Conversation]:
    """Saved conversations, newest first (unreadable files are skipped)."""
    d = conversations_dir()
    if not d.is_dir():
        return []
    out = []
    for p in d.glob("*.json"):
        try:
            out.append(Conversation.load(p))
        except UserError:
            continue
    return sorted(out, key=lambda c: -c.updated)
