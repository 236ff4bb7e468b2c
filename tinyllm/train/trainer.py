"""The one training loop: pretraining and every fine-tuning task run through :class:`Trainer`.

Per optimizer step: set the learning rate (warmup + decay), run ``grad_accum`` micro-batches
(forward under autocast, loss / grad_accum, backward; DDP or FSDP syncs only on the last), clip the
gradient norm, step AdamW. Every ``eval_every`` steps: evaluate, keep the best checkpoint; every
``save_every`` steps: write ``last/`` and ``train_state/state.pt`` atomically. Everything that happens
is an event (a flat dict) written to ``metrics.jsonl`` and given to the callbacks (a note for people
goes to ``log``; nothing here prints). Ctrl-C saves the last completed step and re-raises. See docs/training-internals.md for the contract.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from tinyllm import runlock
from tinyllm.config import ModelConfig, TrainConfig, check_memory, to_dict
from tinyllm.errors import DiskFull
from tinyllm.runtime.engine import Log, no_log
from tinyllm.train import ddp, fsdp
from tinyllm.train.device import autocast, resolve_device, resolve_precision
from tinyllm.train.events import METRICS_FILE, MetricsWriter, event
from tinyllm.train.optim import make_optimizer
from tinyllm.train.schedule import lr_at
from tinyllm.train.state import capture_rng, load_state, restore_rng, save_state, state_path

Batch = Any
LAST_DIR = "last"


class _LossModule(nn.Module):
    """``forward(batch) = loss_fn(model, batch)``: one forward for DDP and torch.compile to wrap."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Tensors of ``batch`` on ``device``; to a GPU through pinned memory, without waiting."""
    if isinstance(batch, torch.Tensor):
        if device.type == "cuda" and batch.device.type == "cpu":
            return batch.pin_memory().to(device, non_blocking=True)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def first_tensor_numel(batch: Batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.numel()
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for v in values:
        n = first_tensor_numel(v)
        if n:
            return n
    return 0


class Trainer:
    def __init__(self, model: nn.Module, cfg: TrainConfig, batches: Callable[[int, int], Batch],
                 loss_fn: Callable[[nn.Module, Batch], torch.Tensor], out_dir: str | Path,
                 eval_fn: Callable[[nn.Module], dict] | None = None,
                 save_fn: Callable[[nn.Module, Path, dict], Any] | None = None,
                 callbacks: Iterable[Callable[[dict], None]] = (),
                 count_tokens: Callable[[Batch], int] | None = None, resume: bool = False,
                 train_info: dict | None = None, log: Log | None = None,
                 longer: str = "give a larger --max-steps to continue"):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.batches, self.loss_fn, self.eval_fn, self.save_fn = batches, loss_fn, eval_fn, save_fn
        self.callbacks = list(callbacks)
        self.count_tokens = count_tokens or first_tensor_numel
        self.train_info = dict(train_info or {})
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.dist = ddp.info()
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.dist, self._joined = ddp.setup(cfg.ddp_backend, self.device.type)
        self.is_main = self.dist.is_main
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.device.type == "cpu" and isinstance(getattr(model, "config", None), ModelConfig):
            check_memory(model.config, training=True, where=str(self.out_dir))
        self.model = model.to(self.device)
        self.fsdp = cfg.fsdp and self.dist.enabled
        if cfg.fsdp and not self.dist.enabled:
            (log or no_log)("note: train.fsdp needs a distributed launch (torchrun "
                            "--nproc_per_node=N); training unsharded in one process")
        self._skeleton = None  # FSDP: an empty copy of the model that save_fn gets, with full weights
        if self.fsdp:
            self._skeleton = fsdp.meta_copy(self.model) if self.is_main else None
            fsdp.shard(self.model)  # before the optimizer: it must hold the shards
        self.optimizer, self.fused = make_optimizer(self.model, cfg, self.device.type)
        # fp16 needs loss scaling (bf16 has fp32's range and does not)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

        # progress, restored on resume
        self.step = 0
        self.tokens = 0
        self.elapsed = 0.0
        self.wall_before = 0.0  # wall seconds of earlier sessions (evals included; for max_time_minutes)
        self._session_start = time.time()
        self._lr = cfg.lr
        self.best: float | None = None
        self.best_step: int | None = None
        self.last_eval: dict = {}
        self.resumed = False
        self._stop = threading.Event()
        self._interrupt = threading.Event()
        self._old_sigint = None
        if resume and state_path(self.out_dir).is_file():
            self._load(state_path(self.out_dir))
            if self.step >= cfg.max_steps:  # nothing to do: say so before writing anything
                if self._joined:
                    ddp.cleanup()
                from tinyllm.errors import UserError

                raise UserError(f"{self.out_dir} already reached step {self.step}"
                                f"{'' if self.step == cfg.max_steps else f' (asked for {cfg.max_steps})'}"
                                f"; {longer}")
        else:
            torch.manual_seed(cfg.seed + self.dist.rank)  # dropout stream (init was seeded by the caller)
        self._rng = capture_rng()

        self.loss_module = _LossModule(self.model, loss_fn)
        self.ddp_module = None
        wrapped: nn.Module = self.loss_module
        if self.dist.enabled and not self.fsdp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_module = wrapped = DDP(wrapped, device_ids=ids)
        if cfg.compile:
            wrapped = torch.compile(wrapped)
        self.wrapped = wrapped
        # rank 0 writes the folder: it holds its lock (again, if the caller took it first)
        self._lock = runlock.acquire(self.out_dir) if self.is_main else None
        self.metrics = MetricsWriter(self.out_dir / METRICS_FILE) if self.is_main else None
        self.saved_step: int | None = self.step if self.resumed else None  # last train state on disk

    # ---- public ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to stop after the current step (saves, then ``fit`` returns)."""
        self._stop.set()

    def fit(self) -> dict:
        cfg = self.cfg
        if self.metrics is not None:
            if self.resumed:
                self.metrics.truncate_after(self.step)
            elif self.step == 0:
                self.metrics.truncate_after(-1)  # a fresh run starts a fresh file
        self._emit(event("start", self.step, max_steps=cfg.max_steps, resumed=self.resumed,
                         out=str(self.out_dir), world_size=self.dist.world_size,
                         device=str(self.device), precision=self.precision, compile=cfg.compile,
                         parallel="fsdp" if self.fsdp else "ddp" if self.ddp_module is not None else "none",
                         fused=self.fused, params=sum(p.numel() for p in self.model.parameters()),
                         tokens_per_step=self._tokens_per_step(), train=to_dict(cfg),
                         model=to_dict(self.model.config) if hasattr(self.model, "config") else None))
        session_start, session_steps = time.time(), 0
        self._session_start = session_start
        budget = cfg.max_time_minutes * 60
        reason = "finished"
        self.model.train()
        self._install_sigint()
        try:
            while self.step < cfg.max_steps:
                interrupted, stopped = self._agreed(self._interrupt, self._stop)
                if interrupted:
                    raise KeyboardInterrupt
                if stopped:
                    reason = "stopped"
                    break
                t0 = time.time()
                loss, grad_norm, n_tokens = self._train_step(self.step)
                self.step += 1
                self._rng = capture_rng()  # the state after the last completed step
                dt = time.time() - t0
                self.elapsed += dt
                self.tokens += n_tokens
                session_steps += 1
                per_step = (time.time() - session_start) / session_steps
                eta = per_step * (cfg.max_steps - self.step)
                if budget:
                    eta = max(0.0, min(eta, budget - self.wall()))
                ev = event("step", self.step, loss=loss, lr=self._lr,
                           grad_norm=grad_norm, tokens=self.tokens, tokens_per_s=n_tokens / max(dt, 1e-9),
                           step_ms=dt * 1000, elapsed=self.elapsed, wall=round(self.wall(), 3), eta=eta)
                if hasattr(self.batches, "epoch"):
                    ev["epoch"] = round(float(self.batches.epoch(self.step)), 4)
                self._emit(ev, to_file=self.step % cfg.log_every == 0 or self.step == cfg.max_steps)
                if not math.isfinite(loss):
                    from tinyllm.errors import RunFailed

                    raise RunFailed(f"loss became {loss} at step {self.step}; lower train.lr or "
                                    f"check the data (last checkpoint kept in {self.out_dir})")
                timed_out = bool(budget) and self.wall() >= budget
                at_end = self.step == cfg.max_steps or timed_out
                evaluated = False
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or at_end:
                    self._evaluate()
                    evaluated = True
                if at_end or (self.step % cfg.save_every == 0 if cfg.save_every else evaluated):
                    self._save_last()
                restore_rng(self._rng)  # eval and saving never shift the training random stream
                if timed_out and self.step < cfg.max_steps:
                    reason = "time"
                    break
        except KeyboardInterrupt:
            try:  # a second Ctrl-C during this save interrupts it, and still closes the run
                self._save_last()
                self._emit(self._done("interrupted"))
            except DiskFull as e:
                raise self._disk_full(e) from None
            finally:
                self._close()
            raise
        except DiskFull as e:
            self._close()
            raise self._disk_full(e) from None
        except BaseException:  # a failed run (non-finite loss, bad data, ...): leave no handler behind
            self._close()
            raise
        done = self._done(reason)
        try:
            if reason == "stopped":
                self._save_last()
            self._emit(done)
        except DiskFull as e:
            self._close()
            raise self._disk_full(e) from None
        self._close()
        return done

    def _disk_full(self, e: DiskFull) -> DiskFull:
        """The full-disk error, saying which checkpoint survived (every write is atomic)."""
        if self.saved_step is not None:
            intact = f"the last checkpoint (step {self.saved_step}) is intact"
        else:
            intact = "no checkpoint had been written yet"
        return DiskFull(f"{e}; {intact} in {self.out_dir}; free some space and --resume", e.path)

    def wall(self) -> float:
        """Wall seconds this run has used, over all sessions (what ``max_time_minutes`` limits)."""
        return self.wall_before + time.time() - self._session_start

    def _tokens_per_step(self) -> int | None:
        if self.step >= self.cfg.max_steps:
            return None
        return self.count_tokens(self.batches(self.step, 0)) * self.cfg.grad_accum * self.dist.world_size

    def _agreed(self, *flags: threading.Event) -> list[bool]:
        """Whether each flag is set; under FSDP, on any rank (a collective: saving is one too)."""
        values = [f.is_set() for f in flags]
        if self.fsdp:
            t = ddp.all_reduce_sum(torch.tensor(values, dtype=torch.float32, device=self.device))
            values = [v > 0 for v in t.tolist()]
        return values

    def _install_sigint(self) -> None:
        """First Ctrl-C: finish the current micro-batch, save, stop. A second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if self._interrupt.is_set():
                raise KeyboardInterrupt
            self._interrupt.set()

        self._old_sigint = signal.signal(signal.SIGINT, handler)

    # ---- one optimizer step ------------------------------------------------------------------
    def _train_step(self, step: int) -> tuple[float, float, int]:
        cfg = self.cfg
        lr = self._lr = lr_at(step, cfg, self.wall())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        n_tokens = 0
        for micro in range(cfg.grad_accum):
            batch = to_device(self.batches(step, micro), self.device)
            n_tokens += self.count_tokens(batch) * self.dist.world_size
            with self._grad_sync(micro == cfg.grad_accum - 1):
                with autocast(self.device, self.precision):
                    loss = self.wrapped(batch)
                scaled = loss / cfg.grad_accum
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.detach().float()
            if self._agreed(self._interrupt)[0]:  # Ctrl-C: abandon this step before touching the weights
                self.optimizer.zero_grad(set_to_none=True)
                raise KeyboardInterrupt
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        total /= cfg.grad_accum
        ddp.all_reduce_mean(total)
        return float(total), float(grad_norm), n_tokens

    def _grad_sync(self, sync: bool):
        """Gradient synchronisation across ranks on (the last micro-batch) or off (the others)."""
        if self.fsdp:
            self.model.set_requires_gradient_sync(sync)
        elif self.ddp_module is not None and not sync:
            return self.ddp_module.no_sync()
        return contextlib.nullcontext()

    # ---- eval and checkpoints ----------------------------------------------------------------
    def _evaluate(self) -> None:
        if self.eval_fn is None:
            return
        self.model.eval()
        try:
            with torch.no_grad(), autocast(self.device, self.precision):
                metrics = dict(self.eval_fn(self.model))
        finally:
            self.model.train()
        metrics = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                   for k, v in metrics.items()}
        self.last_eval = metrics
        value = metrics.get(self.cfg.best_metric)
        improved = value is not None and math.isfinite(value) and (
            self.best is None or (value < self.best if self.cfg.best_mode == "min" else value > self.best))
        if improved:
            self.best, self.best_step = value, self.step
        self._emit(event("eval", self.step, **metrics, best=improved, elapsed=self.elapsed))
        if improved and self.save_fn is not None and (self.is_main or self.fsdp):
            model_sd, _ = self._full_state(optimizer=False)
            if self.is_main:
                with self._saveable(model_sd) as model:
                    self.save_fn(model, self.out_dir, self._info())
            self._emit(event("checkpoint", self.step, kind="best", path=str(self.out_dir), metric=value))

    def _info(self) -> dict:
        info = {**self.train_info, "step": self.step, "tokens": self.tokens,
                "elapsed": round(self.elapsed, 2), "seed": self.cfg.seed}
        for k in ("train_loss", "val_loss"):
            if k in self.last_eval:
                info[k] = round(self.last_eval[k], 6)
        if self.best_step is not None:
            info["best_step"] = self.best_step
            info["best_" + self.cfg.best_metric] = round(self.best, 6)
        return info

    def _full_state(self, optimizer: bool = True) -> tuple[dict, dict | None]:
        """The model's (and optimizer's) full state dicts on rank 0. Under FSDP a collective that
        gathers the shards to rank 0's CPU; every rank must call it."""
        if self.fsdp:
            return fsdp.full_state(self.model, self.optimizer if optimizer else None)
        return self.model.state_dict(), self.optimizer.state_dict() if optimizer else None

    def _saveable(self, model_sd: dict):
        """Context: the module to give save_fn (under FSDP an unsharded copy holding ``model_sd``)."""
        if self.fsdp:
            return fsdp.filled(self._skeleton, model_sd)
        return contextlib.nullcontext(self.model)

    def _save_last(self) -> None:
        if not (self.is_main or self.fsdp):
            return
        model_sd, optimizer_sd = self._full_state()
        if not self.is_main:
            return
        info = self._info()
        if self.save_fn is not None:
            with self._saveable(model_sd) as model:
                self.save_fn(model, self.out_dir / LAST_DIR, info)
                if self.eval_fn is None or self.best is None:  # no best metric: the top level is the last
                    self.save_fn(model, self.out_dir, info)
        save_state(state_path(self.out_dir), {
            "version": 1,
            "step": self.step, "tokens": self.tokens, "elapsed": self.elapsed, "wall": self.wall(),
            "best": self.best, "best_step": self.best_step, "last_eval": {
                k: v for k, v in self.last_eval.items() if isinstance(v, (int, float, str))},
            "model": model_sd, "optimizer": optimizer_sd,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": self._rng, "world_size": self.dist.world_size, "train": to_dict(self.cfg),
        })
        self.saved_step = self.step
        self._emit(event("checkpoint", self.step, kind="last", path=str(self.out_dir / LAST_DIR),
                         metric=self.last_eval.get(self.cfg.best_metric)))

    def _load(self, path: Path) -> None:
        if self.fsdp:  # rank 0 reads the file and checks it fits; the shards come from its copy
            s = fsdp.load_state_on_rank0(path, self.model, self.optimizer, self.device)
            fsdp.load_full_state(self.model, self.optimizer, s["model"], s["optimizer"])
        else:
            s = load_state(path)
            try:
                self.model.load_state_dict(s["model"])
                self.optimizer.load_state_dict(s["optimizer"])
            except (RuntimeError, ValueError, KeyError) as e:
                from tinyllm.errors import UserError

                raise UserError(f"{path}: the train state does not fit this model/optimizer "
                                f"({str(e).splitlines()[0]})") from None
        if self.scaler and s.get("scaler"):
            self.scaler.load_state_dict(s["scaler"])
        self.step, self.tokens, self.elapsed = s["step"], s["tokens"], s["elapsed"]
        self.wall_before = float(s.get("wall", s["elapsed"]))
        self.best, self.best_step = s["best"], s["best_step"]
        self.last_eval = dict(s.get("last_eval") or {})
        restore_rng(s["rng"])
        if s.get("world_size", 1) != self.dist.world_size:
            torch.manual_seed(self.cfg.seed + self.dist.rank + self.step)  # dropout differs anyway
        self.resumed = True

    def _done(self, reason: str) -> dict:
        ev = event("done", self.step, reason=reason, elapsed=self.elapsed, wall=round(self.wall(), 3),
                   tokens=self.tokens,
                   best_metric=self.best, best_step=self.best_step, out=str(self.out_dir))
        for k in ("train_loss", "val_loss"):
            if k in self.last_eval:
                ev[k] = self.last_eval[k]
        return ev

    def _emit(self, ev: dict, to_file: bool = True) -> None:
        if not self.is_main:
            return
        if to_file and self.metrics is not None:
            self.metrics.write(ev)
        for cb in self.callbacks:
            cb(ev)

    def _close(self) -> None:
        if self._old_sigint is not None:
            signal.signal(signal.SIGINT, self._old_sigint)
            self._old_sigint = None
        if self.metrics is not None:
            self.metrics.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._joined:
            with contextlib.suppress(Exception):
                ddp.barrier()
            ddp.cleanup()
