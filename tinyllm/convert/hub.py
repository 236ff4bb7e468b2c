"""GPT-2 weights by name from the Hugging Face hub (optional: ``pip install 'tinyllm[hub]'``).

Only ``tinyllm import-gpt2 NAME`` comes here, and only for the released names below. The Hugging Face
cache is looked at first; a download happens only when the hub answers. Offline
(``HF_HUB_OFFLINE=1``, or no connection) it fails at once and says how to import a local copy instead.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from tinyllm.errors import UserError

HUB_REPOS = {
    "gpt2": "openai-community/gpt2",                # 124M
    "gpt2-medium": "openai-community/gpt2-medium",  # 355M
    "gpt2-large": "openai-community/gpt2-large",    # 774M
    "gpt2-xl": "openai-community/gpt2-xl",          # 1.5B
    "distilgpt2": "distilbert/distilgpt2",          # 82M
}
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_TRUE = ("1", "true", "yes", "on")


class HubUnavailable(UserError):
    """The hub cannot be used (not installed, offline, unreachable): the message names the way out."""


def local_hint(name: str) -> str:
    return (f"Without the hub, copy a GPT-2 folder (config.json + model.safetensors, e.g. the "
            f"{HUB_REPOS[name]} files) from a machine that has it and run: "
            f"tinyllm import-gpt2 PATH/TO/FOLDER -o DIR")


def is_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection (skipped, True, when a proxy is configured)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def download(name: str, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """config.json + weights of a released GPT-2 (from the cache if there), as ``gpt2.locate`` does."""
    log = log or (lambda msg: None)
    repo = HUB_REPOS[name]
    try:
        from huggingface_hub import constants
    except ImportError:
        raise HubUnavailable(f"{name}: downloading needs the optional huggingface_hub package: "
                             f"pip install 'tinyllm[hub]'. {local_hint(name)}") from None
    try:
        return _fetch(repo, local_only=True)  # already in the Hugging Face cache
    except Exception:  # noqa: BLE001 - not cached (the error class varies across versions)
        pass
    if is_offline():
        raise HubUnavailable(f"{name}: offline (HF_HUB_OFFLINE is set) and not in the Hugging Face "
                             f"cache. {local_hint(name)}")
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    if not reachable(endpoint):
        raise HubUnavailable(f"{name}: cannot reach {endpoint} (offline?). {local_hint(name)}")
    log(f"downloading {repo} from {endpoint}")
    try:
        return _fetch(repo, local_only=False)
    except Exception as e:  # noqa: BLE001 - network and HTTP errors of any kind
        raise HubUnavailable(f"{name}: download of {repo} failed ({type(e).__name__}: {e}). "
                             f"{local_hint(name)}") from None


def _fetch(repo: str, local_only: bool) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError

    config = Path(hf_hub_download(repo, "config.json", local_files_only=local_only))
    for filename in WEIGHTS:
        try:
            weights = Path(hf_hub_download(repo, filename, local_files_only=local_only))
        except EntryNotFoundError:
            continue
        revision = weights.parent.name if weights.parent.parent.name == "snapshots" else None
        return {"config": config, "weights": [weights],
                "source": {"type": "hub", "repo": repo, "revision": revision}}
    raise EntryNotFoundError(f"{repo} has neither {' nor '.join(WEIGHTS)}")
