"""The help screen (F1): what each screen does and its keys."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# tinyllm-tui

| key | anywhere |
|---|---|
| F1 | this help |
| F2 / F3 / F4 / F5 / F6 | Chat / Train / Data / Models / Inspect |
| Ctrl+P | command palette (every action by name) |
| Ctrl+T | light / dark theme |
| Tab, Shift+Tab | move between fields |
| Ctrl+Q | quit |

## Chat
Pick a model on the left (bundled, in `$TINYLLM_HOME/models`, or type a path and press Enter) and a
backend (auto uses ONNX when the model has `model.onnx`). Type a prompt and press Enter: the reply
streams in. Language models continue your text; instruct models answer it (only the response is
shown); classifiers answer with a label and the probability of each label.

| key | |
|---|---|
| Enter | send |
| Esc | stop the reply |
| Ctrl+N | new conversation |
| Ctrl+O | reopen a saved conversation (`$TINYLLM_HOME/conversations`) |
| Ctrl+S | export the conversation as Markdown (next to its .json) |
| Ctrl+R | inspect the last reply (opens Inspect on it) |

## Train
Start a run from a preset or a YAML config and a data file, or attach to a run that
`tinyllm train` is running in another terminal (its folder or `metrics.jsonl`). Loss curves,
tokens/s, learning rate, step, ETA and sample generations update live.

| key | |
|---|---|
| Ctrl+S | start a run |
| Ctrl+X | stop the run (it saves a checkpoint) |
| Ctrl+R | resume the run from its last checkpoint |
| Ctrl+G | export the loss curves as a PNG |

## Data
Open a text, TSV/CSV, JSONL or Alpaca JSON file. Search the rows; pick a tokenizer to see token
counts per row and their histogram, the label distribution of classification data, and a coloured
tokenisation preview of the selected row.

| key | |
|---|---|
| Ctrl+F | search |
| [ and ] | previous / next page of rows (100 a page) |
| Ctrl+L | type a file path to open |

## Models
Every model with its parameters, task, tokenizer, size on disk and whether an ONNX export exists.

| key | |
|---|---|
| Enter | chat with the selected model |
| X | export to ONNX (`model.onnx`) |
| I | export to ONNX and an int8 copy (`model.int8.onnx`, smaller and faster) |
| S | serve it over an OpenAI-compatible API (`tinyllm serve`; its URL shows in the info panel), or stop serving it |
| D / Delete | delete (asks first; bundled models cannot be deleted) |
| R | refresh the list |

## Inspect
Look inside a model (the bundled shakespeare-char, or the one chosen at the top). Type a prompt and
press Enter: its tokens appear coloured by surprise (green: expected, red: surprising, in bits).
Move along them to see what the model expected after the selected token (the top next tokens as
bars, the one that follows marked ✓) and the logit lens there (each layer's top token). The
heatmap shows the attention of one layer and head: a row per query token, a column per key.

| key | |
|---|---|
| Enter | inspect the prompt |
| ← / → (on the tokens) | previous / next token (Home / End: first / last) |
| ↑ / ↓ | previous / next layer |
| [ / ] (on the tokens), PgUp / PgDn | previous / next head (after the last: the mean) |
| m (on the tokens) | the mean over the heads |
| Tab, Ctrl+L | move between the prompt and the tokens / back to the prompt |

Press Esc or F1 to close.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)
