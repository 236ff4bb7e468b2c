"""classification_metrics against a confusion matrix worked out by hand (3 labels, one never
predicted), and its plain-text report."""
from __future__ import annotations

import pytest

from tinyllm.tasks.classification_metrics import (classification_metrics, confusion_matrix,
                                                  format_classification)

LABELS = ["cat", "dog", "fox"]
#            true cat (4)   true dog (3)  true fox (3): never predicted as fox
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 0, 1, 1, 0, 0, 1]
# rows: true, columns: predicted
CONFUSION = [[3, 1, 0],
             [1, 2, 0],
             [2, 1, 0]]


def test_confusion_matrix_rows_are_true_columns_predicted():
    assert confusion_matrix(Y_TRUE, Y_PRED, 3) == CONFUSION


def test_metrics_equal_the_hand_computed_ones():
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert m["confusion"] == CONFUSION and m["labels"] == LABELS
    assert m["accuracy"] == pytest.approx(5 / 10)              # the diagonal: 3 + 2 + 0
    pc = m["per_class"]
    # cat: 3 right of 6 predicted cat, of 4 true cats
    assert pc["cat"] == pytest.approx({"precision": 3 / 6, "recall": 3 / 4, "f1": 0.6, "support": 4})
    # dog: 2 right of 4 predicted dog, of 3 true dogs; F1 = 2PR / (P + R) = 4/7
    assert pc["dog"] == pytest.approx({"precision": 2 / 4, "recall": 2 / 3, "f1": 4 / 7, "support": 3})
    # fox: never predicted: precision 0 (not a division by zero), recall 0, F1 0
    assert pc["fox"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}
    assert m["macro_f1"] == pytest.approx((0.6 + 4 / 7 + 0.0) / 3)   # = 41/105


def test_a_label_absent_from_the_targets_is_left_out_of_macro_f1():
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS + ["owl"])
    assert m["per_class"]["owl"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(41 / 105)            # the mean over labels with support
    assert m["confusion"][3] == [0, 0, 0, 0] and [r[3] for r in m["confusion"]] == [0, 0, 0, 0]


def test_edge_cases():
    perfect = classification_metrics([0, 1, 2], [0, 1, 2], LABELS)
    assert perfect["accuracy"] == perfect["macro_f1"] == 1.0
    empty = classification_metrics([], [], LABELS)
    assert empty["accuracy"] == empty["macro_f1"] == 0.0
    with pytest.raises(ValueError, match="3 targets but 2 predictions"):
        classification_metrics([0, 1, 2], [0, 1], LABELS)


def test_report_shows_the_numbers_and_the_matrix():
    text = format_classification(classification_metrics(Y_TRUE, Y_PRED, LABELS))
    lines = text.splitlines()
    assert lines[0] == "accuracy  0.5000   macro F1  0.3905"
    assert any(ln.split() == ["dog", "0.5000", "0.6667", "0.5714", "3"] for ln in lines)
    assert any(ln.split() == ["fox", "0.0000", "0.0000", "0.0000", "3"] for ln in lines)
    matrix = lines[lines.index("confusion matrix (rows: true, columns: predicted)") + 1:]
    assert [ln.split() for ln in matrix] == [LABELS, ["cat", "3", "1", "0"], ["dog", "1", "2", "0"],
                                             ["fox", "2", "1", "0"]]
