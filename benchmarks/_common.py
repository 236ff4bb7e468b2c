"""What the benchmark scripts share: one result shape, printed as JSON (``--json``, what run_all.py
reads) or as the script's table."""
from __future__ import annotations

import json
from typing import Callable


def emit(benchmark: str, setup: dict, reference: str, rows: list[dict], as_json: bool,
         print_table: Callable[[dict], None]) -> dict:
    """The result ``{"benchmark", "setup", "reference", "rows"}`` printed as one JSON line or as a
    table by ``print_table(result)``; returned (for callers of ``main``)."""
    result = {"benchmark": benchmark, "setup": setup, "reference": reference, "rows": rows}
    if as_json:
        print(json.dumps(result))
    else:
        print_table(result)
    return result


def print_skipped(row: dict, width: int) -> bool:
    """Print a row a peer could not run (``{"name", "skipped": why}``); True when it was one."""
    if "skipped" in row:
        print(f"{row['name']:{width}} skipped: {row['skipped']}")
    return "skipped" in row
