"""HVAC system status as a tinyllm task: "Good" or "Bad" from a question and a sensor reading.

Data is JSONL, one record per line: ``{"question": ..., "reading": ..., "status": "Good"|"Bad"}``
(the shape of the seed project's HVAC data). The model sees ``question + " " + reading``, so at
prediction time a line of text in that form (``tinyllm classify --model DIR``) gets a status.
Everything else (training, LoRA, freezing, metrics, `tinyllm eval`) is the built-in classifier's.
"""
from __future__ import annotations

import json
from pathlib import Path

from tinyllm.data.classification import Example
from tinyllm.data.files import read_jsonl
from tinyllm.errors import DataError
from tinyllm.tasks.classify import ClassifyTask

SAMPLE = Path(__file__).parent / "data" / "hvac_status.jsonl"
STATUSES = ("Good", "Bad")


def record_text(question: str, reading: str) -> str:
    """The model's input for one record."""
    return f"{question.strip()} {reading.strip()}".strip()


def read_hvac(path: str | Path) -> list[Example]:
    """Records of a JSONL file; errors name the file and line."""
    path = Path(path)
    out = []
    for i, rec in read_jsonl(path):
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{i}: expected an object with question, reading and status")
        missing = [k for k in ("question", "reading", "status") if k not in rec]
        if missing:
            raise DataError(f"{path}:{i}: missing column {missing[0]!r} "
                            "(each record needs question, reading and status)")
        status = str(rec["status"]).strip().capitalize()
        if status not in STATUSES:
            raise DataError(f"{path}:{i}: unknown status {rec['status']!r}; expected Good or Bad")
        out.append(Example(record_text(str(rec["question"]), str(rec["reading"])), status, i))
    if not out:
        raise DataError(f"{path}: empty file (no records)")
    return out


class HVACTask(ClassifyTask):
    name = "hvac"
    description = "HVAC system status Good/Bad from a question + sensor reading (JSONL)"
    data_formats = ("jsonl",)
    labels = STATUSES
    finetune_options = tuple(o for o in ClassifyTask.finetune_options
                             if o.name not in ("text_col", "label_col"))
    eval_options = tuple(o for o in ClassifyTask.eval_options if o.name not in ("text_col", "label_col"))

    def read_data(self, path, text_col=None, label_col=None, **_):
        """question/reading/status records (the written test split is plain text/label JSONL)."""
        if text_col or label_col:
            return super().read_data(path, text_col, label_col)
        return read_hvac(path)

    def write_test(self, out, test, text_col, label_col):
        """The test split in this task's own format (so `tinyllm eval DIR --data DIR/test.jsonl`)."""
        from tinyllm.atomic import atomic_write_text

        path = Path(out) / "test.jsonl"
        atomic_write_text(path, "".join(
            json.dumps({"question": "", "reading": e.text, "status": e.label}, ensure_ascii=False) + "\n"
            for e in test))
        return path, {}
