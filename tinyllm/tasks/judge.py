"""Scoring instruction responses 0-100 with a judge model behind an OpenAI-compatible chat endpoint.

As the book's chapter 7 does with a local Llama 3 (through Ollama): the judge sees the prompt,
the reference output and the model's response, and answers with one integer. Any server that speaks
``POST .../chat/completions`` works (Ollama ``http://localhost:11434/v1``, llama.cpp's server, vLLM,
LM Studio, ...). Standard library only (urllib); nothing is contacted unless ``--judge-url`` is given.
An API key, when the server needs one, is read from ``$TINYLLM_JUDGE_API_KEY``.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from tinyllm.errors import UserError

API_KEY_ENV = "TINYLLM_JUDGE_API_KEY"


class JudgeError(UserError):
    """The judge endpoint cannot be reached or does not answer like a chat-completions API."""


def judge_prompt(prompt: str, reference: str, response: str) -> str:
    """The book's scoring prompt (chapter 7, "Evaluating the fine-tuned LLM")."""
    return (f"Given the input `{prompt}` and correct output `{reference}`, "
            f"score the model response `{response}` on a scale from 0 to 100, "
            f"where 100 is the best score. Respond with the integer number only.")


def parse_score(text: str) -> int | None:
    """The first integer in the judge's reply, clamped to 0..100 (None when there is none)."""
    m = re.search(r"-?\d+", text or "")
    if not m:
        return None
    return max(0, min(100, int(m.group())))


def endpoint(url: str) -> str:
    """Accept a base URL (``http://host:11434/v1``) or the full ``.../chat/completions`` URL."""
    url = url.rstrip("/")
    if not re.match(r"^https?://", url):
        raise JudgeError(f"--judge-url {url!r}: expected an http:// or https:// URL")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


@dataclass
class Judge:
    url: str                  # base URL or full chat-completions URL of the judge server
    model: str = "llama3"     # the judge model's name on that server
    timeout: float = 120.0    # seconds to wait for one answer

    def ask(self, content: str) -> str:
        """One chat completion (temperature 0); the reply text."""
        body = json.dumps({"model": self.model, "temperature": 0, "seed": 123,
                           "messages": [{"role": "user", "content": content}]}).encode()
        headers = {"Content-Type": "application/json"}
        if os.environ.get(API_KEY_ENV):
            headers["Authorization"] = f"Bearer {os.environ[API_KEY_ENV]}"
        url = endpoint(self.url)
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                reply = json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:200]
            raise JudgeError(f"judge {url}: HTTP {e.code} {e.reason}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise JudgeError(f"judge {url}: cannot connect ({reason}); is the server running?") \
                from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise JudgeError(f"judge {url}: the reply is not JSON") from None
        try:
            return reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge {url}: the reply has no choices[0].message.content "
                             f"(is this an OpenAI-compatible endpoint?)") from None

    def check(self) -> None:
        """Ask the judge one short question, so that a server that is down, a wrong URL or an
        unknown model is reported before any work is done (raises :class:`JudgeError`)."""
        self.ask("Respond with the number 100 only.")

    def score(self, prompt: str, reference: str, response: str) -> int | None:
        """0-100, or None when the judge's reply holds no number."""
        return parse_score(self.ask(judge_prompt(prompt, reference, response)))
