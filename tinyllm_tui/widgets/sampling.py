"""The sampling side panel: temperature, top-k, top-p and max tokens, validated as you type."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.validation import Integer, Number
from textual.widgets import Input, Label

from tinyllm.errors import UserError

# field -> (label, default, validator, parse); an empty top-k / top-p means "off"
FIELDS: dict[str, tuple[str, Any, Any, type]] = {
    "temperature": ("temperature (0 = greedy)", 0.8, Number(minimum=0, maximum=5), float),
    "top_k": ("top-k (empty = all)", 200, Integer(minimum=0), int),
    "top_p": ("top-p (empty = off)", None, Number(minimum=0.01, maximum=1), float),
    "max_new_tokens": ("max tokens", 200, Integer(minimum=1, maximum=100_000), int),
}


class SamplingPanel(Vertical):
    """Inputs for the sampling settings; ``values()`` returns them parsed or raises UserError."""

    def compose(self) -> ComposeResult:
        for key, (label, default, validator, _) in FIELDS.items():
            yield Label(label, classes="field-label")
            yield Input("" if default is None else str(default), id=f"sampling-{key}",
                        validators=[validator], valid_empty=key in ("top_k", "top_p"),
                        compact=True, select_on_focus=False)

    def values(self) -> dict[str, Any]:
        out = {}
        for key, (label, _, validator, parse) in FIELDS.items():
            widget = self.query_one(f"#sampling-{key}", Input)
            raw = widget.value.strip()
            if not raw and key in ("top_k", "top_p"):
                out[key] = None
                continue
            result = validator.validate(raw)
            if not result.is_valid:
                widget.focus()
                raise UserError(f"{label.split(' (')[0]}: {raw!r} is not valid "
                                f"({'; '.join(result.failure_descriptions)})")
            out[key] = parse(raw)
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        for key in FIELDS:
            if key in values:
                v = values[key]
                self.query_one(f"#sampling-{key}", Input).value = "" if v is None else str(v)
