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

import numpy as np

from tinyllm import modeldir
from tinyllm.config import read_yaml, write_yaml
from tinyllm.data import classification as cdata
from tinyllm.data.classification import Example
from tinyllm.errors import UserError
from tinyllm.tasks.base import DataError, Option, Task, holds_run_lock
from tinyllm.tasks.classification_metrics import classification_metrics, format_classification

_COLUMNS = (
    Option("--text-col", help="Text column: header name or 1-based number (default: text; a "
                              "headerless two-column file is label<TAB>text)."),
    Option("--label-col", help="Label column: header name or 1-based number (default: label)."),
)
_BATCH = Option("--batch-size", int, None, "Examples per batch (finetune: 16; eval: 64).", min=1)
BACKEND = Option("--backend", choices=("torch", "onnx"),
                 help="Run the model on torch or ONNX Runtime (default: onnx if exported).")


def parse_split(value: str) -> tuple[float, float, float]:
    """``--split``: "0.7,0.1,0.2" -> (0.7, 0.1, 0.2)."""
    try:
        parts = tuple(float(x) for x in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ValueError("expected three fractions like 0.7,0.1,0.2")
    return parts


class ClassifyTask(Task):
    name = "classify"
    description = "Text classification: a label per text, from TSV/CSV/JSONL (SMS spam, ...)"
    head = "classify"
    data_formats = ("tsv", "csv", "jsonl", "json")
    metric_names = ("accuracy", "macro_f1")
    labels: tuple[str, ...] = ()      # fixed label order (plugins); empty: discovered from the data, sorted
    default_preset = "tiny"           # model shape when training from scratch (no --model)
    model_help = ("Model to start from (path or name) [default: none: a small model trained from "
                  "scratch, shaped by --preset, with a BPE tokenizer trained on the data].")

    finetune_options = (
        *_COLUMNS,
        Option("--balance", choices=("none", "undersample"), default="none",
               help="undersample: keep as many examples of every label as the rarest has."),
        Option("--train-left-out", is_flag=True,
               help="With --balance undersample: add the examples it leaves out to the training "
                    "split only (validation and test stay balanced)."),
        Option("--class-weight", choices=("none", "balanced"), default="none",
               help="balanced: weight the loss by inverse label frequency in training."),
        Option("--train-layers", str, "all", "Which transformer blocks train: all, last-N (plus "
                                             "final norm and head), or head (the head alone; the "
                                             "model stays frozen).", show_default=True),
        Option("--lora-rank", int, 0, "LoRA adapters of this rank on the trained blocks (0 = off); "
                                      "merged on save.", min=0),
        Option("--lora-alpha", float, None, "LoRA alpha (default: the rank)."),
        Option("--pooling", choices=("last", "mean", "cls"), default=None,
               help="Head input: the last real token (decoders' default), [CLS] through the "
                    "pooler (encoders' default), or the mean of all tokens."),
        Option("--epochs", float, 5.0, "Passes over the training split (a fraction allowed).",
               min=0, min_open=True, show_default=True),
        Option("--dropout", float, None, "Dropout while training (default: the model's; 0.1 from "
                                         "scratch).", min=0, max=1, max_open=True),
        _BATCH,
        Option("--lr", float, None, "Peak learning rate (default: 5e-5 from a model, 1e-3 from "
                                    "scratch)."),
        Option("--split", str, "0.7,0.1,0.2", "Train/validation/test fractions (stratified by "
                                              "label).", show_default=True, parse=parse_split),
        Option("--seed", int, 123, "Seeds the split, the initial weights, the batch order and "
                                   "dropout.", show_default=True),
        Option("--preset", help="Model shape when training from scratch (no --model); default tiny."),
        Option("--allow-many-labels", is_flag=True,
               help="Accept a label column with nearly one distinct value per row."),
        Option("--resume", is_flag=True, help="Continue an interrupted run in --out."),
    )
    eval_options = (*_COLUMNS, _BATCH, BACKEND)

    # ---- data ---------------------------------------------------------------------------------
    def read_data(self, path, text_col=None, label_col=None, log=None, **_: Any) -> list[Example]:
        """Examples from a TSV/CSV/JSONL/JSON file; plugins override this for their own formats.
        Columns chosen by content are said through ``log``."""
        return cdata.read_examples(path, text_col, label_col, log=log)

    def label_set(self, examples: list[Example], path, allow_many_labels: bool = False) -> list[str]:
        """The class names: the task's own, or those of the data (sorted; refused when there is
        nearly one per row, unless ``allow_many_labels``)."""
        if self.labels:
            cdata.check_labels(examples, list(self.labels), path)
            return list(self.labels)
        if not allow_many_labels:
            cdata.check_label_spread(examples, path)
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

    @holds_run_lock
    def finetune(self, data, out, model=None, text_col=None, label_col=None, balance="none",
                 train_layers="all", lora_rank=0, lora_alpha=None, pooling=None, epochs=5,
                 batch_size=None, lr=None, split=(0.7, 0.1, 0.2), seed=123, preset=None,
                 resume=False, overwrite=False, train_left_out=False, class_weight="none",
                 dropout=None, allow_many_labels=False,
                 extra_train: list[Example] | None = None, vocab_size: int = 4096,
                 model_overrides: dict | None = None, save_dtype=None, precision: str = "auto",
                 callbacks=(), log=None, **_: Any) -> dict[str, Any]:
        """Fine-tune (or train from scratch) and report the test split's metrics.

        ``extra_train`` adds examples to the training split only (never validated or tested);
        ``model_overrides`` changes ModelConfig fields of a from-scratch model; ``precision`` is
        the training loop's (``train.precision``).
        """
        from tinyllm.tasks import classify_train
        from tinyllm.train.pretrain import prepare_out

        started = time.time()
        examples = self.read_data(data, text_col, label_col, log=log)
        labels = self.label_set(examples, data, allow_many_labels)
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
        asked = (Path(out), resume, overwrite)
        resume = prepare_out(*asked, log, remove=False)  # refused here: nothing was written
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
            callbacks=list(callbacks), log=log, info=info, class_weight=class_weight,
            dropout=dropout, precision=precision, prepare_out=lambda: prepare_out(*asked))
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
                 backend=None, log=None, **_: Any) -> dict[str, Any]:
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
        examples = self.read_data(data, text_col, label_col, log=log)
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
    from tinyllm.runtime.textbatch import length_batches

    n_classes = len(engine.labels)
    probs = np.zeros((len(texts), n_classes), dtype=np.float64)
    for idx in length_batches(texts, batch_size):
        probs[idx] = engine.classify([texts[i] for i in idx])
    return probs


__all__ = ["ClassifyTask", "predict"]
