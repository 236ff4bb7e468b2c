"""The ``instruct`` task: fine-tune a GPT to follow Alpaca-style instructions, and evaluate it.

``tinyllm finetune instruct --data FILE.json --model M --out DIR`` splits the entries 85/10/5
(train/test/validation, seeded), formats each with the prompt template (alpaca by default; a
chat model's own chat template when it has one: each entry becomes one user turn and the
assistant's reply), and trains with the next-token loss on prompt + response + end-of-text through the one training loop
(:class:`tinyllm.train.Trainer`). The model directory records the template, so ``generate``,
``chat`` and the TUI answer with the response only.

``tinyllm eval DIR --data FILE.json --responses out.json`` generates a response for every test entry
(the test split when FILE is the training file, else every entry), writes them beside the entries,
reports the loss, and optionally asks a judge model for a 0-100 score (:mod:`tinyllm.tasks.judge`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from tinyllm.data.text import no_progress
from tinyllm.errors import UserError
from tinyllm.runtime.engine import no_log
from tinyllm.tasks.base import Option, Task, holds_run_lock
from tinyllm.tasks.classify import BACKEND

SPLIT_CHOICES = ("auto", "test", "val", "all")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def base_model(ref: str | None, preset_name: str | None = None):
    """(model, tokenizer, description) to start from: a model directory or name, or a preset shape
    with random weights and the GPT-2 tokenizer."""
    from tinyllm.checkpoint import load_model, load_tokenizer
    from tinyllm.config import PRESETS, preset
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import get_gpt2

    if ref and preset_name:
        raise UserError("give --model (start from a trained model) or --preset (from scratch), "
                        "not both")
    if preset_name:
        tok = get_gpt2()
        return GPT(preset(preset_name, vocab_size=tok.vocab_size)), tok, f"preset:{preset_name}"
    if not ref:
        raise UserError("finetune instruct needs --model (a model directory or name, e.g. from "
                        "`tinyllm import-gpt2` or `tinyllm train`) or --preset "
                        f"({', '.join(PRESETS)}) to start from random weights")
    model = load_model(ref)
    if model.config.n_classes:
        raise UserError(f"{model.path}: a classifier (task {model.meta.get('task')}); instruction "
                        "tuning starts from a language model")
    model.train()
    return model, load_tokenizer(model.path), str(model.path)


class InstructTask(Task):
    name = "instruct"
    description = ("Instruction following: Alpaca JSON/JSONL (instruction, input, output) through a "
                   "prompt template")
    head = "lm"
    data_formats = ("json", "jsonl")
    metric_names = ("loss", "val_loss", "judge_score", "judged")
    model_help = ("Model to start from (path or name); required unless --preset starts from random "
                  "weights.")
    finetune_options = (
        Option("--template", metavar="NAME|FILE",
               help="Prompt template: alpaca, phi3, or a YAML file (default: the model's chat "
                    "template when it has one, else alpaca)."),
        Option("--lora-rank", int, 0, "Train LoRA adapters of this rank instead of every weight "
                                      "(merged into the saved model).", min=0),
        Option("--lora-alpha", float, None, "LoRA alpha (default: the rank)."),
        Option("--mask-prompt", is_flag=True,
               help="Learn only the response: targets inside the prompt are ignored."),
        Option("--epochs", float, 2.0, "Passes over the training split (ignored with --max-steps).",
               min=0, min_open=True, show_default=True),
        Option("--max-steps", int, None, "Optimizer steps in total.", min=1),
        Option("--batch-size", int, 8, "Entries per batch.", min=1, show_default=True),
        Option("--lr", float, None,
               "Peak learning rate [5e-5 from a trained model, 1e-3 from a preset]."),
        Option("--eval-every", int, None,
               "Evaluate (and keep the best model) every N steps [half an epoch].", min=1),
        Option("--seed", int, 123, "Seeds the split, the batch order and dropout.", show_default=True),
        Option("--preset", help="Start from random weights of this shape (tiny, small, ...) with the "
                                "GPT-2 tokenizer, instead of --model."),
        Option("--resume", is_flag=True, help="Continue an interrupted run in --out."),
    )
    eval_options = (
        Option("--responses", "file", None,
               "instruct: JSON file for the entries with the model's responses [DIR/responses.json; "
               "./NAME-responses.json for a bundled or read-only model]."),
        Option("--split", choices=SPLIT_CHOICES, default="auto", show_default=True,
               help="instruct: entries to answer: auto = the test split when --data is the model's "
                    "training file, else all."),
        Option("--max-new-tokens", int, 256, "instruct: longest response (greedy decoding).", min=1,
               show_default=True),
        Option("--judge-url", help="instruct: an OpenAI-compatible endpoint that scores each response "
                                   "0-100, e.g. http://localhost:11434/v1 (Ollama)."),
        Option("--judge-model", str, "llama3", "instruct: the model name the judge server knows.",
               show_default=True),
        BACKEND,
    )

    # ---- data -------------------------------------------------------------------------------
    def read_data(self, path, need_output: bool = True, **options):
        from tinyllm.data.instruction import read_instructions

        return read_instructions(path, need_output=need_output)

    def loss(self, model, batch):
        from tinyllm.models.loss import lm_loss

        return lm_loss(model, batch)

    # ---- fine-tuning ------------------------------------------------------------------------
    @holds_run_lock
    def finetune(self, data, out, model=None, template=None, mask_prompt=False, epochs=2.0,
                 max_steps=None, batch_size=8, lr=None, eval_every=None, seed=123, preset=None,
                 resume=False, overwrite=False, callbacks=(), log=None, lora_rank=0,
                 lora_alpha=None, **_: Any) -> dict[str, Any]:
        """Split ``data`` 85/10/5, fine-tune ``model`` (or a fresh ``preset``) on the train split
        with the template, keep the checkpoint with the best validation loss in ``out``."""
        import copy

        from tinyllm.atomic import atomic_write_text
        from tinyllm.checkpoint import save_model
        from tinyllm.data.templates import CHAT_TEMPLATE_FILE, ChatTemplate, read_chat_template
        from tinyllm.models.lora import merge_lora, set_trainable
        from tinyllm.config import TrainConfig
        from tinyllm.data import instruction as ins
        from tinyllm.data.batching import EpochSampler, StepBatches
        from tinyllm.data.templates import load_template
        from tinyllm.train import Trainer
        from tinyllm.train.pretrain import prepare_out

        log = log or no_log
        out = Path(out)
        entries = self.read_data(data)
        train, test, val = ins.split_entries(entries, seed)
        if not train or not val:
            raise UserError(f"{data}: {len(entries)} entries are too few for an 85/10/5 split "
                            "(need at least 20)")
        resuming = prepare_out(out, resume, overwrite, log, remove=False)  # only checks
        gpt, tok, base = base_model(model, preset)
        own = read_chat_template(gpt.path, tok) if getattr(gpt, "path", None) else None
        tmpl = load_template(template or getattr(gpt, "meta", {}).get("template") or own or "alpaca")
        lora = set_trainable(gpt, "all", lora_rank, lora_alpha) if lora_rank else None
        pad_id, max_len = ins.pad_id_for(tok), gpt.config.context_length
        train_ex, dropped = ins.trainable(ins.encode_entries(train, tok, tmpl), max_len, mask_prompt)
        val_ex, _ = ins.trainable(ins.encode_entries(val, tok, tmpl), max_len, mask_prompt)
        if dropped:
            log(f"warning: {dropped} training entries skipped: their prompt fills the "
                f"{max_len}-token context")
        if not train_ex or not val_ex:
            raise UserError(f"{data}: every prompt is longer than the model's {max_len}-token "
                            "context; use a shorter template or a model with a longer context")

        def loss_on(m, examples) -> float:
            return mean_loss(m, examples, pad_id, max_len, mask_prompt)

        steps_per_epoch = math.ceil(len(train_ex) / batch_size)
        steps = max_steps or max(1, round(epochs * steps_per_epoch))
        peak = lr or (1e-3 if preset else 5e-5)
        cfg = TrainConfig(batch_size=batch_size, max_steps=steps, lr=peak, min_lr=peak / 10,
                          warmup_steps=min(20, steps // 10), weight_decay=0.1, sample_tokens=0,
                          eval_every=eval_every or max(1, steps_per_epoch // 2), seed=seed,
                          out=str(out))
        batches = StepBatches(EpochSampler(len(train_ex), seed),
                              lambda idx: ins.collate([train_ex[i] for i in idx], pad_id, max_len,
                                                      mask_prompt), batch_size)
        train_probe = train_ex[:len(val_ex)]  # a fixed slice of the training split, as big as val

        def eval_fn(m) -> dict[str, Any]:
            return {"train_loss": loss_on(m, train_probe), "val_loss": loss_on(m, val_ex),
                    "sample_prompt": val[0].instruction,
                    "sample": respond(m, tok, tmpl, val[0], max_new_tokens=48)}

        provenance = {"data": str(Path(data).resolve()), "data_sha256": file_sha256(data),
                      "base_model": base, "split_seed": seed, "mask_prompt": mask_prompt,
                      "lora": lora,
                      "n_train": len(train), "n_test": len(test), "n_val": len(val),
                      "val_loss_before": self._loss_before(out, resuming, gpt, loss_on, val_ex)}

        def save_fn(m, directory, info) -> None:
            if lora_rank:
                m = copy.deepcopy(m)
                merge_lora(m)
            save_model(m, tok, directory, task=self.name,
                       extra={"template": tmpl.to_dict(), "train": {**provenance, **info}})
            if isinstance(tmpl, ChatTemplate):  # chat keeps working on the fine-tuned model
                atomic_write_text(Path(directory) / CHAT_TEMPLATE_FILE, tmpl.source)

        trainer = Trainer(gpt, cfg, batches, self.loss, out, eval_fn=eval_fn, save_fn=save_fn,
                          callbacks=callbacks, resume=resuming, train_info=provenance, log=log,
                          longer="give a larger --max-steps (or --epochs) to continue")
        # every check has passed (the Trainer may refuse a finished run): --overwrite clears the
        # old model, then the first file: the held-out test entries beside the model
        # (`tinyllm eval OUT --data OUT/test.json`)
        prepare_out(out, resume, overwrite)
        write_entries(out / "test.json", [e.to_dict() for e in test])
        started = time.time()
        done = trainer.fit()
        return {
            "task": self.name, "model": str(out), "base_model": base, "data": str(data),
            "n": len(val_ex), "template": tmpl.name, "mask_prompt": mask_prompt,
            "split": {"train": len(train), "test": len(test), "val": len(val)},
            "steps": done.get("step"), "seconds": round(time.time() - started, 1),
            "metrics": {"val_loss_before": provenance["val_loss_before"],
                        "val_loss": done.get("best_metric"), "train_loss": done.get("train_loss")},
            "next": f"tinyllm eval {out} --data {data} --responses {out / 'responses.json'}",
        }

    @staticmethod
    def _loss_before(out: Path, resuming: bool, model, loss_on, val_ex) -> float | None:
        """Validation loss of the starting model (a resumed run reads what the first run saved)."""
        if resuming:
            from tinyllm import modeldir

            cfg = out / "last" / modeldir.CONFIG
            meta = modeldir.read_info(cfg.parent).meta if cfg.is_file() else {}
            return (meta.get("train") or {}).get("val_loss_before")
        import torch

        model.eval()
        with torch.no_grad():
            loss = loss_on(model, val_ex)
        model.train()
        return loss

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model_dir, data, responses=None, split="auto", max_new_tokens=256,
                 judge_url=None, judge_model="llama3", backend=None, progress=None, log=None,
                 **_: Any) -> dict[str, Any]:
        """The loss (and validation loss) of the entries, scored on torch like ``lm``'s; the
        responses come from the engine of ``backend`` (default: onnx when exported)."""
        from tinyllm import modeldir
        from tinyllm.checkpoint import load_model, load_tokenizer
        from tinyllm.data import instruction as ins
        from tinyllm.engines import open_engine
        from tinyllm.runtime.sampling import SamplingConfig
        from tinyllm.tasks.judge import Judge

        log, progress = log or no_log, progress or no_progress
        info = modeldir.find(model_dir)
        if info.task != self.name:
            raise UserError(f"{info.path}: task is {info.task!r}, not instruct")
        judge = Judge(judge_url, judge_model) if judge_url else None
        if judge is not None:  # a judge that cannot answer is said before the first entry
            log(f"checking the judge at {judge_url} ({judge_model})")
            judge.check()
        prov = info.meta.get("train") or {}
        entries = self.read_data(data)
        same = prov.get("data_sha256") == file_sha256(data)
        if split == "auto":
            split = "test" if same else "all"
        if split != "all" and not same:
            raise UserError(f"{data}: --split {split} needs the model's training file "
                            f"({prov.get('data', 'unknown')}); use --split all")
        val = []  # the validation split, known only for the model's training file
        if same:
            _, test, val = ins.split_entries(entries, prov.get("split_seed", 123))
            entries = {"test": test, "val": val, "all": entries}[split]
        log(f"answering {len(entries)} entries ({split}) of {data}")

        # the loss first, then the engine: one copy of the weights in memory at a time
        model, tok, tmpl = load_model(info.path), load_tokenizer(info.path), info.meta.get("template")
        pad_id, max_len = ins.pad_id_for(tok), model.config.context_length
        mask = bool(prov.get("mask_prompt", False))
        loss = mean_loss(model, ins.encode_entries(entries, tok, tmpl), pad_id, max_len, mask,
                         progress=progress, description="loss")
        val_loss = mean_loss(model, ins.encode_entries(val, tok, tmpl), pad_id, max_len, mask,
                             progress=progress, description="validation loss") if val else None
        del model

        engine = open_engine(info.path, backend)
        cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
        rows = [{**e.to_dict(), "model_response": answer_text(engine, e.instruction, e.input, cfg)}
                for e in tracked(entries, "generating", progress)]
        out = Path(responses) if responses else default_responses_path(info, log)
        write_entries(out, rows)

        metrics: dict[str, Any] = {"loss": loss, "val_loss": val_loss}
        if judge is not None:
            from tinyllm.data.templates import format_prompt

            for row in tracked(rows, "judging", progress):
                row["score"] = judge.score(format_prompt(tmpl, row["instruction"], row["input"]),
                                           row["output"], row["model_response"])
            write_entries(out, rows)
            scores = [r["score"] for r in rows if r["score"] is not None]
            metrics["judge_score"] = sum(scores) / len(scores) if scores else None
            metrics["judged"] = len(scores)
        return {"task": self.name, "model": str(info.path), "data": str(data), "split": split,
                "n": len(rows), "backend": engine.backend, "responses": str(out),
                "metrics": metrics}

    def answer(self, engine, inputs: list[str]) -> list[str]:
        """The response text (only) to each instruction."""
        from tinyllm.runtime.sampling import SamplingConfig

        cfg = SamplingConfig(max_new_tokens=256, temperature=0.0)
        return [answer_text(engine, text, "", cfg) for text in inputs]

    def format_report(self, report: dict[str, Any]) -> str:
        lines = [super().format_report(report)]
        if report.get("responses"):
            lines.append(f"  responses        {report['responses']}")
        if report.get("next"):
            lines.append(f"next: {report['next']}")
        return "\n".join(lines)


# ---- helpers shared by finetune and evaluate ------------------------------------------------
def mean_loss(model, examples, pad_id: int, max_len: int, mask_prompt: bool,
              batch_size: int = 8, progress=None, description: str = "loss") -> float:
    """The LM loss per target token over encoded ``examples`` (token-weighted; the prompt's
    targets left out with ``mask_prompt``), advancing ``progress`` by entry when given."""
    from tinyllm.data.instruction import batches
    from tinyllm.models.loss import mean_lm_loss

    parts = batches(examples, batch_size, pad_id, max_len, mask_prompt)
    if progress is None:
        return mean_lm_loss(model, parts)
    with progress(len(examples), description, unit="entries") as advance:
        def counted():
            for at, batch in zip(range(0, len(examples), batch_size), parts):
                yield batch
                advance(min(batch_size, len(examples) - at))
        return mean_lm_loss(model, counted())


def respond(model, tokenizer, template, entry, max_new_tokens: int = 256) -> str:
    """Greedy response of a torch model to one entry (used for the samples during training)."""
    from tinyllm.engines.torch_engine import generate_text
    from tinyllm.runtime.sampling import SamplingConfig
    from tinyllm.data.templates import extract_response, format_prompt, stop_strings

    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                         stop=stop_strings(template))
    text = generate_text(model, tokenizer, format_prompt(template, entry.instruction, entry.input), cfg)
    return extract_response(template, text)


def answer_text(engine, instruction: str, input: str, cfg) -> str:
    """An instruct engine's whole response (greedy with ``cfg``), stripped."""
    from tinyllm.data.templates import extract_response

    return extract_response(engine.template, "".join(engine.generate(instruction, cfg, input=input)))


def write_entries(path: Path, rows: list[dict]) -> None:
    """A JSON array of entries, written atomically."""
    from tinyllm.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")


def tracked(items: list, description: str, progress):
    """Iterate over ``items``, advancing a ``progress`` bar (see Task.finetune) by one each."""
    with progress(len(items), description, unit="entries") as advance:
        for item in items:
            yield item
            advance(1)


def default_responses_path(info, log=no_log) -> Path:
    """``DIR/responses.json``, or ``./NAME-responses.json`` when the model directory is bundled
    with the package or not writable (said through ``log``)."""
    model_dir = Path(info.path)
    if info.source != "bundled" and os.access(model_dir, os.W_OK):
        return model_dir / "responses.json"
    out = Path(f"{model_dir.name}-responses.json")
    log(f"{model_dir} is read-only: responses go to {out}")
    return out
