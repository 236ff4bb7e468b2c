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

Chat templates. Imported chat models (SmolLM2-Instruct, Llama 3 Instruct, Qwen2.5-Instruct) bring
a Hugging Face chat template: Jinja source that turns a list of messages
(``{"role": "system" | "user" | "assistant", "content": str}``) into the model's prompt. It lives
in ``chat_template.jinja`` in the model directory and is rendered as transformers renders it: a
sandboxed Jinja environment (``ImmutableSandboxedEnvironment``, trim_blocks, lstrip_blocks, the
``raise_exception``/``strftime_now`` globals and a ``tojson`` that keeps Unicode).
:class:`ChatTemplate` also says where a reply ends: the tokenizer's end-of-sequence token and
the end-of-turn markers its template writes. Used as an instruct template (``finetune instruct``
from a chat model), an entry becomes one user turn and the response the assistant's.
"""
from __future__ import annotations

import json
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


# ---- chat templates (Jinja, from Hugging Face tokenizer_config.json or GGUF metadata) ----------
CHAT_TEMPLATE_FILE = "chat_template.jinja"
# end-of-turn markers of the common chat formats; a template that writes one stops a reply there
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>",
               "<|endoftext|>", "</s>")


class ChatTemplateError(TemplateError):
    """A chat template that does not compile or fails to render (the message names the file)."""


@dataclass
class ChatTemplate:
    source: str                       # the Jinja text (Hugging Face chat_template)
    bos_token: str = ""               # the strings the template may write as {{ bos_token }}...
    eos_token: str = ""               # ... and {{ eos_token }}
    name: str = "chat"                # short name, stored with the model
    where: str = CHAT_TEMPLATE_FILE   # the file, for messages
    response: str = ""                # instruct-template compatibility: the answer follows the prompt

    def __post_init__(self) -> None:
        self._compiled = None

    @property
    def stop(self) -> list[str]:
        """Strings at which a reply ends: the eos token and the end-of-turn markers written."""
        stops = [self.eos_token] if self.eos_token else []
        return stops + [m for m in END_OF_TURN if m in self.source and m not in stops]

    def _template(self):
        if self._compiled is None:
            import jinja2
            from jinja2.ext import Extension, loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            class Generation(Extension):  # {% generation %}...{% endgeneration %}: kept as is
                tags = {"generation"}

                def parse(self, parser):
                    lineno = next(parser.stream).lineno
                    body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
                    return jinja2.nodes.Scope(body).set_lineno(lineno)

            def raise_exception(message):
                raise jinja2.exceptions.TemplateError(message)

            def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
                return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                                  separators=separators, sort_keys=sort_keys)

            def strftime_now(fmt):
                import datetime

                return datetime.datetime.now().strftime(fmt)

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[Generation, loopcontrols])
            env.filters["tojson"] = tojson
            env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
            try:
                self._compiled = env.from_string(self.source)
            except jinja2.TemplateSyntaxError as e:
                raise ChatTemplateError(f"{self.where}:{e.lineno}: the chat template does not "
                                        f"compile ({e.message})") from None
        return self._compiled

    def render(self, messages: list[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt for ``messages``; with ``add_generation_prompt`` it ends where the
        assistant's reply begins."""
        import jinja2

        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) \
                    or not isinstance(m.get("content"), str):
                raise ChatTemplateError(f"message {i}: expected {{'role': str, 'content': str}}, "
                                        f"got {m!r:.80}")
        template = self._template()
        try:
            return template.render(
                messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token, tools=None, documents=None)
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"{self.where}: the chat template failed to render: "
                                    f"{e.message or e}") from None
        except Exception as e:  # a template's own error (a bad index, a type mix-up)
            raise ChatTemplateError(f"{self.where}: the chat template failed to render: "
                                    f"{type(e).__name__}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The mapping stored under ``template:`` in config.yaml (an instruct model fine-tuned
        from a chat model)."""
        return {"name": self.name, "chat_template": self.source, "bos_token": self.bos_token,
                "eos_token": self.eos_token}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "template") -> "ChatTemplate":
        if not isinstance(data.get("chat_template"), str):
            raise TemplateError(f"{where}: 'chat_template' must be a string")
        return cls(source=data["chat_template"], bos_token=data.get("bos_token") or "",
                   eos_token=data.get("eos_token") or "", name=data.get("name") or "chat",
                   where=where)


def read_chat_template(model_dir: str | Path, tokenizer=None) -> ChatTemplate | None:
    """The chat template stored in a model directory (None when it has none). ``tokenizer``
    supplies the bos/eos strings the template writes."""
    path = Path(model_dir) / CHAT_TEMPLATE_FILE
    if not path.is_file():
        return None
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ChatTemplateError(f"{path}: unreadable ({e})") from None
    return ChatTemplate(source, bos_token=getattr(tokenizer, "bos_token", None) or "",
                        eos_token=getattr(tokenizer, "eos_token", None) or "", where=str(path))


def builtin_names() -> list[str]:
    """Names of the templates shipped in ``tinyllm/bundled/templates``."""
    return sorted(p.stem for p in BUNDLED_TEMPLATES.glob("*.yaml"))


def load_template(spec: "Template | ChatTemplate | Mapping[str, Any] | str | Path | None" = None
                  ) -> "Template | ChatTemplate":
    """A template from a built-in name, a YAML file path, a mapping (config.yaml) or None (alpaca).

    A mapping with ``chat_template`` (Jinja source) is a :class:`ChatTemplate`."""
    if isinstance(spec, (Template, ChatTemplate)):
        return spec
    if spec is None or spec == "":
        spec = DEFAULT_TEMPLATE
    if isinstance(spec, Mapping):
        if "chat_template" in spec:
            return ChatTemplate.from_mapping(spec, "config.yaml: template")
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
    """The prompt for one entry, ending with the response marker (the model continues from here).

    With a chat template the entry is one user turn (instruction, then the input after a blank
    line), rendered up to where the assistant's reply begins."""
    t = load_template(template)
    if isinstance(t, ChatTemplate):
        content = instruction + (f"\n\n{input}" if (input or "").strip() else "")
        return t.render([{"role": "user", "content": content}], add_generation_prompt=True)
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
