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


def optimize_graph(proto, n_head: int, n_embd: int):
    """ORT's transformer optimizer (Python fusions only; the session adds its own at load time).

    Returns the optimized ModelProto and the count of each fused operator, so a report can say which
    fusions happened (SkipLayerNormalization, FastGelu with bias, Attention, ...).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("gpt2")
    with quiet_ort():
        opt = optimize_model(proto, model_type="gpt2", num_heads=n_head, hidden_size=n_embd,
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
