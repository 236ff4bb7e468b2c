"""Classification metrics: accuracy, per-class precision/recall/F1, confusion matrix (no torch)."""
from __future__ import annotations

from typing import Any


def confusion_matrix(y_true: list[int], y_pred: list[int], n_classes: int) -> list[list[int]]:
    """``m[t][p]`` counts examples of true class t predicted as p."""
    m = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(y_true, y_pred):
        m[t][p] += 1
    return m


def classification_metrics(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} targets but {len(y_pred)} predictions")
    n = len(labels)
    m = confusion_matrix(y_true, y_pred, n)
    per_class = {}
    for c, name in enumerate(labels):
        tp = m[c][c]
        predicted = sum(m[t][c] for t in range(n))
        support = sum(m[c])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    present = [v for v in per_class.values() if v["support"]]
    correct = sum(m[c][c] for c in range(n))
    return {
        "accuracy": correct / len(y_true) if y_true else 0.0,
        "macro_f1": sum(v["f1"] for v in present) / len(present) if present else 0.0,
        "per_class": per_class,
        "confusion": m,
        "labels": list(labels),
    }


MATRIX_LABELS = 20   # the text report prints the confusion matrix up to this many labels
TOP_CONFUSIONS = 10  # beyond that, the most frequent (true, predicted) mistakes instead


def top_confusions(metrics: dict[str, Any], n: int = TOP_CONFUSIONS) -> list[tuple[str, str, int]]:
    """The ``n`` most frequent mistakes as (true label, predicted label, count), most first."""
    labels, m = metrics["labels"], metrics["confusion"]
    pairs = [(labels[t], labels[p], c) for t, row in enumerate(m) for p, c in enumerate(row)
             if t != p and c]
    return sorted(pairs, key=lambda x: -x[2])[:n]


def format_classification(metrics: dict[str, Any]) -> str:
    """A plain-text report: accuracy, per-class table and the confusion matrix (rows = true).

    With more than ``MATRIX_LABELS`` labels the matrix would be unreadable (1,000 labels: a
    million cells): the report lists the most frequent confusions instead; ``--json`` keeps the
    whole matrix."""
    labels = metrics["labels"]
    w = max([len(x) for x in labels] + [5])
    lines = [f"accuracy  {metrics['accuracy']:.4f}   macro F1  {metrics['macro_f1']:.4f}", "",
             f"{'class':<{w}}  precision  recall     f1  support"]
    for name, v in metrics["per_class"].items():
        lines.append(f"{name:<{w}}  {v['precision']:9.4f}  {v['recall']:6.4f}  {v['f1']:.4f}  "
                     f"{v['support']:7d}")
    if len(labels) > MATRIX_LABELS:
        mistakes = top_confusions(metrics)
        lines += ["", f"most frequent confusions (of {len(labels)} labels; the confusion matrix "
                      f"is in --json)"]
        if not mistakes:
            lines.append("  none")
        tw = max([len(t) for t, _, _ in mistakes] + [4])
        pw = max([len(p) for _, p, _ in mistakes] + [4])
        for t, p, c in mistakes:
            lines.append(f"  {t:<{tw}}  predicted as  {p:<{pw}}  {c:>7d}")
        return "\n".join(lines)
    cw = max([len(x) for x in labels] + [len(str(c)) for row in metrics["confusion"] for c in row])
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * w + "  " + "  ".join(f"{x:>{cw}}" for x in labels)]
    for name, row in zip(labels, metrics["confusion"]):
        lines.append(f"{name:<{w}}  " + "  ".join(f"{c:>{cw}}" for c in row))
    return "\n".join(lines)
