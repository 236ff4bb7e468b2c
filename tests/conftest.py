"""Shared fixtures: an isolated $TINYLLM_HOME for every test, and tiny models made on the spot."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")        # tests never download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1] / "tinyllm" / "bundled" / "data"


def shakespeare(chars: int) -> str:
    """The first ``chars`` characters of tiny Shakespeare."""
    return (SHARED_DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")[:chars]


def shakespeare_file(path: Path, chars: int) -> Path:
    """The first ``chars`` characters of tiny Shakespeare, written to ``path``."""
    path.write_text(shakespeare(chars), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def tinyllm_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("tinyllm_home")
    monkeypatch.setenv("TINYLLM_HOME", str(home))
    return home


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)  # tests run 2 workers on 2 cores


@pytest.fixture
def tiny_lm_dir(tmp_path) -> Path:
    """A randomly initialised char-level LM directory (2 layers, 32 wide)."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer.train(shakespeare(20000))
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=64, n_layer=2, n_head=2,
                            n_embd=32))
    return save_model(model, tok, tmp_path / "tiny-lm")


@pytest.fixture
def tiny_gpt2_dir(tmp_path) -> Path:
    """A randomly initialised LM with the GPT-2 tokenizer (2 layers, 32 wide, context 128)."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import get_gpt2

    torch.manual_seed(0)
    model = GPT(ModelConfig(context_length=128, n_layer=2, n_head=2, n_embd=32))
    return save_model(model, get_gpt2(), tmp_path / "tiny-gpt2")


@pytest.fixture
def tiny_bert_dir(tmp_path) -> Path:
    """A randomly initialised encoder (2 layers, 32 wide, context 64) with a WordPiece vocabulary
    trained on a little Shakespeare; task embed."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import EncoderConfig
    from tinyllm.models.encoder import Encoder
    from tinyllm.tokenizer import WordPieceTokenizer

    torch.manual_seed(0)
    tok = WordPieceTokenizer.train(shakespeare(20000).splitlines(), vocab_size=400)
    model = Encoder(EncoderConfig(vocab_size=tok.vocab_size, context_length=64, n_layer=2, n_head=2,
                                  n_embd=32, dropout=0.0))
    return save_model(model.eval(), tok, tmp_path / "tiny-bert", task="embed")


@pytest.fixture
def tiny_classifier_dir(tmp_path) -> Path:
    """A randomly initialised char-level classifier (labels ham and spam; 2 layers, 16 wide)."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer.train(shakespeare(5000))
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=32, n_layer=2, n_head=2,
                            n_embd=16, n_classes=2))
    return save_model(model, tok, tmp_path / "clf", task="classify",
                      extra={"labels": ["ham", "spam"]})
