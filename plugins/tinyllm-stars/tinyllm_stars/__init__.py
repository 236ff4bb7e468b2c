"""Star ratings (1-5) as a tinyllm task: its own data format and its own metrics.

Data is fastText's supervised format, one review per line: ``__label__4 Works well, though ...``.
A rating is ordinal, so besides accuracy the task reports how far off the predictions are:
mean absolute error in stars, the share within one star, and quadratic weighted kappa (agreement
that punishes a 1-for-5 mistake more than a 4-for-5 one). Training and the model are the built-in
classifier's (five classes).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tinyllm.data.classification import Example
from tinyllm.data.files import iter_lines, read_text
from tinyllm.errors import DataError
from tinyllm.tasks.classify import ClassifyTask

SAMPLE = Path(__file__).parent / "data" / "reviews.ft"
STARS = ("1", "2", "3", "4", "5")
_LABEL = re.compile(r"__label__(\S+)\s*")


def read_fasttext(path: str | Path) -> list[Example]:
    """``__label__N text`` lines (N in 1..5); errors name the file and line."""
    path = Path(path)
    out = []
    for i, line in iter_lines(read_text(path)):
        line = line.strip()
        labels = _LABEL.findall(line)
        if not labels:
            raise DataError(f"{path}:{i}: no __label__ prefix (expected '__label__N text')")
        if len(labels) > 1:
            raise DataError(f"{path}:{i}: {len(labels)} labels; a review has one star rating")
        star = labels[0].strip()
        if star not in STARS:
            raise DataError(f"{path}:{i}: unknown label {star!r}; stars are 1 to 5")
        out.append(Example(_LABEL.sub("", line, count=1).strip(), star, i))
    if not out:
        raise DataError(f"{path}: empty file (no reviews)")
    return out


def ordinal_metrics(pred: list[int], true: list[int], k: int = len(STARS)) -> dict[str, float]:
    """MAE (in classes), share within one class, and quadratic weighted kappa."""
    n = len(true)
    if not n:
        return {"mae": 0.0, "within_one": 0.0, "qwk": 0.0}
    diffs = [abs(p - t) for p, t in zip(pred, true)]
    observed = [[0] * k for _ in range(k)]
    for p, t in zip(pred, true):
        observed[t][p] += 1
    hist_t = [sum(row) for row in observed]
    hist_p = [sum(observed[t][p] for t in range(k)) for p in range(k)]
    w = [[(i - j) ** 2 / (k - 1) ** 2 for j in range(k)] for i in range(k)]
    num = sum(w[i][j] * observed[i][j] for i in range(k) for j in range(k))
    den = sum(w[i][j] * hist_t[i] * hist_p[j] / n for i in range(k) for j in range(k))
    return {"mae": sum(diffs) / n, "within_one": sum(d <= 1 for d in diffs) / n,
            "qwk": 1.0 - num / den if den else 1.0}


class StarsTask(ClassifyTask):
    name = "stars"
    description = "Review ratings 1-5 from fastText files; accuracy, MAE, within-one, weighted kappa"
    data_formats = ("fasttext",)
    labels = STARS
    metric_names = ("accuracy", "mae", "within_one", "qwk")
    finetune_options = tuple(o for o in ClassifyTask.finetune_options
                             if o.name not in ("text_col", "label_col"))
    eval_options = tuple(o for o in ClassifyTask.eval_options if o.name not in ("text_col", "label_col"))

    def read_data(self, path, text_col=None, label_col=None, **_):
        return read_fasttext(path)

    def write_test(self, out, test, text_col, label_col):
        """The test split as fastText lines: `tinyllm eval DIR --data DIR/test.ft`."""
        from tinyllm.atomic import atomic_write_text

        path = Path(out) / "test.ft"
        atomic_write_text(path, "".join(f"__label__{e.label} {' '.join(e.text.split())}\n"
                                        for e in test))
        return path, {}

    def metrics(self, predictions, targets, labels=None) -> dict[str, Any]:
        m = super().metrics(predictions, targets, labels)
        m.update(ordinal_metrics(predictions, targets))
        return m
