"""Training memory stays flat as the token file grows (benchmarks/train_memory.py at a small scale)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_memory.py"


def test_peak_rss_does_not_grow_with_the_token_file(tmp_path):
    # 128 MB of tokens read whole would add ~128 MB to a ~300 MB process: a ratio of ~1.4
    r = subprocess.run([sys.executable, str(BENCH), "--small", "1MB", "--large", "128MB", "--steps", "3",
                        "--dir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    small, large = res["rows"]
    assert large["tokens"] == 128 * small["tokens"] == 2**26             # uint16: 2 bytes a token
    assert small["steps"] == large["steps"] == 3
    assert 0 < small["val_loss"] < 10 and 0 < large["val_loss"] < 10      # it trained and evaluated
    assert large["ratio"] <= 1.2, res
    assert list(tmp_path.iterdir()) == []                                # token files cleaned up
