"""Train: start a run (preset or YAML + data file) or attach to one, and watch it learn.

The run is a ``tinyllm train`` child process (see :mod:`tinyllm_tui.runner`); this screen only
follows its ``metrics.jsonl`` twice a second, so it stays responsive whatever the run does. Runs
started in another terminal are followed the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, ProgressBar, RichLog, Select, Static

from tinyllm import modeldir, runlock
from tinyllm.errors import UserError
from tinyllm.config import PRESETS
from tinyllm_tui.fmt import describe_error, fmt_seconds, pretty_path
from tinyllm_tui.run_log import MetricsFollower, RunState, downsample, metrics_path
from tinyllm_tui.runner import RunSpec, TrainProcess, run_target
from tinyllm_tui.screens.base import TinyScreen

POLL = 0.5   # seconds between reads of metrics.jsonl
DEFAULT_DATA = Path(modeldir.__file__).parent / "bundled" / "data" / "tinyshakespeare.txt"
STATS = ("step", "train loss", "val loss", "tokens/s", "lr", "ETA")


class TrainScreen(TinyScreen):
    MODE = "train"
    BINDINGS = [
        Binding("ctrl+s", "start", "Start"),
        Binding("ctrl+x", "stop", "Stop", priority=True),   # also when a form field has focus
        Binding("ctrl+r", "resume", "Resume"),
        Binding("ctrl+g", "export_png", "PNG"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.process: Any = None           # TrainProcess (or a test's fake) started from here
        self.run_dir: Path | None = None   # the run being followed
        self.follower: MetricsFollower | None = None
        self.state = RunState()
        self._exit_reported = False
        self._samples_shown = 0
        self._logged: set[tuple] = set()   # events already in the log panel (a resume re-reads)
        self._synced_steps: str | None = None  # the steps field as following a run filled it

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="train-body"):
            with VerticalScroll(id="train-side", classes="side"):
                yield Label("new run", classes="section")
                yield Label("model preset", classes="field-label")
                yield Select(preset_options(), value="tiny", allow_blank=False,
                             id="train-preset", compact=True)
                yield Input(placeholder="or a YAML config file",
                            id="train-config", compact=True, select_on_focus=False)
                yield Label("training text", classes="field-label")
                yield Input(shown_path(DEFAULT_DATA), id="train-data", compact=True,
                            select_on_focus=False)
                yield Label("tokenizer", classes="field-label")
                yield Select([("char (trained on the text)", "char"), ("gpt2", "gpt2"),
                              ("bpe (trained on the text)", "bpe")], value="char",
                             allow_blank=False, id="train-tokenizer", compact=True)
                yield Label("steps", classes="field-label")
                yield Input("500", id="train-steps", type="integer", compact=True,
                            select_on_focus=False)
                yield Label("run name (in $TINYLLM_HOME/models)", classes="field-label")
                yield Input(placeholder="default: <preset>-<data>", id="train-name", compact=True,
                            select_on_focus=False)
                with Horizontal(classes="buttons"):
                    yield Button("Start", id="train-start", variant="primary")
                    yield Button("Stop", id="train-stop", variant="error")
                    yield Button("Resume", id="train-resume")
                yield Label("follow a run", classes="section")
                yield Input(placeholder="run folder or metrics.jsonl, Enter", id="train-attach",
                            compact=True, select_on_focus=False)
                yield Button("Export PNG", id="train-png")
            with Vertical(id="train-main"):
                with Horizontal(id="train-stats"):
                    for name in STATS:
                        yield Static(stat_text(name, "-"), classes="stat", id=_stat_id(name))
                yield ProgressBar(id="train-progress", show_eta=False)
                yield _loss_plot()
                yield Static("no run yet: start one on the left, or follow a run folder", markup=False,
                             id="train-status")
                yield RichLog(id="train-log", wrap=True, markup=False, max_lines=500,
                              min_width=20)   # wrapped to the panel, never cut at 78 columns

    def on_mount(self) -> None:
        self.app.train_screen = self   # Ctrl+Q asks before it stops a run going here
        self.set_interval(POLL, self.poll)
        self.draw_plot()
        if self.app.start_attach:
            self.attach(self.app.start_attach)

    def on_unmount(self) -> None:
        if self.process is not None and getattr(self.process, "running", False):
            self.process.kill()

    def screen_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Train: start a run", "Start training with the form's settings",
                            self.action_start)
        yield SystemCommand("Train: stop the run", "Stop after saving a checkpoint", self.action_stop)
        yield SystemCommand("Train: resume", "Continue the run from its last checkpoint",
                            self.action_resume)
        yield SystemCommand("Train: export loss curves as PNG", "Write loss.png in the run folder",
                            self.action_export_png)

    # ---- form ---------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"train-start": self.action_start, "train-stop": self.action_stop,
                   "train-resume": self.action_resume, "train-png": self.action_export_png}
        if event.button.id in actions:
            actions[event.button.id]()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "train-attach" and event.value.strip():
            if self.running:
                self.error("a run started here is going; stop it (Ctrl+X) before following "
                           "another")
                return
            self.attach(event.value.strip())

    @property
    def running(self) -> bool:
        """Whether a run started from this screen is going."""
        return self.process is not None and bool(getattr(self.process, "running", False))

    def spec_from_form(self, resume: bool = False) -> RunSpec:
        from tinyllm.errors import UserError

        preset = str(self.query_one("#train-preset", Select).value)
        config = self.query_one("#train-config", Input).value.strip()
        data = self.query_one("#train-data", Input).value.strip()
        steps = self.query_one("#train-steps", Input).value.strip()
        name = self.query_one("#train-name", Input).value.strip()
        if config and not Path(config).expanduser().is_file():
            raise UserError(f"{config}: no such config file")
        if not config and not data and preset in PRESETS:
            raise UserError("give a training text file (or a YAML config or training preset "
                            "that names one)")
        if data and not Path(data).expanduser().is_file():
            raise UserError(f"{data}: no such data file")
        if steps and (not steps.isdigit() or int(steps) < 1):
            raise UserError(f"steps: {steps!r} is not a positive whole number")
        if not name:
            name = f"{Path(config).stem if config else preset}-{Path(data).stem if data else 'run'}"
        if "/" in name or name.startswith("."):
            raise UserError(f"run name {name!r}: use a plain folder name")
        max_steps = int(steps) if steps else None
        return RunSpec(out=modeldir.models_home() / name, preset=None if config else preset,
                       config=Path(config).expanduser() if config else None,
                       data=Path(data).expanduser() if data else None,
                       tokenizer=str(self.query_one("#train-tokenizer", Select).value)
                       if not config and preset in PRESETS else None,   # else the config's own
                       max_steps=max_steps, resume=resume,
                       # ten evaluations per run: the validation curve fills in as it goes
                       eval_every=max(1, max_steps // 10) if max_steps and not config else None)

    # ---- start / stop / resume ----------------------------------------------------------------
    def action_start(self) -> None:
        if self.process is not None and getattr(self.process, "running", False):
            self.error("a run is already going; stop it first (Ctrl+X)")
            return
        try:
            spec = self.spec_from_form()
            runlock.ensure_free(spec.out)  # a run started in a terminal writes it: say whose
            if (spec.out / "train_state").exists():
                raise UserError(f"{spec.out} already has a run: Resume it, or choose another name")
        except UserError as e:
            self.error(str(e))
            return
        self.launch(spec)

    def action_resume(self) -> None:
        """Continue the run as it was configured; a step count changed in the form on purpose
        becomes the new target after a confirmation that says so."""
        if self.running:
            self.error("the run is still going")
            return
        out = self.run_dir
        if out is None:
            try:
                out = self.spec_from_form().out
            except Exception as e:
                self.error(describe_error(e))
                return
        if not (out / "train_state").exists():
            self.error(f"{out}: no checkpoint to resume from (train_state/ missing)")
            return
        try:
            runlock.ensure_free(out)
        except UserError as e:
            self.error(str(e))
            return
        step, target = run_target(out)
        if step is None and out == self.run_dir:
            step = self.state.step
        steps = self.query_one("#train-steps", Input).value.strip()
        wanted = int(steps) if steps.isdigit() and int(steps) > 0 else None
        if wanted is None or wanted == target or target is None and wanted == self.state.max_steps:
            if step is not None and target is not None and step >= target:
                self.error(f"{out.name} already reached step {step}, its target; set steps above "
                           f"{step} to continue it")
                return
            self.launch(RunSpec(out=out, preset=None, resume=True))
            return
        if step is not None and wanted <= step:
            self.error(f"{out.name} is at step {step}: set steps above {step} to continue it")
            return
        from tinyllm_tui.screens.dialogs import ConfirmDialog

        was = f"its {target}" if target else "the steps it was started with"
        self.app.push_screen(
            ConfirmDialog(f"Resume {out.name} from step {step if step is not None else '?'} to "
                          f"{wanted:,} steps instead of {was}? Its learning-rate schedule is "
                          f"stretched to {wanted:,} steps.", yes=f"Resume to {wanted:,}"),
            lambda yes: self.launch(RunSpec(out=out, preset=None, resume=True, max_steps=wanted))
            if yes else None)

    def launch(self, spec: RunSpec) -> None:
        factory = self.app.trainer_factory or TrainProcess
        try:
            proc = factory(spec)
            proc.start()
        except BaseException as e:
            self.error(f"could not start training: {describe_error(e)}")
            return
        self.process = proc
        self._exit_reported = False
        self.query_one("#train-log", RichLog).clear()   # no traceback left from an earlier run
        self._logged.clear()
        verb = "resuming" if spec.resume else "started"
        to = f" to step {spec.max_steps:,}" if spec.resume and spec.max_steps else \
            " as configured" if spec.resume else ""
        self.log_line(f"{verb} run {spec.out.name}{to} → {pretty_path(spec.out)}")
        # the status first: following may already see a run that has finished and say so
        self.set_status(f"{verb}; waiting for the first step (loading torch and the data)…")
        self.follow(spec.out, keep_state=spec.resume)

    def action_stop(self) -> None:
        if self.process is not None and getattr(self.process, "running", False):
            self.process.stop()
            self.set_status("stopping: the run saves a checkpoint first…")
        elif self.run_dir is not None and self.state.done is None:
            self.error("this run was started elsewhere: press Ctrl+C in its terminal to stop it")
        else:
            self.error("no run is going")

    # ---- following ----------------------------------------------------------------------------
    def attach(self, target: str) -> None:
        path = metrics_path(target)
        self.log_line(f"following {pretty_path(path)}")
        self.follow(path.parent)
        if not path.exists():   # a run just started elsewhere writes it once torch has loaded
            self.set_status(f"waiting for {pretty_path(path)} to appear…")

    def follow(self, run_dir: Path, keep_state: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.follower = MetricsFollower(metrics_path(self.run_dir))
        if not keep_state:
            self.state = RunState()
            self._samples_shown = 0
        self.sync_steps(run_target(self.run_dir)[1])
        self.poll()

    def sync_steps(self, target: int | None) -> None:
        """Show the followed run's step target in the form, unless the user has typed one since
        (a changed number is a change on purpose: Resume asks before it uses it)."""
        field = self.query_one("#train-steps", Input)
        if target and (self._synced_steps is None or field.value.strip() == self._synced_steps):
            field.value = self._synced_steps = str(target)

    def poll(self) -> None:
        if self.follower is not None:
            try:
                events, reset = self.follower.read()
            except OSError as e:
                self.error(f"reading {self.follower.path}: {e}")
                events, reset = [], False
            if reset:
                self.state = RunState()
                self._samples_shown = 0
            for ev in events:
                self.state.apply(ev)
                key = (ev.get("event"), ev.get("step"), ev.get("kind"), ev.get("time"))
                if key not in self._logged:   # a resumed run's rewritten file: each line once
                    self._logged.add(key)
                    self.log_event(ev)
                if ev.get("event") == "start":
                    self.sync_steps(ev.get("max_steps"))
            if events or reset:
                self.show_state()
        self.check_process()

    def check_process(self) -> None:
        proc = self.process
        if proc is None or self._exit_reported:
            return
        code = proc.poll()
        if code is None:
            return
        self._exit_reported = True
        tail = getattr(proc, "tail", lambda: "")()
        last = tail.strip().splitlines()[-1] if tail.strip() else ""
        if code == 2 and last.startswith("error:"):  # refused before it started: say why
            why = last.removeprefix("error:").strip()
            self.error(f"training did not start: {why}")
            self.set_status(f"not started: {why}")
        elif code in (0, 130) or self.state.done is not None:
            self.set_status(self.state.status if self.state.done else f"run ended (exit {code})")
        else:
            last = last or f"exit code {code}"
            self.error(f"training failed: {last}")
            self.set_status(f"training failed (exit {code}); see the log below")
            if tail:
                self.log_line(tail)

    # ---- drawing ------------------------------------------------------------------------------
    def show_state(self) -> None:
        s = self.state
        values = {
            "step": f"{s.step:,}/{s.max_steps:,}" if s.max_steps else f"{s.step:,}",
            "train loss": _fmt(s.train_loss), "val loss": _fmt(s.val_loss),
            "tokens/s": f"{s.tokens_per_s:,.0f}" if s.tokens_per_s else "-",
            "lr": f"{s.lr:.2e}" if s.lr is not None else "-",
            "ETA": fmt_seconds(s.eta),
        }
        for name, value in values.items():
            self.query_one(f"#{_stat_id(name)}", Static).update(stat_text(name, value))
        bar = self.query_one("#train-progress", ProgressBar)
        if s.max_steps:
            bar.update(total=s.max_steps, progress=s.step)
        where = f" · {pretty_path(self.run_dir)}" if self.run_dir else ""
        self.set_status(f"{s.status} · elapsed {fmt_seconds(s.elapsed)}{where}")
        self.draw_plot()

    def draw_plot(self) -> None:
        plot = self.query_one("#loss-plot")
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        s = self.state
        if s.train:
            xs, ys = zip(*downsample(s.train))
            plt.plot(xs, ys, label="train", marker="braille")
        if s.val:
            xs, ys = zip(*s.val)
            plt.plot(xs, ys, label="val", marker="braille")
        plt.title("loss" if (s.train or s.val) else "loss (no points yet)")
        plt.xlabel("step")
        plot.refresh()

    def log_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.log_line(f"start: {ev.get('params', 0):,} parameters, {ev.get('device', '?')}, "
                          f"{ev.get('precision', '?')}, {ev.get('max_steps', '?')} steps"
                          + (" (resumed)" if ev.get("resumed") else ""))
        elif kind == "eval":
            self.log_line(f"step {ev.get('step')}: train {_fmt(ev.get('train_loss'))}, "
                          f"val {_fmt(ev.get('val_loss'))}" + (" (best)" if ev.get("best") else ""))
            if ev.get("sample"):
                log = self.query_one("#train-log", RichLog)
                log.write(Text(f"sample at step {ev.get('step')}:", style="bold"))
                log.write(Text(str(ev["sample"]).strip()[:1500], style="italic"))
        elif kind == "checkpoint":
            self.log_line(f"checkpoint ({ev.get('kind')}) at step {ev.get('step')}: "
                          f"{pretty_path(ev.get('path') or '')}")
        elif kind == "done":
            self.log_line(f"done ({ev.get('reason')}) at step {ev.get('step')}: "
                          f"val {_fmt(ev.get('val_loss'))}; "
                          f"model in {pretty_path(ev.get('out') or '')}")

    def log_line(self, text: str) -> None:
        self.query_one("#train-log", RichLog).write(text)

    def set_status(self, text: str) -> None:
        self.query_one("#train-status", Static).update(text)

    # ---- PNG ----------------------------------------------------------------------------------
    def action_export_png(self) -> None:
        if not self.state.train and not self.state.val:
            self.error("no loss points yet")
            return
        target = (self.run_dir / "loss.png") if self.run_dir else \
            modeldir.tinyllm_home() / "loss.png"
        title = f"{self.run_dir.name if self.run_dir else 'run'}: loss"
        self._export_png(self.state, target, title)

    @work(thread=True, group="png", exit_on_error=False)
    def _export_png(self, state: RunState, target: Path, title: str) -> None:
        from tinyllm_tui.lossplot import write_loss_png

        try:
            path = write_loss_png(state, target, title)
        except BaseException as e:
            self.app.call_from_thread(self.error, f"PNG export failed: {describe_error(e)}")
            return
        self.app.call_from_thread(self.app.notify, f"wrote {path}", title="PNG")


def preset_options() -> list[tuple[str, str]]:
    """Model presets (shapes) and the bundled training presets (shape + data + settings)."""
    from tinyllm.train.runconfig import training_presets

    out = [(f"{name} (model)", name) for name in PRESETS]
    return out + [(f"{name} (training preset)", name) for name in training_presets()]


def shown_path(p: Path) -> str:
    """Relative to the current directory when inside it (short, and what the user would type)."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def _stat_id(name: str) -> str:
    return "stat-" + name.replace(" ", "-").replace("/", "-per-")


def stat_text(name: str, value: str) -> Text:
    return Text.assemble((f"{name}\n", "dim"), (value, "bold"))


def _loss_plot():
    from textual_plotext import PlotextPlot

    return PlotextPlot(id="loss-plot")
