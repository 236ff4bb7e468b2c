"""Training in a background process: ``tinyllm train`` as a child, followed through metrics.jsonl.

A child process keeps the dashboard responsive (torch never shares the UI's interpreter), and a run
started here is the same as one started in a terminal: the TUI can also attach to those. Stopping
sends SIGINT, which ``tinyllm train`` answers by saving a checkpoint; resuming starts the child
again with ``--resume``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyllm import modeldir


@dataclass
class RunSpec:
    """What the Train screen's form asks for."""
    out: Path                          # run directory (= model directory)
    preset: str | None = "tiny"        # model or training preset, when no YAML config is given
    config: Path | None = None         # a YAML config for `tinyllm train` (wins over preset)
    data: Path | None = None           # training text (a training preset or the YAML may name one)
    tokenizer: str | None = None       # gpt2 | char | bpe (None: the config's, else char)
    max_steps: int | None = None       # optimizer steps
    eval_every: int | None = None      # evaluate (val loss, sample) every N steps
    resume: bool = False               # continue from out/train_state
    extra: list[str] = field(default_factory=list)   # more `--set key=value` overrides


def runs_dir() -> Path:
    """Where the logs of runs started from the TUI go."""
    return modeldir.tinyllm_home() / "runs"


def run_target(out: Path) -> tuple[int | None, int | None]:
    """(the step a run's last checkpoint reached, the steps it is configured for), read from
    ``last/config.yaml`` and ``train.yaml`` without torch; None for what a folder does not say."""
    from tinyllm.config import ConfigError, read_yaml
    from tinyllm.train.runconfig import RUN_FILE

    def read(path: Path) -> dict:
        try:
            return read_yaml(path) if path.is_file() else {}
        except ConfigError:
            return {}

    step = (read(out / "last" / modeldir.CONFIG).get("train") or {}).get("step")
    target = (read(out / RUN_FILE).get("train") or {}).get("max_steps")
    return (step if isinstance(step, int) else None,
            target if isinstance(target, int) else None)


def train_argv(spec: RunSpec) -> list[str]:
    """The ``tinyllm train`` command line for a spec."""
    argv = [sys.executable, "-m", "tinyllm", "train", "--out", str(spec.out)]
    if spec.resume:
        argv.append("--resume")
    else:
        if spec.config is not None:
            argv.insert(4, str(spec.config))
        elif spec.preset:
            argv += ["--preset", spec.preset]
        if spec.data is not None:
            argv += ["--data", str(spec.data)]
        if spec.tokenizer:
            argv += ["--tokenizer", spec.tokenizer]
    if spec.max_steps:
        argv += ["--max-steps", str(spec.max_steps)]
    if spec.eval_every is not None:
        argv += ["--eval-every", str(spec.eval_every)]
    for item in spec.extra:
        argv += ["--set", item]
    return argv


class TrainProcess:
    """One ``tinyllm train`` child; its stdout and stderr go to a log file beside the run's config."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.out = spec.out
        self.argv = train_argv(spec)
        self.log = runs_dir() / f"{spec.out.name}.log"
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as log:
            log.write(f"\n$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        self.started = time.time()

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Ask the run to stop: SIGINT, so it saves last/ and train_state first."""
        if self.running:
            self.proc.send_signal(signal.SIGINT)

    def kill(self, wait: float = 5.0) -> None:
        """Stop and wait; kill if it does not end in ``wait`` seconds (used when the app quits)."""
        if not self.running:
            return
        self.stop()
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


class ServeProcess:
    """``tinyllm serve`` for one model as a child, on a free 127.0.0.1 port.

    Its stderr (the URL, then one line per request) is copied to a log file beside the runs' logs;
    ``url`` is set from the first line, ``ready`` once the model has loaded, ``error`` if it could
    not start. Stopping sends SIGINT (uvicorn's graceful shutdown), then kills after a wait.
    """

    def __init__(self, model: str, name: str, argv_extra: list[str] | None = None):
        self.model = model
        self.argv = [sys.executable, "-m", "tinyllm", "serve", "-m", model, "--port", "0",
                     *(argv_extra or [])]
        self.log = runs_dir() / f"serve-{name}.log"
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.ready = False
        self.error: str | None = None

    def start(self) -> None:
        import threading

        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env, text=True,
                                     start_new_session=True)
        threading.Thread(target=self._follow, daemon=True, name="tinyllm-serve-log").start()

    def _follow(self) -> None:
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(f"\n$ {' '.join(self.argv)}\n")
            for line in self.proc.stderr:
                log.write(line)
                log.flush()
                if self.url is None and " on http://" in line:
                    self.url = line.split(" on ", 1)[1].split()[0]
                elif line.split(" ", 1)[-1].startswith("ready:"):
                    self.ready = True
                elif line.split(" ", 1)[-1].startswith("error:") and not self.ready:
                    self.error = line.split("error:", 1)[1].strip()
        if not self.ready and self.error is None:
            self.error = f"tinyllm serve exited (code {self.proc.wait()}); see {self.log}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, wait: float = 5.0) -> None:
        if not self.running:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
