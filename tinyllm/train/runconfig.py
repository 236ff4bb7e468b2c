"""A training run's configuration: a YAML file and/or a preset, CLI options, ``--set key=value``.

A run config is a mapping with three keys::

    name: shakespeare-char          # optional; names the default output directory
    model: {preset: small, dropout: 0.1, ...}   # a model preset and/or ModelConfig fields
    train: {data: ../data/tinyshakespeare.txt, tokenizer: char, lr: 1e-3, ...}   # TrainConfig fields

Precedence: the YAML (or a training preset from ``tinyllm/bundled/presets/``) < CLI options < ``--set``.
Relative paths inside a YAML resolve against the YAML's folder; paths on the command line against
the current directory. ``--set`` takes ``train.lr=3e-4``, ``model.n_layer=4`` or a bare ``lr=3e-4``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tinyllm.config import (ENCODER_FAMILIES, PRESETS, ConfigError, EncoderConfig, ModelConfig,
                            TrainConfig, from_dict, model_config, parse_override, read_yaml, to_dict)

PRESETS_DIR = Path(__file__).resolve().parents[1] / "bundled" / "presets"
RUN_FILE = "train.yaml"
TOP_KEYS = ("name", "model", "train")
PATH_KEYS = ("data", "cache_dir", "out", "init_from")
DEFAULT_MODEL_PRESET = "tiny"
DEFAULT_PRESETS = {"lm": DEFAULT_MODEL_PRESET, "mlm": "bert-tiny"}  # by train.objective
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
_MODEL_FIELDS = {f.name for f in fields(ModelConfig)} | {f.name for f in fields(EncoderConfig)} | {"preset"}


@dataclass
class RunConfig:
    name: str
    model: dict[str, Any]      # ModelConfig fields (a "preset" key already expanded); vocab_size may be unset
    train: TrainConfig
    source: str | None = None  # the YAML it came from, for messages

    @property
    def out(self) -> Path:
        return Path(self.train.out)

    def model_config(self, **overrides: Any) -> ModelConfig | EncoderConfig:
        return model_config({**self.model, **overrides}, f"{self.source or 'config'}: model")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": dict(self.model), "train": to_dict(self.train)}


def training_presets() -> dict[str, Path]:
    """Training preset YAMLs shipped in the package, by name."""
    return {p.stem: p for p in sorted(PRESETS_DIR.glob("*.yaml"))}


def _load_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(TOP_KEYS)}")
    for key in ("model", "train"):
        if data.get(key) is None:
            data[key] = {}
        if not isinstance(data[key], dict):
            raise ConfigError(f"{path}: '{key}' must be a mapping")
    for key in PATH_KEYS:  # relative paths in a YAML are relative to the YAML
        v = data["train"].get(key)
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute():
            candidate = path.parent / v
            if key != "init_from" or candidate.exists():
                data["train"][key] = str(candidate.resolve())
    data.setdefault("name", path.stem)
    return data


def _set(data: dict[str, Any], item: str) -> None:
    keys, value = parse_override(item)
    if len(keys) == 1:
        k = keys[0]
        if k == "name":
            data["name"] = str(value)
            return
        if k in _TRAIN_FIELDS:
            keys = ["train", k]
        elif k in _MODEL_FIELDS:
            keys = ["model", k]
        else:
            raise ConfigError(f"--set {item!r}: unknown key {k!r} (not a train or model field)")
    if len(keys) != 2 or keys[0] not in ("model", "train"):
        raise ConfigError(f"--set {item!r}: use train.KEY=VALUE, model.KEY=VALUE or a bare KEY")
    section, k = keys
    known = _TRAIN_FIELDS if section == "train" else _MODEL_FIELDS
    if k not in known:
        raise ConfigError(f"--set {item!r}: unknown {section} key {k!r}; known: {', '.join(sorted(known))}")
    data[section][k] = value


def expand_model(model: dict[str, Any], where: str) -> dict[str, Any]:
    """``{preset: small, dropout: 0.1}`` -> the preset's fields with the overrides."""
    model = dict(model)
    name = model.pop("preset", None)
    if name is not None:
        if name not in PRESETS:
            raise ConfigError(f"{where}: unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
        model = {**PRESETS[name], **model}
    return model


def load_run(config: str | Path | None = None, preset: str | None = None, *, data: str | None = None,
             tokenizer: str | None = None, out: str | None = None, max_steps: int | None = None,
             eval_every: int | None = None, save_every: int | None = None, seed: int | None = None,
             sets: tuple[str, ...] | list[str] = (), resume: bool = False,
             objective: str | None = None) -> RunConfig:
    """Resolve the run from the CLI's arguments (see the module docstring for the precedence).

    With ``resume``, an existing ``OUT/train.yaml`` is the base instead, and only the step counts,
    eval/save intervals and ``--set train.*`` may change; the model may not.
    """
    options = {"data": data, "tokenizer": tokenizer, "out": out, "max_steps": max_steps,
               "eval_every": eval_every, "save_every": save_every, "seed": seed,
               "objective": objective}
    options = {k: v for k, v in options.items() if v is not None}
    for k in ("data", "out"):
        if k in options:
            options[k] = str(Path(options[k]).expanduser().resolve())

    if resume and out is not None and (Path(out) / RUN_FILE).is_file():
        return _resume_run(Path(out), options, sets)

    source = None
    if config is not None:
        source = str(config)
        raw = _load_yaml(Path(config))
    else:
        raw = {"model": {}, "train": {}}
    if preset is not None:
        tpresets = training_presets()
        if preset in PRESETS:
            raw["model"]["preset"] = preset
        elif preset in tpresets:
            if config is not None:
                raise ConfigError(f"--preset {preset} is a training preset (a whole config); give it "
                                  f"or {config}, not both")
            source = str(tpresets[preset])
            raw = _load_yaml(tpresets[preset])
        else:
            raise ConfigError(f"unknown preset {preset!r}; model presets: {', '.join(PRESETS)}; "
                              f"training presets: {', '.join(tpresets) or 'none'}")
    raw["train"].update(options)
    goal = raw["train"].get("objective", "lm")
    for item in sets:  # --set objective=mlm chooses the default model too
        keys, value = parse_override(item)
        if keys in (["objective"], ["train", "objective"]):
            goal = value
    if not raw["model"] and not raw["train"].get("init_from"):
        raw["model"] = {"preset": DEFAULT_PRESETS.get(goal, DEFAULT_MODEL_PRESET)}
    model_preset = raw["model"].get("preset")
    for item in sets:
        _set(raw, item)
    if goal == "mlm":
        raw["train"].setdefault("tokenizer", "wordpiece")  # an encoder reads [CLS] ... [SEP]
    model = expand_model(raw["model"], source or "config")
    train = from_dict(TrainConfig, raw["train"], f"{source or 'config'}: train")
    if train.data is None and resume:
        if out is None:
            raise ConfigError("--resume needs --out, the directory of the run to continue")
        raise ConfigError(f"no run in {out} to resume (no {RUN_FILE}); give --out the directory "
                          "of a run, or --data FILE to start one there")
    if raw["model"] and not train.init_from:
        check_objective(train.objective, model.get("family"), source or "config")
    if train.data is None:
        raise ConfigError("no training data: give --data FILE (a UTF-8 text file) or train.data in "
                          "the config")
    name = raw.get("name") or f"{model_preset or 'model'}-{Path(train.data).stem}"
    if train.out is None:
        from tinyllm.modeldir import models_home

        train.out = str(models_home() / str(name))
    run = RunConfig(name=str(name), model=model, train=train, source=source)
    if "vocab_size" in model or not train.init_from:
        run.model_config(vocab_size=model.get("vocab_size", 1))  # validate the shape early
    return run


def check_objective(objective: str, family: str | None, where: str) -> None:
    """Encoders pretrain with ``mlm``, decoders with ``lm``; a mismatch says which to use."""
    encoder = family in ENCODER_FAMILIES
    if objective == "mlm" and not encoder:
        raise ConfigError(f"{where}: objective mlm trains an encoder; choose an encoder model "
                          f"(--preset bert-tiny, minilm-l6, bert-base, ...)")
    if objective == "lm" and encoder:
        raise ConfigError(f"{where}: the model is an encoder ({family}); pretrain it with "
                          f"--objective mlm")


def _resume_run(out: Path, options: dict[str, Any], sets) -> RunConfig:
    path = out / RUN_FILE
    raw = read_yaml(path)
    saved = copy.deepcopy(raw)
    for k in ("data", "tokenizer", "objective"):
        if k in options and options[k] != raw["train"].get(k, "lm" if k == "objective" else None):
            raise ConfigError(f"--resume: {out} was trained with {k} {raw['train'].get(k)!r}; "
                              f"it cannot change on resume (drop --{k} or use a new --out)")
    raw["train"].update(options)
    for item in sets:
        _set(raw, item)
    for k in ("data", "tokenizer"):  # --set train.data=... is the same change as --data
        if raw["train"].get(k) != saved["train"].get(k):
            raise ConfigError(f"--resume: {out} was trained with {k} {saved['train'].get(k)!r}; "
                              f"it cannot change on resume (drop --set {k}=... or use a new --out)")
    if expand_model(raw["model"], str(path)) != saved["model"]:
        raise ConfigError(f"--resume: the model of {out} cannot change on resume (see {path})")
    train = from_dict(TrainConfig, raw["train"], f"{path}: train")
    if train.data is None:
        raise ConfigError(f"{path}: no train.data; not a run that `tinyllm train` wrote")
    train.out = str(out.resolve())
    return RunConfig(name=raw.get("name") or out.name, model=saved["model"], train=train,
                     source=str(path))
