"""Prompt templates for instruction-following models (torch-free: the ONNX path uses them too).

A template turns an entry (``instruction``, optional ``input``) into the prompt the model sees, and
says where the model's answer starts (``response``) and where it ends (``stop`` strings, plus the
tokenizer's end-of-text token). Alpaca is the default; others are YAML files with the same keys as
``tinyllm/bundled/templates/alpaca.yaml``::

    name: alpaca
    prompt: "Below is an instruction ...\\n\\n### Instruction:\\n{instruction}"
    input: "\\n\\n### Input:\\n{input}"     # added only when the entry has an input
    response: "\\n\\n### Response:\\n"       # ends the prompt; the answer follows
    stop: ["\\n\\n### "]                   # generation stops before any of these

An instruct model directory stores its whole template under ``template:`` in ``config.yaml``, so
``generate``, ``chat`` and the TUI format the user's text the same way training did and return only
the response (``Engine.generate`` in :mod:`tinyllm.runtime.engine` applies it).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tinyllm.config import ConfigError, read_yaml

BUNDLED_TEMPLATES = Path(__file__).resolve().parents[1] / "bundled" / "templates"
DEFAULT_TEMPLATE = "alpaca"
_FIELD = re.compile(r"\{(instruction|input)\}")


class TemplateError(ConfigError):
    """A template name, file or mapping is wrong (the message names which)."""


@dataclass
class Template:
    name: str                                        # short name, stored with the model
    prompt: str                                      # text with {instruction} (and maybe {input})
    input: str = "\n\n{input}"                       # block with {input}, added when input is not empty
    response: str = "\n"                             # ends every prompt; the answer follows it
    stop: list[str] = field(default_factory=list)    # generation ends before any of these strings
    description: str = ""                            # one line for `--template` listings

    def to_dict(self) -> dict[str, Any]:
        """The mapping stored under ``template:`` in a model directory's config.yaml."""
        return asdict(self)


def _substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace {instruction} / {input} in one pass (braces inside the values stay as they are)."""
    return _FIELD.sub(lambda m: values[m.group(1)], text)


def from_mapping(data: Mapping[str, Any], where: str = "template") -> Template:
    """A :class:`Template` from a YAML mapping, with errors that say what is wrong where."""
    if not isinstance(data, Mapping):
        raise TemplateError(f"{where}: expected a mapping with 'prompt', got {type(data).__name__}")
    known = {"name", "prompt", "input", "response", "stop", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TemplateError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                            f"known: {', '.join(sorted(known))}")
    if "prompt" not in data:
        raise TemplateError(f"{where}: missing 'prompt'")
    for key in ("name", "prompt", "input", "response", "description"):
        if key in data and not isinstance(data[key], str):
            raise TemplateError(f"{where}: '{key}' must be a string, not {type(data[key]).__name__}")
    if "{instruction}" not in data["prompt"]:
        raise TemplateError(f"{where}: 'prompt' must contain {{instruction}}")
    if "input" in data and "{input}" not in data["input"]:
        raise TemplateError(f"{where}: 'input' must contain {{input}}")
    stop = data.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise TemplateError(f"{where}: 'stop' must be a list of non-empty strings")
    kwargs = {k: data[k] for k in ("prompt", "input", "response", "description") if k in data}
    return Template(name=data.get("name") or "custom", stop=list(stop), **kwargs)


def builtin_names() -> list[str]:
    """Names of the templates shipped in ``tinyllm/bundled/templates``."""
    return sorted(p.stem for p in BUNDLED_TEMPLATES.glob("*.yaml"))


def load_template(spec: "Template | Mapping[str, Any] | str | Path | None" = None) -> Template:
    """A template from a built-in name, a YAML file path, a mapping (config.yaml) or None (alpaca)."""
    if isinstance(spec, Template):
        return spec
    if spec is None or spec == "":
        spec = DEFAULT_TEMPLATE
    if isinstance(spec, Mapping):
        return from_mapping(spec, "config.yaml: template")
    ref = str(spec)
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise TemplateError(f"{path}: no such template file")
        data = read_yaml(path)
        data.setdefault("name", path.stem)
        return from_mapping(data, str(path))
    builtin = BUNDLED_TEMPLATES / f"{ref}.yaml"
    if builtin.is_file():
        return from_mapping(read_yaml(builtin), str(builtin))
    raise TemplateError(f"unknown template {ref!r}: not a file, and not one of the built-in "
                        f"templates ({', '.join(builtin_names())})")


def format_prompt(template: "Template | Mapping[str, Any] | str | None", instruction: str,
                  input: str = "") -> str:
    """The prompt for one entry, ending with the response marker (the model continues from here)."""
    t = load_template(template)
    values = {"instruction": instruction, "input": input or ""}
    text = _substitute(t.prompt, values)
    if values["input"].strip() and "{input}" not in t.prompt:
        text += _substitute(t.input, values)
    return text + t.response


def stop_strings(template: "Template | Mapping[str, Any] | str | None") -> list[str]:
    """Strings at which generation stops (the answer never contains them)."""
    return list(load_template(template).stop)


def extract_response(template: "Template | Mapping[str, Any] | str | None", text: str,
                     prompt: str | None = None) -> str:
    """Only the answer from generated text: drop the prompt (or everything up to the last response
    marker), cut at the first stop string, and strip surrounding whitespace."""
    t = load_template(template)
    if prompt is not None and text.startswith(prompt):
        text = text[len(prompt):]
    else:
        marker = t.response.strip()
        if marker and marker in text:
            text = text[text.rindex(marker) + len(marker):]
    cut = min((text.find(s) for s in t.stop if s in text), default=len(text))
    return text[:cut].strip()


def join_conversation(messages: list[Mapping[str, str]]) -> str:
    """A conversation as plain text for a language model without a chat template, kept the way
    ``tinyllm chat`` keeps it: system text and each reply followed by a blank line, each user
    message by a newline, so the model continues after the last user message (and a blank line
    ends its reply). ``messages`` are ``{"role", "content"}`` mappings, OpenAI-style."""
    out = []
    for m in messages:
        text = m.get("content") or ""
        out.append(text + "\n" if m.get("role") == "user" else text.rstrip("\n") + "\n\n")
    return "".join(out)
