"""Time to first paint of ``tinyllm-tui``, against a bare Textual app started the same way.

Each row starts a fresh process in a pseudo-terminal (120x40, TERM=xterm-256color) and stops the
clock when the first full frame is on the "screen": the footer's "palette" key hint (every row has a
Footer) has been written. Rows are interleaved over the repeats and the median is reported, with the
ratio to the bare app (Header + Footer + one Static: the floor any Textual app pays). Beside the wall
time, the CPU time the process used up to that moment: on an idle machine the two are about equal;
on a busy one the wall time also counts waiting for a core. "import torch" is there for scale: what
the first paint would cost on top if the start-up path imported torch.

    python benchmarks/tui_startup.py            # table on stdout
    python benchmarks/tui_startup.py --json     # one JSON object (benchmarks/run_all.py)
"""
from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402

BARE_APP = '''
from textual.app import App
from textual.widgets import Footer, Header, Static

class Bare(App):
    def compose(self):
        yield Header()
        yield Static("hello")
        yield Footer()

Bare().run()
'''


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_paint(argv: list[str], env: dict, marker: bytes = b"palette", timeout: float = 60.0,
                size: tuple[int, int] = (120, 40)) -> tuple[float, float]:
    """(wall seconds, CPU seconds) from spawn until ``marker`` was written to the terminal; the
    process is then quit. CPU time is what the start-up costs on an idle machine; wall time also
    counts waiting for a core on a busy one."""
    pid, fd = pty.fork()
    if pid == 0:  # child: a terminal of the given size, then the program
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        os.execve(argv[0], argv, env)
    t0 = time.perf_counter()
    buf, elapsed = b"", None
    try:
        while time.perf_counter() - t0 < timeout:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if marker in buf:
                elapsed = time.perf_counter() - t0
                cpu = cpu_seconds(pid)
                break
    finally:
        os.write(fd, b"\x11")  # Ctrl+Q
        for _ in range(50):
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                break
            try:
                while select.select([fd], [], [], 0)[0] and os.read(fd, 1 << 16):
                    pass
            except OSError:
                pass
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    if elapsed is None:
        raise RuntimeError(f"{' '.join(argv)}: no first paint within {timeout} s; output "
                           f"ended with {buf[-300:]!r}")
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tui-startup-"))
    (tmp / "bare.py").write_text(BARE_APP)
    env = {**os.environ, "TERM": "xterm-256color", "TINYLLM_HOME": str(tmp / "home"),
           "COLORFGBG": "15;0"}
    py = sys.executable
    rows = {
        "bare Textual app (peer)": [py, str(tmp / "bare.py")],
        "tinyllm-tui (Chat, bundled model)": [py, "-m", "tinyllm_tui"],
        "tinyllm-tui --screen train": [py, "-m", "tinyllm_tui", "--screen", "train"],
        "tinyllm-tui --data SMSSpamCollection.tsv": [
            py, "-m", "tinyllm_tui", "--data", str(ROOT / "tinyllm/bundled/data/SMSSpamCollection.tsv")],
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    cpus: dict[str, list[float]] = {name: [] for name in rows}
    torch_import: list[float] = []
    for i in range(args.repeats):
        for name, argv in rows.items():
            wall, cpu = first_paint(argv, env)
            times[name].append(wall)
            cpus[name].append(cpu)
            print(f"[{i + 1}/{args.repeats}] {name}: {wall:.3f} s ({cpu:.3f} s CPU)", file=sys.stderr)
        t0 = time.perf_counter()
        subprocess.run([py, "-c", "import torch"], check=True, cwd=ROOT)
        torch_import.append(time.perf_counter() - t0)

    med = statistics.median
    ref = med(times["bare Textual app (peer)"])
    ref_cpu = med(cpus["bare Textual app (peer)"])
    out_rows = [{"name": name, "first paint s": round(med(v), 3), "ratio": round(med(v) / ref, 2),
                 "CPU s": round(med(cpus[name]), 3), "CPU ratio": round(med(cpus[name]) / ref_cpu, 2)}
                for name, v in times.items()]
    t = med(torch_import)
    out_rows.append({"name": "python -c 'import torch' (for scale)", "first paint s": round(t, 3),
                     "ratio": round(t / ref, 2)})
    setup = {"terminal": "120x40 pty", "repeats": args.repeats,
             "load average": round(os.getloadavg()[0], 2)}
    emit("tui_startup", setup, "bare Textual app (peer)", out_rows, args.json, print_table)


def print_table(result: dict) -> None:
    print(f"load average {result['setup']['load average']:.2f}")
    for r in result["rows"]:
        cpu = f"  CPU {r['CPU s']:6.3f} s  x{r['CPU ratio']:.2f}" if "CPU s" in r else ""
        print(f"{r['name']:<45} {r['first paint s']:7.3f} s  x{r['ratio']:.2f}{cpu}")


if __name__ == "__main__":
    main()
