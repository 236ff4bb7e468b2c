"""The ``classify`` task: a label for each text, learned from a TSV/CSV/JSONL file.

Fine-tuning puts a classification head (``n_classes`` outputs, on the last real token or the mean of
the tokens) on a language model given by ``--model``, or on a small model trained from scratch with a
BPE tokenizer trained on the data when ``--model`` is omitted. Training runs through the one training
loop (:class:`tinyllm.train.Trainer`); the held-out test split is scored at the end, written beside the
model as ``test.jsonl`` and reported (accuracy, per-class precision/recall/F1, confusion matrix).

Plugins subclass :class:`ClassifyTask` for their own classifiers (see ``plugins/``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from tinyllm import modeldir
from tinyllm.config import read_yaml, write_yaml
from tinyllm.data import classification as cdata
from tinyllm.data.classification import Example
from tinyllm.errors import UserError
from tinyllm.tasks.base import DataError, Task
from tinyllm.tasks.classification_metrics import classification_metrics, format_classification

_COLUMNS = (
    click.Option(["--text-col"], default=None,
                 help="Text column: header name or 1-based number (default: text; a headerless "
                      "two-column file is label<TAB>text)."),
    click.Option(["--label-col"], default=None, help="Label column: header name or 1-based number "
                                                     "(default: label)."),
)
_BATCH = click.Option(["--batch-size"], type=click.IntRange(1), default=None,
                      help="Examples per batch (finetune: 16; eval: 64).")


def _split_option(ctx, param, value):
    try:
        parts = tuple(float(x) for x in value.split(","))
        if len(parts) != 3:
            raise ValueError
        return parts
    except ValueError:
        raise click.BadParameter("expected three fractions like 0.7,0.1,0.2") from None


class ClassifyTask(Task):
    name = "classify"
    description = "Text classification: a label per text, from TSV/CSV/JSONL (SMS spam, ...)"
    head = "classify"
    data_formats = ("tsv", "csv", "jsonl", "json")
    metric_names = ("accuracy", "macro_f1")
    labels: tuple[str, ...] = ()      # fixed label order (plugins); empty: discovered from the data, sorted
    default_preset = "tiny"           # model shape when training from scratch (no --model)

    finetune_options = (
        *_COLUMNS,
        click.Option(["--balance"], type=click.Choice(["none", "undersample"]), default="none",
                     help="undersample: keep as many examples of every label as the rarest has."),
        click.Option(["--train-left-out"], is_flag=True,
                     help="With --balance undersample: add the examples it leaves out to the "
                          "training split only (validation and test stay balanced)."),
        click.Option(["--class-weight"], type=click.Choice(["none", "balanced"]), default="none",
                     help="balanced: weight the loss by inverse label frequency in training."),
        click.Option(["--train-layers"], default="all", show_default=True,
                     help="Which transformer blocks train: all, last-N (plus final norm and head), "
                          "or head (the head alone; the model stays frozen)."),
        click.Option(["--lora-rank"], type=click.IntRange(0), default=0,
                     help="LoRA adapters of this rank on the trained blocks (0 = off); merged on save."),
        click.Option(["--lora-alpha"], type=float, default=None, help="LoRA alpha (default: the rank)."),
        click.Option(["--pooling"], type=click.Choice(["last", "mean", "cls"]), default=None,
                     help="Head input: the last real token (decoders' default), [CLS] through the "
                          "pooler (encoders' default), or the mean of all tokens."),
        click.Option(["--epochs"], type=click.IntRange(1), default=5, show_default=True),
        click.Option(["--dropout"], type=click.FloatRange(0, 1, max_open=True), default=None,
                     help="Dropout while training (default: the model's; 0.1 from scratch)."),
        _BATCH,
        click.Option(["--lr"], type=float, default=None,
                     help="Peak learning rate (default: 5e-5 from a model, 1e-3 from scratch)."),
        click.Option(["--split"], default="0.7,0.1,0.2", show_default=True, callback=_split_option,
                     help="Train/validation/test fractions (stratified by label)."),
        click.Option(["--seed"], type=int, default=123, show_default=True),
        click.Option(["--preset"], default=None,
                     help="Model shape when training from scratch (no --model); default tiny."),
        click.Option(["--resume"], is_flag=True, help="Continue an interrupted run in --out."),
    )
    eval_options = (
        *_COLUMNS, _BATCH,
        click.Option(["--backend"], type=click.Choice(["torch", "onnx"]), default=None,
                     help="Run the model on torch or ONNX Runtime (default: onnx if exported)."),
    )

    # ---- data ---------------------------------------------------------------------------------
    def read_data(self, path, text_col=None, label_col=None, **_: Any) -> list[Example]:
        """Examples from a TSV/CSV/JSONL/JSON file; plugins override this for their own formats."""
        return cdata.read_examples(path, text_col, label_col)

    def label_set(self, examples: list[Example], path) -> list[str]:
        if self.labels:
            cdata.check_labels(examples, list(self.labels), path)
            return list(self.labels)
        labels = cdata.discover_labels(examples)
        if len(labels) < 2:
            raise DataError(f"{path}: a classifier needs at least two labels, found "
                            f"{', '.join(map(repr, labels)) or 'none'}")
        return labels

    # ---- training -----------------------------------------------------------------------------
    def loss(self, model, batch):
        import torch.nn.functional as F

        ids, lengths, y = batch
        return F.cross_entropy(model.classify(ids, lengths).float(), y)

    def finetune(self, data, out, model=None, text_col=None, label_col=None, balance="none",
                 train_layers="all", lora_rank=0, lora_alpha=None, pooling=None, epochs=5,
                 batch_size=None, lr=None, split=(0.7, 0.1, 0.2), seed=123, preset=None,
                 resume=False, train_left_out=False, class_weight="none", dropout=None,
                 extra_train: list[Example] | None = None, vocab_size: int = 4096,
                 model_overrides: dict | None = None, save_dtype=None, quiet: bool = False,
                 **_: Any) -> dict[str, Any]:
        """Fine-tune (or train from scratch) and report the test split's metrics.

        ``extra_train`` adds examples to the training split only (never validated or tested);
        ``model_overrides`` changes ModelConfig fields of a from-scratch model.
        """
        from tinyllm.tasks import classify_train

        started = time.time()
        if not resume and (Path(out) / "train_state").exists():
            raise UserError(f"{out} holds a training run; --resume continues it, or choose "
                            "another --out")
        examples = self.read_data(data, text_col, label_col)
        labels = self.label_set(examples, data)
        left_out: list[Example] = []
        if balance == "undersample":
            examples, left_out = cdata.undersample(examples, seed)
        elif train_left_out:
            raise UserError("--train-left-out needs --balance undersample")
        train, val, test = cdata.stratified_split(examples, tuple(split), seed)
        extra_train = list(extra_train or []) + (left_out if train_left_out else [])
        train = train + extra_train
        if not train or not test:
            raise DataError(f"{data}: too few examples ({len(examples)}) for a train/val/test split")
        info = {
            "data": str(data), "text_col": text_col, "label_col": label_col, "balance": balance,
            "split": {"train": len(train), "val": len(val), "test": len(test),
                      "left_out": len(left_out), "extra_train": len(extra_train)},
            "label_counts": {"train": cdata.label_counts(train), "test": cdata.label_counts(test)},
            "train_layers": train_layers, "lora_rank": lora_rank, "seed": seed,
            "class_weight": class_weight, "epochs": epochs,
        }
        run = classify_train.Run(
            task=self, labels=labels, train=train, val=val, out=Path(out), base=model,
            pooling=pooling, train_layers=train_layers, lora_rank=lora_rank, lora_alpha=lora_alpha,
            epochs=epochs, batch_size=batch_size or 16, lr=lr, seed=seed,
            preset=preset or self.default_preset, vocab_size=vocab_size,
            model_overrides=model_overrides or {}, save_dtype=save_dtype, resume=resume,
            quiet=quiet, info=info, class_weight=class_weight, dropout=dropout)
        done = run.fit()
        test_file, test_cols = self.write_test(Path(out), test, text_col, label_col)
        report = self.evaluate(out, test_file, backend="torch", **test_cols)
        report.update(data=str(data), split="test", seconds=round(time.time() - started, 1),
                      train={"steps": done.get("step"), "best_step": done.get("best_step"),
                             "params": run.param_counts, **info["split"]})
        self._record_test(Path(out), report)
        return report

    def write_test(self, out: Path, test: list[Example], text_col, label_col
                   ) -> tuple[Path, dict[str, Any]]:
        """Write the test split beside the model, readable by ``read_data``: (its path, the
        evaluate() options that read it). Here JSONL with the training file's column names;
        plugins with their own format override this."""
        tc = text_col if text_col and not str(text_col).isdigit() else "text"
        lc = label_col if label_col and not str(label_col).isdigit() else "label"
        import json

        from tinyllm.atomic import atomic_write_text

        atomic_write_text(out / "test.jsonl", "".join(
            json.dumps({tc: e.text, lc: e.label}, ensure_ascii=False) + "\n" for e in test))
        return out / "test.jsonl", {"text_col": tc, "label_col": lc}

    @staticmethod
    def _record_test(out: Path, report: dict[str, Any]) -> None:
        """Add the test split's headline numbers to config.yaml (provenance)."""
        meta = read_yaml(out / modeldir.CONFIG)
        m = report["metrics"]
        meta.setdefault("train", {})["test"] = {
            "n": report["n"], "accuracy": round(m["accuracy"], 6), "macro_f1": round(m["macro_f1"], 6),
            "seconds": report["seconds"]}
        write_yaml(out / modeldir.CONFIG, meta)

    # ---- evaluation and answers ---------------------------------------------------------------
    def evaluate(self, model_dir, data, text_col=None, label_col=None, batch_size=None,
                 backend=None, **_: Any) -> dict[str, Any]:
        from tinyllm.engines import open_engine

        engine = open_engine(model_dir, backend, default=modeldir.DEFAULT_CLASSIFIER)
        labels = engine.labels
        if not labels:
            raise UserError(f"{engine.info.path}: not a classifier (task {engine.task}, no labels)")
        stored = engine.meta.get("data") or {}
        if text_col is None and label_col is None:
            text_col, label_col = stored.get("text_col"), stored.get("label_col")
            if Path(data).suffix.lower() in (".jsonl", ".json", ".ndjson"):
                text_col = None if str(text_col).isdigit() else text_col
                label_col = None if str(label_col).isdigit() else label_col
        examples = self.read_data(data, text_col, label_col)
        cdata.check_labels(examples, labels, data)
        probs = predict(engine, [e.text for e in examples], batch_size or 64)
        index = {x: i for i, x in enumerate(labels)}
        y_true = [index[e.label] for e in examples]
        y_pred = probs.argmax(axis=1).tolist()
        return {"task": self.name, "model": str(engine.info.path), "data": str(data),
                "n": len(examples), "backend": engine.backend,
                "metrics": self.metrics(y_pred, y_true, labels)}

    def metrics(self, predictions, targets, labels=None) -> dict[str, Any]:
        return classification_metrics(targets, predictions, list(labels or self.labels))

    def answer(self, engine, inputs: list[str]) -> list[str]:
        probs = predict(engine, inputs)
        return [engine.labels[i] for i in probs.argmax(axis=1)]

    def format_report(self, report: dict[str, Any]) -> str:
        head = f"{report['model']} on {report['data']}: {report['n']} examples"
        if report.get("split"):
            head += f" (held-out {report['split']} split)"
        lines = [head]
        if report.get("train"):
            t = report["train"]
            lines.append(f"trained {t['steps']} steps on {t['train']} examples "
                         f"(best at step {t['best_step']}), {report['seconds']} s")
        extra = [f"{k}  {v:.4f}" for k, v in report["metrics"].items()
                 if isinstance(v, float) and k not in ("accuracy", "macro_f1")]
        return "\n".join(lines + [""] + [format_classification(report["metrics"])] +
                         (["", *extra] if extra else []))


def predict(engine, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Probabilities (N, n_classes) through ``engine.classify``, batched by similar length."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    n_classes = len(engine.labels)
    probs = np.zeros((len(texts), n_classes), dtype=np.float64)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        probs[idx] = engine.classify([texts[i] for i in idx])
    return probs


__all__ = ["ClassifyTask", "predict"]
