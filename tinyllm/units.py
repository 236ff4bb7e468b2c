"""Numbers for people: sizes in binary units (KiB, MiB, GiB) and counts with k/M/G/T.

The one formatter the CLI and the TUI show sizes and counts with, so both say the same thing.
"""
from __future__ import annotations


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB', 3355443 -> '3.2 MiB' (powers of 1024); below 1 KiB, '512 B'."""
    for suffix, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{n:.0f} B"


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (k, M, G, T: powers of 1000), for parameter and FLOP counts."""
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"
