"""GPT-2 import/export checked against Hugging Face transformers on checkpoints built on the spot."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

os.environ["HF_HUB_OFFLINE"] = "1"        # no downloads, ever
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
transformers = pytest.importorskip("transformers")

from tinyllm.convert import gpt2, hub as gpt2_hub  # noqa: E402
from tinyllm.checkpoint import load_model  # noqa: E402
from tinyllm.cli import main  # noqa: E402
from tinyllm.config import ModelConfig  # noqa: E402
from tinyllm.engines.torch_engine import SamplingConfig, generate_token_ids  # noqa: E402
from tinyllm.models.decoder import GPT  # noqa: E402

VOCAB = 50257


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def hf_model(seed: int = 0, **kw) -> "transformers.GPT2LMHeadModel":
    """A random GPT2LMHeadModel; every tensor (biases and LayerNorms too) perturbed, so each mapping
    is exercised."""
    kw = {"n_layer": 2, "n_head": 3, "n_embd": 48, "n_positions": 96, "vocab_size": VOCAB, **kw}
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.generation_config.eos_token_id = None  # compare full-length greedy runs
    model.generation_config.pad_token_id = 0
    return model


def save_hf(model, folder: Path, fmt: str = "safetensors", prefixed: bool = True,
            mask_buffers: bool = False) -> Path:
    """Save as transformers does (safetensors, 'transformer.' keys) or as old checkpoints do."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    sd = model.state_dict() if prefixed else model.transformer.state_dict()
    sd = {k: v.clone().contiguous() for k, v in sd.items() if k != "lm_head.weight"
          or not model.config.tie_word_embeddings}
    if not model.config.tie_word_embeddings:
        sd["lm_head.weight"] = model.lm_head.weight.detach().clone()
    if mask_buffers:  # what the original OpenAI-converted checkpoints carry
        n = model.config.n_positions
        for i in range(model.config.n_layer):
            sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, n, n))
            sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    if fmt == "safetensors":
        save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:  # "bin", or "bin-legacy": the pre-zip format that cannot be memory-mapped
        torch.save(sd, folder / "pytorch_model.bin",
                   _use_new_zipfile_serialization=fmt != "bin-legacy")
    return folder


def assert_same_logits(ours: GPT, hf, T: int = 40, tol: float = 1e-4) -> float:
    torch.manual_seed(1)
    x = torch.randint(0, ours.config.vocab_size, (2, T))
    with torch.no_grad():
        diff = (ours(x) - hf(x).logits).abs().max().item()
    assert diff <= tol, diff
    return diff


def assert_same_greedy(ours: GPT, hf, n: int = 64) -> None:
    prompt = [464, 3290, 318, 257, 1332, 286, 262, 1080][: 8]
    prompt = [p % ours.config.vocab_size for p in prompt]
    cfg = SamplingConfig(max_new_tokens=n, temperature=0, top_k=None)
    mine = list(generate_token_ids(ours, prompt, cfg, eos_id=None))
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    assert mine == theirs


def import_dir(src, out: Path, *extra) -> GPT:
    r = cli("import-gpt2", src, "-o", out, *extra)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out)
    return load_model(out)


# ---- mapping -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [
    ModelConfig(vocab_size=50, context_length=16, n_layer=2, n_head=2, n_embd=8),
    ModelConfig(vocab_size=50, context_length=16, n_layer=1, n_head=1, n_embd=8, bias=False,
                qkv_bias=False, tie_weights=False, n_classes=3),
])
def test_shapes_match_the_model(cfg):
    assert gpt2.tinyllm_shapes(cfg) == {k: tuple(v.shape) for k, v in GPT(cfg).state_dict().items()}


@pytest.mark.parametrize("shape,fmt,prefixed", [
    (dict(n_layer=2, n_head=3, n_embd=48), "safetensors", True),
    (dict(n_layer=2, n_head=3, n_embd=48), "bin", False),
    (dict(n_layer=3, n_head=5, n_embd=40, n_positions=80, vocab_size=1000), "bin-legacy", True),
    (dict(n_layer=1, n_head=1, n_embd=16, activation_function="gelu", layer_norm_epsilon=1e-6,
          tie_word_embeddings=False), "safetensors", False),
])
def test_import_matches_transformers(tmp_path, shape, fmt, prefixed):
    hf = hf_model(**shape)
    src = save_hf(hf, tmp_path / "hf", fmt, prefixed, mask_buffers=not prefixed)
    ours = import_dir(src, tmp_path / "ours")
    assert_same_logits(ours, hf)
    assert_same_greedy(ours, hf)
    meta = ours.meta
    assert meta["task"] == "lm" and meta["tokenizer"]["type"] == "gpt2"
    assert meta["source"]["format"] == fmt.removesuffix("-legacy")
    assert meta["source"]["path"] == str(src.resolve())


def test_import_gpt2_124m_shape(tmp_path):
    """The real GPT-2 small shape (12 x 12 x 768, 1024 positions, 50257 tokens), once."""
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = import_dir(tmp_path / "hf", tmp_path / "ours")
    assert ours.num_params() == 124_439_808
    assert_same_logits(ours, hf, T=24)


def test_in_memory_helpers_round_trip():
    hf = hf_model(n_layer=2, n_head=3, n_embd=24, vocab_size=300)
    ours = gpt2.from_hf_state_dict(hf.state_dict(), hf.config)
    assert_same_logits(ours, hf)
    hf2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(**gpt2.hf_config_from_model(
        ours.config))).eval()
    hf2.load_state_dict(gpt2.to_hf_state_dict(ours), strict=False)
    assert_same_logits(ours, hf2, tol=1e-5)
    getter = gpt2.from_hf_state_dict(lambda name: hf.transformer.state_dict()[name], hf.config)
    assert_same_logits(getter, hf)


# ---- export ------------------------------------------------------------------------------------
def test_export_round_trip(tmp_path):
    hf = hf_model(n_layer=2, n_head=3, n_embd=48)
    ours = import_dir(save_hf(hf, tmp_path / "hf"), tmp_path / "ours")
    r = cli("export-hf", tmp_path / "ours", "-o", tmp_path / "back")
    assert r.exit_code == 0, r.output
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    assert_same_logits(ours, back)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    text = "Hello, world! Ça va?  Two  spaces."
    from tinyllm.tokenizer import get_gpt2
    assert tok(text)["input_ids"] == get_gpt2().encode(text)
    again = cli("export-hf", tmp_path / "ours", "-o", tmp_path / "back")
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_export_native_model_without_biases(tmp_path):
    """A tinyllm-trained shape GPT-2 lacks (no biases, exact GELU, untied head) still exports exactly."""
    from tinyllm.checkpoint import save_model
    from tinyllm.tokenizer import get_gpt2

    torch.manual_seed(0)
    cfg = ModelConfig(context_length=64, n_layer=2, n_head=2, n_embd=32, bias=False,
                      qkv_bias=False, gelu="exact", tie_weights=False, layer_norm_eps=1e-6)
    save_model(GPT(cfg), get_gpt2(), tmp_path / "native", dtype=torch.float16)
    r = cli("export-hf", tmp_path / "native", "-o", tmp_path / "hf", "--dtype", "float32", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["dtype"] == "float32"
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert_same_logits(load_model(tmp_path / "native"), back)


# ---- safety and bad input ----------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused(tmp_path, legacy):
    hf = hf_model(n_layer=1, n_embd=12)
    src = save_hf(hf, tmp_path / "hf", "bin")
    marker = tmp_path / "PWNED"
    payload = {**torch.load(src / "pytorch_model.bin", weights_only=True), "evil": _Evil(marker)}
    if legacy:
        with open(src / "pytorch_model.bin", "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, src / "pytorch_model.bin")
    r = cli("import-gpt2", src, "-o", tmp_path / "out")
    assert r.exit_code == 2
    assert "refused" in r.stderr and "Nothing from it was run" in r.stderr
    assert "Traceback" not in r.output
    assert not marker.exists()
    assert not (tmp_path / "out" / "config.yaml").exists()


def test_bad_inputs_name_what_is_wrong(tmp_path):
    hf = hf_model(n_layer=2, n_head=3, n_embd=48)
    good = save_hf(hf, tmp_path / "good")

    def fails(src, *needles):
        r = cli("import-gpt2", src, "-o", tmp_path / "out")
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output
        for n in needles:
            assert n in r.stderr, r.stderr
        assert not (tmp_path / "out" / "config.yaml").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(good / "config.json", empty)
    fails(empty, "no weights", "model.safetensors", "config.json")

    other = tmp_path / "other"
    shutil.copytree(good, other)
    (other / "config.json").write_text(json.dumps({"model_type": "roberta", "hidden_size": 48}))
    fails(other, "model_type 'roberta' cannot be imported", "gpt2, bert")

    broken_json = tmp_path / "broken_json"
    shutil.copytree(good, broken_json)
    (broken_json / "config.json").write_text('{\n  "model_type": "gpt2",\n  "n_layer": ,\n}')
    fails(broken_json, "config.json:3", "invalid JSON")

    wrong = tmp_path / "wrong"
    shutil.copytree(good, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**cfg, "n_positions": 128}))
    fails(wrong, "transformer.wpe.weight", "(96, 48)", "(128, 48)")

    deeper = tmp_path / "deeper"
    shutil.copytree(good, deeper)
    (deeper / "config.json").write_text(json.dumps({**cfg, "n_layer": 3}))
    fails(deeper, "missing tensor", "h.2.ln_1.weight")

    shallower = tmp_path / "shallower"
    shutil.copytree(good, shallower)
    (shallower / "config.json").write_text(json.dumps({**cfg, "n_layer": 1}))
    fails(shallower, "unexpected tensor transformer.h.1.")

    for fmt in ("safetensors", "bin"):
        cut = save_hf(hf, tmp_path / f"cut_{fmt}", fmt)
        f = next(p for p in cut.iterdir() if p.suffix in (".safetensors", ".bin"))
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        fails(cut, f.name, "truncated")

    fails(tmp_path / "nowhere", "no such file or folder")
    r = cli("import-gpt2", good, "-o", tmp_path / "ok")
    assert r.exit_code == 0
    r = cli("import-gpt2", good, "-o", tmp_path / "ok")
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    assert cli("import-gpt2", good, "-o", tmp_path / "ok", "--force").exit_code == 0
    r = cli("import-gpt2", tmp_path / "ok", "-o", tmp_path / "again")
    assert r.exit_code == 2 and "already a tinyllm model" in r.stderr


def test_lone_safetensors_file(tmp_path):
    hf = hf_model(n_layer=2, n_head=3, n_embd=48)
    save_hf(hf, tmp_path / "hf")
    lone = tmp_path / "lone" / "weights.safetensors"
    lone.parent.mkdir()
    shutil.copy(tmp_path / "hf" / "model.safetensors", lone)
    r = cli("import-gpt2", lone, "-o", tmp_path / "x")
    assert r.exit_code == 2 and "--n-head" in r.stderr
    ours = import_dir(lone, tmp_path / "ours", "--n-head", "3")
    assert (ours.config.n_layer, ours.config.n_head, ours.config.context_length) == (2, 3, 96)
    assert_same_logits(ours, hf)


# ---- the hub, offline --------------------------------------------------------------------------
def test_hub_name_offline_fails_at_once(tmp_path, monkeypatch):
    def not_cached(repo, local_only):
        assert local_only, "must not try the network when offline"
        raise FileNotFoundError(repo)

    monkeypatch.setattr(gpt2_hub, "_fetch", not_cached)
    r = cli("import-gpt2", "gpt2", "-o", tmp_path / "gpt2")
    assert r.exit_code == 2
    assert "offline" in r.stderr and "tinyllm import-gpt2 PATH/TO/FOLDER -o DIR" in r.stderr


def test_hub_name_without_huggingface_hub(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)
    r = cli("import-gpt2", "gpt2-xl", "-o", tmp_path / "xl")
    assert r.exit_code == 2
    assert "pip install 'tinyllm[hub]'" in r.stderr and "PATH/TO/FOLDER" in r.stderr


# ---- downstream --------------------------------------------------------------------------------
def test_generate_cli_on_imported_model(tmp_path):
    hf = hf_model(n_layer=2, n_head=3, n_embd=48)
    ours = import_dir(save_hf(hf, tmp_path / "hf"), tmp_path / "ours", "--dtype", "float16")
    assert ours.meta["source"]["dtype"] == "float16"
    r = cli("generate", "--model", tmp_path / "ours", "-n", "12", "-t", "0", "The cat")
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip()) > 0


def test_sharded_safetensors(tmp_path):
    hf = hf_model(n_layer=2, n_head=3, n_embd=48)
    src = tmp_path / "sharded"
    src.mkdir()
    hf.config.save_pretrained(src)
    sd = {k: v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    names = sorted(sd)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        fname = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: sd[k] for k in part}, str(src / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_same_logits(import_dir(src, tmp_path / "ours"), hf)


def test_finetune_classify_on_imported_model(tmp_path):
    hf = hf_model(n_layer=1, n_head=2, n_embd=16, n_positions=64)
    import_dir(save_hf(hf, tmp_path / "hf"), tmp_path / "ours")
    rows = [("spam", "WIN a FREE prize now, call 0800 000"), ("ham", "see you at lunch tomorrow")] * 12
    data = tmp_path / "sms.tsv"
    data.write_text("".join(f"{label}\t{text}\n" for label, text in rows))
    r = cli("finetune", "classify", "--model", tmp_path / "ours", "--data", data, "--epochs", "1",
            "--batch-size", "8", "--out", tmp_path / "clf")
    assert r.exit_code == 0, r.output
    clf = load_model(tmp_path / "clf")
    assert clf.config.n_classes == 2 and clf.config.n_embd == 16


def test_export_bpe_model_with_its_tokenizer(tmp_path):
    from tinyllm.checkpoint import save_model
    from tinyllm.tokenizer import BPETokenizer

    text = (Path(__file__).resolve().parents[2] / "tinyllm" / "bundled" / "data" /
            "tinyshakespeare.txt").read_text(encoding="utf-8")[:20000]
    tok = BPETokenizer.train([text], vocab_size=400)
    torch.manual_seed(0)
    save_model(GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=64, n_layer=1, n_head=2,
                               n_embd=16)), tok, tmp_path / "bpe")
    assert cli("export-hf", tmp_path / "bpe", "-o", tmp_path / "hf").exit_code == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    sample = "ROMEO: But soft, what light through yonder window breaks?"
    assert hf_tok(sample)["input_ids"] == tok.encode(sample)
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert back.config.eos_token_id == tok.eot_id
    assert_same_logits(load_model(tmp_path / "bpe"), back)
