"""What the benchmark scripts share: printing a result as JSON (``--json``, what run_all.py reads)
or as the script's table."""
from __future__ import annotations

import json
from typing import Callable


def emit(result: dict, as_json: bool, print_table: Callable[[dict], None]) -> dict:
    """Print ``result`` as one JSON line or as a table; return it (for callers of ``main``)."""
    if as_json:
        print(json.dumps(result))
    else:
        print_table(result)
    return result
