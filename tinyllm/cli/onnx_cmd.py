"""`tinyllm export-onnx`: a model directory -> model.onnx (and model.int8.onnx) for ONNX Runtime."""
from __future__ import annotations

import json

import click

from tinyllm.export import QUANT_CHOICES
from tinyllm.units import human_bytes


@click.command("export-onnx")
@click.argument("model")
@click.option("--int8", is_flag=True,
              help="Also write model.int8.onnx with quantized weights (int8 or 4-bit: 4-6x "
                   "smaller, faster on CPU).")
@click.option("--quant", type=click.Choice(QUANT_CHOICES), default=QUANT_CHOICES[0],
              show_default=True,
              help="With --int8: auto = the fastest method (nbits4, dynamic, nbits8) that keeps a "
                   "language model's top-1 next token on >= 97% of its validation text (imported "
                   "weights: a bundled held-out text) and the loss within 2%, else the closest "
                   "(dynamic when there is no text to check on; encoders: 8-bit only); "
                   "dynamic = int8 weights, activations quantized per call (the fastest 8-bit); "
                   "nbits8 = 8-bit block-wise weights (closest to float); nbits4 = 4-bit "
                   "block-wise weights (smallest and fastest).")
@click.option("--int8-only", is_flag=True,
              help="Keep only model.int8.onnx (implies --int8), e.g. to ship a small model.")
@click.option("--out", "-o", "out", type=click.Path(file_okay=False), default=None,
              help="Directory for the graphs (default: the model directory itself); it also gets "
                   "config.yaml and the tokenizer, so it runs on its own with --backend onnx.")
@click.option("--overwrite", is_flag=True,
              help="With --out: replace another model already in that directory (an earlier "
                   "export of this same model is replaced without it).")
@click.option("--no-optimize", is_flag=True, help="Skip ONNX Runtime's transformer optimizer.")
@click.option("--external-data", is_flag=True,
              help="Keep weights in model.onnx.data beside the graph (automatic above 2 GB).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def export_onnx(model, int8, quant, int8_only, out, overwrite, no_optimize, external_data,
                as_json):
    """Export MODEL (a path or a name) to ONNX for `--backend onnx`.

    A language model becomes one graph with a KV cache (past keys/values in, present out) that
    serves both the prompt and each new token; a classifier becomes a graph from token ids and
    lengths to class logits. The exported graph is checked against torch before it is kept.
    Afterwards `tinyllm generate`, `chat` and `classify` use it by themselves.

    \b
    Examples:
      tinyllm export-onnx shakespeare-char --int8 -o /tmp/shakespeare-onnx
      tinyllm export-onnx ./my-classifier --int8
    """
    from tinyllm.export.onnx import export_model

    def log(msg: str) -> None:
        if not as_json:
            click.echo(msg, err=True)

    result = export_model(model, out, int8=int8 or int8_only, quant=quant,
                          keep_fp32=not int8_only, optimize=not no_optimize,
                          external_data=True if external_data else None, overwrite=overwrite,
                          log=log)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    how = "dynamo" if result.exporter == "dynamo" else "TorchScript (dynamo failed)"
    click.echo(f"exported a {result.kind} graph with the {how} exporter in {result.seconds:.1f}s; "
               f"max |onnx - torch| {result.max_abs_diff:.1e}")
    click.echo("fused operators: " + (", ".join(f"{k} x{v}" for k, v in result.fusions.items())
                                      or "none"))
    if result.quant_method:
        how = " (chosen by --quant auto)" if quant == "auto" and result.quant_check else ""
        click.echo(f"int8 weights: {result.quant_method}{how}")
    where = (result.fp32_path or result.int8_path).parent
    for name, size in result.sizes.items():
        click.echo(f"{human_bytes(size):>10}  {where / name}")
