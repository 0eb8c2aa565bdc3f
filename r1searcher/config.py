"""The one typed config tree: sections, YAML files, dotted overrides, one validation, frozen.

    cfg = load_config("stage2", ["train.lr=1e-6", "rollout.n_samples=8"])
    cfg2 = derive(cfg, {"train.max_minutes": 5.0, "reward.stage": 1})   # a new, validated config

A config is a YAML file path, or the name of one shipped inside the package (``r1searcher/configs/``:
``tiny``, ``stage1``, ``stage2``, …, with or without ``.yaml``), so an installed wheel finds them from
any folder. Every knob a user can set is a field of one section (``model``, ``retrieval``,
``rollout``, ``reward``, ``data``, ``train``, ``eval``, ``demo``, ``web``, ``serve``, ``judge``; the classes
live in :mod:`r1searcher.settings`), with one help string, shown by ``r1searcher config``.

Loading is one pass: defaults, the YAML file, the overrides, then the environment variables named in
a field's help for the fields still unset, then :func:`~r1searcher.settings.validate.validate`.
Unknown keys are errors that name the key and the closest valid one; override values are parsed as
YAML scalars and must match the field's type; a value out of range or a combination that cannot
work fails here, in one line naming the key. The tree is frozen: a command derives its config by
override (:func:`derive`), which is validated the same way. A saved config holds the web and judge keys
masked.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from r1searcher.settings.demo import DemoSpec
from r1searcher.settings.env import section_env
from r1searcher.settings.evaluation import EvalConfig
from r1searcher.settings.fields import ConfigError, field_help
from r1searcher.settings.judge import JudgeConfig
from r1searcher.settings.serve import ServerLimits
from r1searcher.settings.training import (DataConfig, ModelConfig, RetrievalConfig, RewardConfig, RolloutConfig,
                                          TrainConfig)
from r1searcher.settings.validate import validate
from r1searcher.settings.web import SECRET_FIELDS, URL_FIELDS, WebConfig

__all__ = ["Config", "ConfigError", "DataConfig", "DemoSpec", "EvalConfig", "ModelConfig", "RetrievalConfig",
           "JudgeConfig", "RewardConfig", "RolloutConfig", "ServerLimits", "TrainConfig", "WebConfig", "apply_overrides",
           "config_fields", "derive", "diff_configs", "load_config", "save_config", "validate"]

MASK = "***"  # how a saved config shows a secret (r1searcher.util.redact.MASK)


@dataclass(frozen=True)
class Config:
    """The whole tree. Sections after ``out`` are the other commands' knobs, saved with every run too."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the policy model"})
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig, metadata={"help": "the search backend"})
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"help": "sampling and the search loop"})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"help": "the reward (stage 1 or 2)"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "the training questions"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "the RL loop"})
    out: str = field(default="runs/default", metadata={"help": "the run folder (train --out wins)"})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "r1searcher eval's setup"})
    demo: DemoSpec = field(default_factory=DemoSpec, metadata={"help": "r1searcher demo's knobs"})
    web: WebConfig = field(default_factory=WebConfig, metadata={"help": "the live web retriever (--web)"})
    serve: ServerLimits = field(default_factory=ServerLimits, metadata={"help": "the retrieval server's limits"})
    judge: JudgeConfig = field(default_factory=JudgeConfig, metadata={"help": "the LLM judge (r1searcher metrics --judge)"})

    def __post_init__(self) -> None:
        validate(self)  # the checks between fields, whichever way the tree is made

    def to_dict(self) -> dict:
        """The tree as plain data, fit to print or save (web and judge keys, URL credentials masked)."""
        out = _plain(dataclasses.asdict(self))
        out["web"] = _plain(self.web.shown())
        out["judge"] = _plain(self.judge.shown())
        return out

    def derive(self, overrides: Mapping[str, Any] | list[str]) -> Config:
        """A new config with ``overrides`` applied (see :func:`derive`)."""
        return derive(self, overrides)



def _closest(key: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)``: a key whose last part abbreviates this one's words (``learning_rate`` →
    ``lr``) or equals it in another section, else the closest spelling (if any is close)."""
    section, _, leaf = key.rpartition(".")
    initials = "".join(w[0] for w in leaf.lower().split("_") if w)

    def rank(opt: str) -> tuple:  # the key's own section first, then the tree's order (training sections first)
        return (opt.rpartition(".")[0] != section, options.index(opt))

    def squash(s: str) -> str:
        return s.lower().replace("_", "").replace("-", "")

    leaves = {o: o.rpartition(".")[2] for o in options}
    for cands in ([o for o, lf in leaves.items() if lf == leaf],
                  [o for o, lf in leaves.items() if squash(lf) == squash(leaf)],
                  [o for o, lf in leaves.items() if len(initials) > 1 and lf == initials]):
        if cands:
            return f" (did you mean '{sorted(cands, key=rank)[0]}'?)"
    same = {o: lf for o, lf in leaves.items() if o.rpartition(".")[0] == section}
    for pool, cutoff in ((same, 0.4), (leaves, 0.6)):  # a near spelling in the key's own section first
        close = difflib.get_close_matches(leaf, sorted(set(pool.values())), n=1, cutoff=cutoff)
        if close:
            return f" (did you mean '{sorted((o for o, lf in pool.items() if lf == close[0]), key=rank)[0]}'?)"
    return ""


def diff_configs(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every leaf that differs between two config dicts.
    A whole section the old dict lacks (a config saved before that section existed) is not a change."""
    out = []
    for key in sorted(set(old) | set(new), key=lambda k: (k not in old, str(k))):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_configs(a, b, f"{prefix}{key}.")
        elif a is None and isinstance(b, dict) and key not in old:
            continue
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def _plain(d: Any) -> Any:
    """Tuples as lists (YAML and JSON write them alike), recursively."""
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    return d


def _type_name(typ: Any) -> str:
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return f"{_type_name(args[0])} | None"
    return "any" if typ is Any else getattr(typ, "__name__", str(typ))


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """``value`` as the field type ``typ`` (ints for floats, numbers for strings), else a ConfigError."""
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        if value is None:
            return None
        typ = [a for a in typing.get_args(typ) if a is not type(None)][0]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got str {value!r}") from None
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if typ in (int, float, str, bool):
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
        return value
    if typ in (list, tuple) or typing.get_origin(typ) in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(value) if typ is tuple or typing.get_origin(typ) is tuple else list(value)
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str = "", env: bool = True, make: Any = None) -> Any:
    """An instance of the dataclass ``cls`` from ``data`` (nested mappings for sections): unknown keys,
    wrong types and values its fields' checks refuse are ConfigErrors naming the dotted key. With
    ``env``, fields ``data`` leaves unset take their documented environment variable. ``make`` (default
    ``cls``) is called with the fields: ``dict`` checks the sections without the checks between them."""
    flds = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in flds:
            raise ConfigError(f"unknown config key '{full}'{_closest(full, [prefix + n for n in flds])}")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{full}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(typ))}")
            kwargs[key] = _build(typ, value, f"{full}.", env)
        elif not (key in SECRET_FIELDS + URL_FIELDS and MASK in str(value)):  # a saved config's masked secret: unset
            kwargs[key] = _coerce(value, typ, full)
    for key, f in flds.items():
        if key not in kwargs and dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _build(hints[key], {}, f"{prefix}{key}.", env)
    if env:
        kwargs.update(section_env(cls, kwargs))
    return (make or cls)(**kwargs)


def _leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """``(dotted key, field, type)`` of every leaf of the dataclass ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, hints[f.name]


def _all_keys(cls: type = Config) -> list[str]:
    return [k for k, _, _ in _leaves(cls)]


def config_fields() -> list[dict[str, Any]]:
    """Every knob of the tree: ``key``, ``type``, ``default`` and ``help`` (for ``r1searcher config``)."""
    rows = []
    for key, f, typ in _leaves(Config):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        rows.append({"key": key, "type": _type_name(typ), "default": _plain(default), "help": field_help(f)})
    return rows


def sections() -> list[tuple[str, str]]:
    """``(name, help)`` of each section of the tree."""
    return [(f.name, f.metadata.get("help", "")) for f in dataclasses.fields(Config)
            if dataclasses.is_dataclass(typing.get_type_hints(Config)[f.name])]


def _nest(items: Mapping[str, Any], into: dict) -> dict:
    """Merge dotted ``{"a.b": v}`` items into the nested dict ``into`` (in place; returned)."""
    for key, value in items.items():
        cur = into
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = cur.get(p)
            cur[p] = nxt = dict(nxt) if isinstance(nxt, Mapping) else {}
            cur = nxt
        cur[parts[-1]] = value
    return into


def _parse_overrides(overrides: list[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``["a.b=value", …]`` (values parsed as YAML scalars) or ``{"a.b": value}``, as a checked dict."""
    valid = _all_keys()
    if isinstance(overrides, Mapping):
        items = dict(overrides)
    else:
        items = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form key=value (e.g. train.lr=1e-6)")
            key, raw = item.split("=", 1)
            items[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    for key in items:
        if key not in valid:
            raise ConfigError(f"unknown config key '{key}'{_closest(key, valid)}")
    return items


def derive(cfg: Config, overrides: list[str] | Mapping[str, Any]) -> Config:
    """A new config: ``cfg`` with ``overrides`` (``["train.lr=1e-3"]`` or ``{"train.lr": 1e-3}``),
    built and validated as a loaded one is; ``cfg`` is left as it was."""
    data = _nest(_parse_overrides(overrides), _plain(dataclasses.asdict(cfg)))
    return _build(Config, data, env=False)  # Config() validates


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """:func:`derive` with ``a.b=value`` strings (the command line's form)."""
    return derive(cfg, overrides)


def packaged_configs_dir() -> Path:
    """The folder of the configs shipped inside the package (package data, so a wheel has it too)."""
    return Path(str(files("r1searcher") / "configs"))  # a real folder: the package is never zip-imported


def config_names() -> list[str]:
    """Names of the packaged configs (``tiny``, ``stage1``, …), sorted."""
    d = packaged_configs_dir()
    return sorted(f.stem for f in d.glob("*.yaml")) if d.is_dir() else []


def resolve_config(name: str | Path) -> Path:
    """A config file: ``name`` itself if it is a file, else the packaged config of that name.

    ``tiny``, ``tiny.yaml`` and ``configs/tiny.yaml`` (the repository's path, as the docs write it)
    all name ``r1searcher/configs/tiny.yaml`` when no such file exists here. Raises
    FileNotFoundError naming the available configs.
    """
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if p.parent in (Path("."), Path("configs")):
        stem = p.name[: -len(".yaml")] if p.name.endswith(".yaml") else p.name
        packaged = packaged_configs_dir() / f"{stem}.yaml"
        if stem and packaged.is_file():
            return packaged
    raise FileNotFoundError(f"config '{name}' not found: no such file and no packaged config of that name "
                            f"(available: {', '.join(config_names()) or 'none'})")


def _read_yaml(p: Path) -> dict:
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}: YAML syntax error{where}: {what}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file (if any: a path or a packaged config's name), then the dotted
    overrides, then the documented environment fallbacks; validated once (a ConfigError names the key)."""
    data: dict = {}
    where = ""
    if path:
        p = resolve_config(path)
        data, where = _read_yaml(p), f"{p}: "
        try:
            _build(Config, data, env=False, make=dict)  # the file's own errors name the file
        except ConfigError as e:
            raise ConfigError(f"{where}{e}") from None
    data = _nest(_parse_overrides(overrides or []), data)
    return _build(Config, data)  # Config() validates


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the whole tree as YAML (web keys masked)."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
