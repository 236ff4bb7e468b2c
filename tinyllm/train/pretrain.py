"""Pretraining: tokenizer, token file, windows, loss, eval and sample, on the Trainer.

A decoder learns to predict the next token (``objective: lm``); an encoder to recover masked
tokens (``objective: mlm``: :mod:`tinyllm.data.masking` and :mod:`tinyllm.train.mlm`), from the same
token file and the same window sampling.

``train_lm(run)`` is what ``tinyllm train`` runs (the TUI can call it too, in a thread, and stop it
with ``trainer.request_stop()`` through the ``on_trainer`` hook).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch

from tinyllm import runlock
from tinyllm.config import TrainConfig, write_yaml
from tinyllm.atomic import open_regular
from tinyllm.data.batching import EpochSampler, RandomSampler, StepBatches
from tinyllm.data.text import (DataError, SlidingWindowDataset, default_cache_dir, eval_plans,
                               iter_text_chunks, no_progress, prepare_tokens, split_tokens)
from tinyllm.errors import UserError
from tinyllm.models.loss import lm_loss, perplexity
from tinyllm.runtime.engine import Log, no_log
from tinyllm.tokenizer import (BPETokenizer, CharTokenizer, Tokenizer, WordPieceTokenizer, from_spec,
                               get_gpt2)
from tinyllm.train import ddp
from tinyllm.train.runconfig import RUN_FILE, RunConfig, check_objective
from tinyllm.train.state import state_path
from tinyllm.train.events import METRICS_FILE
from tinyllm.train.trainer import LAST_DIR, Trainer


# ---- tokenizer --------------------------------------------------------------------------------
def _source_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def build_tokenizer(cfg: TrainConfig, progress: Callable | None = None) -> Tokenizer:
    """gpt2 by name; char/bpe/wordpiece trained on the corpus (cached by file + settings in the
    cache dir).

    ``progress`` shows the reading (as :func:`tinyllm.data.text.prepare_tokens` takes it)."""
    if cfg.tokenizer == "gpt2":
        return get_gpt2()
    path = Path(cfg.data)
    open_regular(path, "text file").close()  # refused as every reader refuses it
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the corpus is empty")
    tag = "char" if cfg.tokenizer == "char" else f"{cfg.tokenizer}{cfg.bpe_vocab_size}"
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    tdir = cache / f"{path.stem}-{_source_key(path)}.{tag}"
    spec = {"type": cfg.tokenizer, "file": "tokenizer.json"}
    if (tdir / "tokenizer.json").is_file():
        return from_spec(spec, tdir)
    size = path.stat().st_size

    def texts() -> Iterable[str]:
        with (progress or no_progress)(size, f"reading {path.name}") as advance:
            done = 0
            for end, text in iter_text_chunks(path):
                advance(end - done)
                done = end
                yield text

    if cfg.tokenizer == "char":
        chars: set[str] = set()
        for text in texts():
            chars.update(text)
        if not "".join(chars).strip():
            raise DataError(f"{path}: the corpus is empty (no text besides whitespace)")
        tok: Tokenizer = CharTokenizer(sorted(chars))
    elif cfg.tokenizer == "wordpiece":
        tok = WordPieceTokenizer.train(texts(), cfg.bpe_vocab_size)
    else:
        tok = BPETokenizer.train(texts(), cfg.bpe_vocab_size)
    tdir.mkdir(parents=True, exist_ok=True)
    tok.save(tdir)
    return tok


def _tokenizer_bytes(tok: Tokenizer) -> bytes:
    files = {name: data.decode("utf-8") for name, data in tok.saved_files().items()}
    return json.dumps({"spec": tok.spec(), "files": files}).encode()


def _tokenizer_from_bytes(data: bytes) -> Tokenizer:
    obj = json.loads(data)
    with tempfile.TemporaryDirectory() as d:
        for name, text in obj["files"].items():
            (Path(d) / name).write_text(text, encoding="utf-8")
        return from_spec(obj["spec"], d)


# ---- eval ---------------------------------------------------------------------------------------
def make_lm_eval(splits: dict[str, SlidingWindowDataset], cfg: TrainConfig, tok: Tokenizer,
                 device_of: Callable[[], torch.device]) -> Callable:
    """eval_fn(model) -> {"<split>_loss", "<split>_ppl", "sample", "sample_prompt"}.

    Each split is scored on the same ``eval_batches * batch_size`` windows every time (evenly spread);
    DDP ranks share the batches and sum their losses. Under FSDP every forward pass is a collective
    (the shards are gathered), so every rank scores every batch: the same number of passes.
    """
    dist = ddp.info()
    split = dist.enabled and not cfg.fsdp
    plans = eval_plans(splits, cfg.eval_batches * cfg.batch_size)

    def eval_fn(model) -> dict:
        device = device_of()
        out: dict = {}
        for name, ds in splits.items():
            idx = plans[name]
            acc = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses * n, n)
            for b, start in enumerate(range(0, len(idx), cfg.batch_size)):
                if split and b % dist.world_size != dist.rank:
                    continue
                x, y = (t.to(device) for t in ds.batch(idx[start:start + cfg.batch_size]))
                acc[0] += lm_loss(model, (x, y)).double() * len(x)
                acc[1] += len(x)
            if split:
                ddp.all_reduce_sum(acc)
            loss = float(acc[0] / acc[1])
            out[f"{name}_loss"] = loss
            out[f"{name}_ppl"] = perplexity(loss)
        if cfg.sample_tokens and (dist.is_main or cfg.fsdp):  # FSDP: every rank runs the model
            from tinyllm.engines.torch_engine import SamplingConfig, generate_text

            sc = SamplingConfig(max_new_tokens=cfg.sample_tokens, temperature=0.8, top_k=200,
                                seed=cfg.seed)
            out["sample_prompt"] = cfg.sample_prompt
            out["sample"] = generate_text(model, tok, cfg.sample_prompt, sc)
        return out

    return eval_fn


# ---- the run ------------------------------------------------------------------------------------
def prepare_out(out: Path, resume: bool, overwrite: bool, log: Log | None = None,
                remove: bool = True) -> bool:
    """Check the output directory of a training run; returns whether there is a state to resume
    from. Call it while holding the folder's run lock (:func:`tinyllm.runlock.acquire`).

    ``resume`` continues the run in ``out`` (with nothing to resume from, a note to ``log`` and a
    new run). Otherwise ``out`` must be empty or new: a train state, a model or any other file
    there is refused (exit 2) unless ``overwrite``, which removes the old run's and model's files
    (:func:`tinyllm.modeldir.prepare_output`). Temp files of an interrupted write are removed.

    ``remove=False`` only checks (and returns the same answer): a command that still has checks
    to make calls it first, then again with ``remove=True`` right before its first write.
    """
    from tinyllm.atomic import remove_stale_temps
    from tinyllm.modeldir import folder_contents, prepare_output, remove_files

    out = Path(out)
    log = log or no_log
    if resume and overwrite:
        raise UserError("give --resume (continue the run) or --overwrite (start over), not both")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a directory; --out names the directory the run "
                        "writes its model to")
    if remove:
        remove_stale_temps(out)
    has_state = state_path(out).is_file()
    if resume:
        if has_state:
            return True
        log(f"note: {out} has no train state yet; starting a new run")
        started = {RUN_FILE, METRICS_FILE, "tokenizer.json"}  # a run stopped before it saved
        if set(folder_contents(out)) <= started:
            if remove:
                remove_files(out, started)
            return False
    if has_state and not overwrite:
        raise UserError(f"{out}: already holds a training run; use --resume to continue it or "
                        f"--overwrite to start over")
    prepare_output(out, overwrite, log=log, remove=remove)
    return False


def train_lm(run: RunConfig, resume: bool = False, overwrite: bool = False,
             callbacks: Iterable[Callable[[dict], None]] = (), progress: Callable | None = None,
             log: Log | None = None, on_trainer: Callable[[Trainer], None] | None = None) -> dict:
    """Pretrain (or continue training) a GPT, or an encoder with ``objective: mlm``, on
    ``run.train.data``; returns the ``done`` event.

    What people see comes in from the caller and is silent by default: ``callbacks`` get the
    Trainer's events (a progress bar), ``progress`` shows reading and tokenising the corpus (on
    rank 0), ``log`` gets notes.
    """
    dist = ddp.info()
    with runlock.acquire(run.out) if dist.is_main else contextlib.nullcontext():  # rank 0 holds it
        return _train_lm(run, resume, overwrite, callbacks, progress, log, on_trainer)


def _train_lm(run: RunConfig, resume: bool, overwrite: bool, callbacks, progress, log, on_trainer
              ) -> dict:
    cfg = run.train
    out = run.out
    dist = ddp.info()
    log = log or no_log
    progress = progress if dist.is_main else None
    if cfg.init_from and not resume:
        from tinyllm.modeldir import resolve

        if resolve(cfg.init_from).resolve() == Path(out).resolve():
            raise UserError(f"{out}: is the model this run starts from (train.init_from); choose "
                            f"another --out")
    resuming = prepare_out(out, resume, overwrite, log, remove=False) if dist.is_main else resume
    joined = False
    try:
        from tinyllm.train.device import resolve_device

        device = resolve_device(cfg.device, dist.local_rank)
        dist, joined = ddp.setup(cfg.ddp_backend, device.type)

        # tokenizer: from the run being resumed, the starting model, or built on rank 0 and shared
        if resuming and (out / LAST_DIR / "config.yaml").is_file():
            from tinyllm.checkpoint import load_tokenizer

            tok = load_tokenizer(out / LAST_DIR)
        elif cfg.init_from:
            from tinyllm.checkpoint import load_tokenizer

            tok = load_tokenizer(cfg.init_from)
        elif dist.enabled:
            data = _tokenizer_bytes(build_tokenizer(cfg, progress)) if dist.is_main else None
            tok = _tokenizer_from_bytes(ddp.broadcast_bytes(data, device))
        else:
            tok = build_tokenizer(cfg, progress)

        # token file: tokenised once per machine (local rank 0), then opened by the others
        if dist.local_rank == 0:
            tokens = prepare_tokens(cfg.data, tok, cfg.cache_dir, progress=progress, log=log)
        ddp.barrier()
        if dist.local_rank != 0:
            tokens = prepare_tokens(cfg.data, tok, cfg.cache_dir)

        # model
        torch.manual_seed(cfg.seed)
        if cfg.init_from:
            from tinyllm.checkpoint import load_model

            model = load_model(cfg.init_from)
            model_cfg = model.config
            if model_cfg.vocab_size < tok.vocab_size:
                raise UserError(f"{cfg.init_from}: vocabulary of {model_cfg.vocab_size} is smaller "
                                f"than its tokenizer's {tok.vocab_size}")
            check_objective(cfg.objective, getattr(model_cfg, "family", None), str(cfg.init_from))
        else:
            vocab = max(int(run.model.get("vocab_size") or 0), tok.vocab_size)
            model_cfg = run.model_config(vocab_size=vocab)
            from tinyllm.checkpoint import build_model

            model = build_model(model_cfg)
        mlm = cfg.objective == "mlm"
        if mlm and not isinstance(tok, WordPieceTokenizer):
            raise UserError(f"objective mlm needs a WordPiece tokenizer ([CLS], [SEP], [MASK]), not "
                            f"{tok.name}: drop --tokenizer (or use --tokenizer wordpiece)")
        if mlm and getattr(model, "mlm_head", None) is None:
            raise UserError(f"{cfg.init_from}: this encoder has no masked-LM head to train")
        seq_len = cfg.seq_len or model_cfg.context_length
        if seq_len > model_cfg.context_length:
            raise UserError(f"train.seq_len {seq_len} is longer than the model's context_length "
                            f"{model_cfg.context_length}")

        # data splits and batches (an encoder's window is [CLS] + seq_len - 2 tokens + [SEP])
        window = seq_len - 2 if mlm else seq_len
        train_span, val_span = split_tokens(tokens, cfg.val_fraction)
        name = str(cfg.data)
        train_eval = SlidingWindowDataset(train_span, window, window, f"{name} (training split)")
        splits = {"train": train_eval}
        if cfg.val_fraction > 0:
            splits["val"] = SlidingWindowDataset(
                val_span, window, window,
                f"{name} (validation split, the last {cfg.val_fraction:.0%}; --set val_fraction=0 "
                f"to train without one)")
        if cfg.sampling == "random":
            train_ds = SlidingWindowDataset(train_span, window, 1, name)
            sampler = RandomSampler(len(train_ds), cfg.seed, span=window)
        else:
            train_ds = SlidingWindowDataset(train_span, window, cfg.stride or window, name)
            sampler = EpochSampler(len(train_ds), cfg.seed)
        if mlm:
            from tinyllm.data.masking import MaskedBatches

            batches = MaskedBatches(sampler, train_ds, tok, model_cfg.vocab_size, cfg.batch_size,
                                    cfg.grad_accum, dist.rank, dist.world_size, cfg.seed)
        else:
            batches = StepBatches(sampler, train_ds.batch, cfg.batch_size, cfg.grad_accum,
                                  dist.rank, dist.world_size)

        provenance = {"data": str(cfg.data), "objective": cfg.objective, "tokenizer": cfg.tokenizer,
                      "corpus_tokens": int(tokens.n), "train_tokens": int(train_span.n),
                      "val_tokens": int(val_span.n), "seq_len": seq_len}

        def save_fn(model, directory: Path, info: dict) -> None:
            from tinyllm.checkpoint import save_model

            save_model(model, tok, directory, task="mlm" if mlm else "lm", extra={"train": info})

        holder: list[Trainer] = []
        if mlm:
            from tinyllm.train.mlm import make_mlm_eval, mlm_loss

            loss_fn = mlm_loss
            eval_fn = make_mlm_eval(splits, cfg, tok, model_cfg.vocab_size, lambda: holder[0].device)
        else:
            loss_fn = lm_loss
            eval_fn = make_lm_eval(splits, cfg, tok, lambda: holder[0].device)
        trainer = Trainer(model, cfg, batches, loss_fn, out, eval_fn=eval_fn, save_fn=save_fn,
                          callbacks=callbacks, resume=resuming, train_info=provenance, log=log)
        holder.append(trainer)
        if dist.is_main:  # the Trainer accepted the run (a resume may be refused), every check has
            prepare_out(out, resume, overwrite)  # passed: --overwrite clears the old run, then writes
            write_yaml(out / RUN_FILE, {"name": run.name, "model": _model_dict(model_cfg),
                                        "train": {**run.to_dict()["train"], "out": str(out)}})
        if on_trainer is not None:
            on_trainer(trainer)
        done = trainer.fit()
        ddp.barrier()
        return done
    finally:
        if joined:
            ddp.cleanup()


def _model_dict(model_cfg) -> dict:
    from tinyllm.config import to_dict

    return to_dict(model_cfg)


__all__ = ["train_lm", "make_lm_eval", "build_tokenizer", "prepare_out"]
