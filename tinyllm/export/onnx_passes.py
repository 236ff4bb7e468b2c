"""ONNX graph passes used by the exporter: constant folding of transposed weights, the tanh GELU
fix-up, ONNX Runtime's transformer optimizer, weight quantization, and saving (with external data
beyond 2 GB). Works on ``onnx.ModelProto`` / files only; no torch here.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from tinyllm.errors import UserError
from tinyllm.export import QUANT_METHODS


def files_of(path: Path) -> list[Path]:
    """A graph and its external-data file, if any."""
    data = path.with_name(path.name + ".data")
    return [path, data] if data.exists() else [path]


def save_onnx(proto, path: Path, external: bool) -> None:
    """Save a ModelProto; with ``external`` its tensors go to ``<name>.data`` beside it."""
    import onnx

    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    if external:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))


def fold_constant_transposes(proto) -> int:
    """Replace Transpose(initializer) by a transposed initializer; returns how many.

    The tied LM head arrives as ``MatMul(h, Transpose(wte))``; the quantizers only touch a MatMul
    whose weight is an initializer, so without this the biggest matrix would stay float32.
    """
    import numpy as np
    from onnx import numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    keep, n = [], 0
    for node in graph.node:
        if node.op_type == "Transpose" and node.input[0] in inits:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            arr = numpy_helper.to_array(inits[node.input[0]])
            arr = np.ascontiguousarray(arr.transpose(perm) if perm else arr.T)
            graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
            n += 1
        else:
            keep.append(node)
    if n:
        del graph.node[:]
        graph.node.extend(keep)
        used = {i for node in graph.node for i in node.input}
        unused = [t for t in graph.initializer if t.name not in used]
        for t in unused:
            graph.initializer.remove(t)
    return n


def tanh_gelu_to_fastgelu(proto) -> int:
    """ONNX ``Gelu(approximate="tanh")`` -> ``com.microsoft.FastGelu`` (the same formula).

    ORT's transformer optimizer fuses every ``Gelu`` with its bias into ``BiasGelu``, which is the
    exact erf GELU: on GPT-2's tanh GELU that moves logits by ~1e-3. FastGelu keeps the tanh form,
    and the optimizer then fuses the bias into it correctly.
    """
    n = 0
    for node in proto.graph.node:
        approx = next((a.s for a in node.attribute if a.name == "approximate"), b"none")
        if node.op_type == "Gelu" and node.domain in ("", "ai.onnx") and approx == b"tanh":
            node.domain = "com.microsoft"
            node.op_type = "FastGelu"
            del node.attribute[:]
            n += 1
    import_domains(proto)
    return n


def import_domains(proto) -> None:
    """Declare the com.microsoft opset when a node uses it (a fusion may add the first one)."""
    if any(node.domain == "com.microsoft" for node in proto.graph.node) and \
            not any(o.domain == "com.microsoft" for o in proto.opset_import):
        import onnx

        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))


def optimize_graph(proto, n_head: int, n_embd: int, model_type: str = "gpt2"):
    """ORT's transformer optimizer (Python fusions only; the session adds its own at load time).

    ``model_type`` is the optimizer's: "gpt2" for decoders, "bert" for encoders. Returns the
    optimized ModelProto and the count of each fused operator, so a report can say which
    fusions happened (SkipLayerNormalization, FastGelu with bias, Attention, ...).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(model_type)
    with quiet_ort():
        opt = optimize_model(proto, model_type=model_type, num_heads=n_head, hidden_size=n_embd,
                             opt_level=0, optimization_options=options)
        stats = opt.get_fused_operator_statistics()
    import_domains(opt.model)
    return opt.model, {k: v for k, v in sorted(stats.items()) if v}


@contextlib.contextmanager
def quiet(names: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()):
    """Hush the loggers ``names`` (and every logger whose name starts with one of ``prefixes``) to
    errors, silence warnings and swallow stray prints: the exporters and ONNX Runtime's Python
    tools log every node and print progress, but stdout is for data (and this library never
    prints)."""
    names = tuple(names) + tuple(n for n in list(logging.root.manager.loggerDict)
                                 if prefixes and n.startswith(prefixes))
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, saved):
            lg.setLevel(lvl)


def quiet_ort():
    """onnxruntime's Python tools (some log on the root logger)."""
    return quiet(("", "onnxruntime"), prefixes=("onnxruntime", "fusion", "onnx_model"))


def quantize(src: Path, dst: Path, method: str = QUANT_METHODS[0], external: bool = False) -> None:
    """Quantize the weights of every MatMul with a constant weight, ONNX Runtime's own tooling.

    ``dynamic`` (the default, fastest here): ``quantize_dynamic``, int8 weights with one scale per
    matrix, activations quantized to uint8 on each call (DynamicQuantizeLinear + MatMulInteger).
    ``nbits8``: ``MatMulNBits`` with 8-bit symmetric weights, one scale per block of 128 inputs,
    int8 compute with the activations quantized per block too (accuracy_level 4): slower on this
    CPU, closer to float. ``nbits4``: the same with 4-bit weights in blocks of 32. docs/performance.md's
    onnx section has the speed and accuracy of each. Embedding lookups stay float32 (they read one
    row per token, not the whole table).
    """
    import onnx

    if method not in QUANT_METHODS:
        raise UserError(f"unknown quantization {method!r}; choose one of: {', '.join(QUANT_METHODS)}")
    with quiet_ort():
        if method == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"], per_channel=False,
                             use_external_data_format=external,
                             extra_options={"MatMulConstBOnly": True,
                                            # fused com.microsoft ops defeat type inference
                                            "DefaultTensorType": onnx.TensorProto.FLOAT})
        else:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            bits, block = (8, 128) if method == "nbits8" else (4, 32)
            q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=bits, block_size=block,
                                     is_symmetric=True, accuracy_level=4)
            q.process()
            save_onnx(q.model.model, dst, external)
    if external and method == "dynamic":  # quantize_dynamic names the data file itself
        collect_external(dst)
    # keep the source's metadata (graph kind, cache mode, ...), which not every quantizer copies
    src_props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    out = onnx.load(str(dst), load_external_data=False)  # a .data file beside it stays put
    props = {**{p.key: p.value for p in out.metadata_props}, **src_props}
    if src_props:
        props["tinyllm.quant"] = method
    onnx.helper.set_model_props(out, props)
    onnx.save_model(out, str(dst))


def collect_external(path: Path) -> None:
    """Re-save so the external data sits in ``<name>.data`` whatever name a tool chose."""
    import onnx

    save_onnx(onnx.load(str(path)), path, external=True)


LOGITS_INDEX = "logits_index"   # LM graph input: the positions whose logits are computed


def logits_at_positions(proto) -> bool:
    """Give a language-model graph the input ``logits_index`` (n,) int64: the positions (along
    the sequence) whose logits it computes, so ``logits`` is (batch, n, vocab).

    A prompt of 512 tokens needs the next-token logits of its last position only; without this
    the LM head, the biggest matrix, multiplies every position (about a third of a GPT-2 prefill's
    work). The quality check passes every position. Inserts ``Gather(h, logits_index, axis=1)``
    before the MatMul that makes ``logits``; False (graph unchanged) when ``logits`` is not a
    MatMul's output.
    """
    from onnx import TensorProto, helper

    graph = proto.graph
    at = next((i for i, n in enumerate(graph.node) if "logits" in n.output), None)
    if at is None or graph.node[at].op_type != "MatMul" or \
            any(i.name == LOGITS_INDEX for i in graph.input):
        return False
    head = graph.node[at]
    picked = head.input[0] + "_at_logits_index"
    graph.node.insert(at, helper.make_node("Gather", [head.input[0], LOGITS_INDEX], [picked],
                                           axis=1, name="logits_index_gather"))
    head.input[0] = picked
    graph.input.append(helper.make_tensor_value_info(LOGITS_INDEX, TensorProto.INT64,
                                                     ["n_logits"]))
    out = next(o for o in graph.output if o.name == "logits")
    dims = out.type.tensor_type.shape.dim
    if len(dims) == 3:
        dims[1].Clear()
        dims[1].dim_param = "n_logits"
    return True


def pack_attention_inputs(proto) -> int:
    """Feed each GroupQueryAttention the fused QKV projection whole (its packed-QKV form) instead
    of the three outputs of a Split; returns how many Splits were removed.

    The projection's output is ``[q | k | v]`` along the last axis, exactly the packed layout the
    operator reads when its key and value inputs are empty, so the Split (a copy of q, k and v
    every layer, every step) goes.
    """
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    dead, n = set(), 0
    for node in graph.node:
        if node.op_type != "GroupQueryAttention" or len(node.input) < 3:
            continue
        split = producer.get(node.input[0])
        if split is None or split.op_type != "Split" or list(split.output) != list(node.input[:3]):
            continue
        axis = next((a.i for a in split.attribute if a.name == "axis"), 0)
        if axis not in (-1, 2) or any(users.get(o, 0) != 1 for o in split.output):
            continue
        node.input[0], node.input[1], node.input[2] = split.input[0], "", ""
        dead.add(id(split))
        n += 1
    if n:
        keep = [node for node in graph.node if id(node) not in dead]
        del graph.node[:]
        graph.node.extend(keep)
        used = {name for node in graph.node for name in node.input}
        for t in [t for t in graph.initializer if t.name not in used]:
            graph.initializer.remove(t)  # the Splits' size tensors
    return n
