"""Batched decoding on ONNX Runtime: rows of different lengths in one run, each row's numbers the
same as when it runs alone (what lets `tinyllm serve` batch requests without changing answers)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyllm import modeldir
from tinyllm.checkpoint import save_model
from tinyllm.config import ModelConfig
from tinyllm.export.onnx import export_model, row_positions
from tinyllm.models.decoder import GPT
from tinyllm.runtime.decode_batch import PerSlotBatch
from tinyllm.runtime.onnx_decoder import BatchedOnnxDecoder, OnnxDecoder
from tinyllm.runtime.onnx_engine import OnnxEngine
from tinyllm.runtime.session import open_session
from tinyllm.tokenizer import CharTokenizer

from conftest import shakespeare


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """A random char LM (context 48) exported to a float graph and an nbits8 int8 graph."""
    torch.manual_seed(1)
    tok = CharTokenizer.train(shakespeare(20000))
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=48, n_layer=2, n_head=2,
                            n_embd=32))
    d = save_model(model, tok, tmp_path_factory.mktemp("batch") / "lm")
    export_model(d, int8=True, quant="nbits8")
    return d


def test_row_positions_follow_group_query_attention():
    seq = torch.tensor([6, 2, 9], dtype=torch.int32)
    # one new token after caches of 6, 2 and 9 positions
    assert row_positions(seq, torch.tensor(10, dtype=torch.int32), 1).tolist() == [[6], [2], [9]]
    # a prompt from an empty cache: every row from 0, right padding included
    got = row_positions(torch.tensor([3, 1], dtype=torch.int32), torch.tensor(4, dtype=torch.int32), 4)
    assert got.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]


def greedy_alone(dec: OnnxDecoder, prompt: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    out, logits, lg = [], [], dec.prefill(prompt)
    for _ in range(n):
        logits.append(lg)
        out.append(int(np.argmax(lg)))
        lg = dec.step(out[-1])
    return out, logits


def staggered(batch: BatchedOnnxDecoder, prompts: list[list[int]], n: int, every: int = 3):
    """Sequence i joins at step i * every, all decode greedily together; each row's logits."""
    logits = {i: [] for i in range(len(prompts))}
    pending: dict[int, np.ndarray] = {}
    step = 0
    while any(len(v) < n for v in logits.values()):
        for i, p in enumerate(prompts):
            if i not in pending and not logits[i] and step >= i * every:
                pending[i] = batch.prefill(i, p)
        going = [s for s in sorted(pending) if len(logits[s]) < n]
        for s in going:
            logits[s].append(pending[s])
        going = [s for s in going if len(logits[s]) < n]
        if going:
            rows = batch.step(going, [int(np.argmax(logits[s][-1])) for s in going])
            pending.update(zip(going, rows))
        step += 1
    return logits


@pytest.mark.parametrize("graph", ["model.onnx", "model.int8.onnx"])
def test_a_batch_of_rows_at_different_lengths_computes_each_row_as_alone(graphs, graph):
    """Seven sequences joining a batch one after another get, bit for bit, the logits each gets
    alone. Alone means the single-sequence decoder for the float graph; for int8, where ONNX
    Runtime rounds a batch of one row differently, the batched decoder with that one sequence
    (it runs an even number of rows, see BatchedOnnxDecoder)."""
    sess = open_session(graphs / graph)
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(1, 50, size=int(rng.integers(1, 12)))) for _ in range(7)]
    n = 20
    if graph == "model.onnx":
        alone = [greedy_alone(OnnxDecoder(sess), p, n)[1] for p in prompts]
    else:
        solo = BatchedOnnxDecoder(sess, 8)
        alone = []
        for p in prompts:
            alone.append(staggered(solo, [p], n)[0])
            solo.free(0)
    together = staggered(BatchedOnnxDecoder(sess, 8), prompts, n)
    for i in range(len(prompts)):
        for k in range(n):
            assert np.array_equal(together[i][k], alone[i][k]), \
                (i, k, np.abs(together[i][k] - alone[i][k]).max())


def test_a_row_not_stepped_keeps_its_cache(graphs):
    """A row waiting between its prefill and its first step rides along undisturbed."""
    sess = open_session(graphs / "model.onnx")
    batch, ref = BatchedOnnxDecoder(sess, 4), OnnxDecoder(sess)
    batch.prefill(0, [5, 6, 7])
    first = batch.prefill(1, [9, 10, 11, 12])          # row 1 waits while rows 0 and 2 step
    batch.step([0], [3])
    batch.prefill(2, [1])
    batch.step([0, 2], [4, 4])                         # row 1 rides along on a dummy token
    np.testing.assert_array_equal(first, ref.prefill([9, 10, 11, 12]))
    np.testing.assert_array_equal(batch.step([1], [20])[0], ref.step(20))
    np.testing.assert_array_equal(batch.step([1, 2], [21, 8])[0], ref.step(21))


def test_engines_choose_their_decode_batch(graphs, tmp_path):
    engine = OnnxEngine(modeldir.read_info(graphs), precision="int8")
    assert isinstance(engine.decode_batch(4), BatchedOnnxDecoder)
    # a graph exported before per-row positions decodes each sequence on its own, and says so
    import onnx

    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.yaml", "tokenizer.json"):
        (old / name).write_bytes((graphs / name).read_bytes())
    proto = onnx.load(str(graphs / "model.onnx"))
    kept = [p for p in proto.metadata_props if p.key != "tinyllm.positions"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(old / "model.onnx"))
    notes: list[str] = []
    engine = OnnxEngine(modeldir.read_info(old), log=notes.append)
    assert isinstance(engine.decode_batch(4), PerSlotBatch)
    assert any("export-onnx" in n for n in notes)
