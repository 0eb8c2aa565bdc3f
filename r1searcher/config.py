"""Typed configuration: dataclasses, YAML files, dotted command-line overrides.

    cfg = load_config("stage2", ["train.lr=1e-6", "rollout.n_samples=8"])

A config is a YAML file path, or the name of one shipped inside the package (``r1searcher/configs/``:
``tiny``, ``stage1``, ``stage2``, …, with or without ``.yaml``), so an installed wheel finds them from
any folder. Unknown keys are errors that name the key and the closest valid one; override values are
parsed as YAML scalars and must match the field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    name: str = "smollm2"  # "smollm2" (embedded), "qwen-coder-0.5b" (opt-in wheels), or a local HF folder
    dtype: str = "auto"  # auto: bf16 on CUDA and on CPUs with AMX/AVX512-BF16 (not for full CPU fine-tuning), else fp32
    device: str = "auto"
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_layers: str = "all"  # "all" or "top:N" (adapt only the top N decoder layers)
    cache_dir: str = ""  # cache root for converted models and built indexes ("" = r1searcher.paths.cache_root())


@dataclass
class RetrievalConfig:
    index: str = ""  # folder of a saved index (bm25 / dense / hybrid)
    server: str = ""  # URL of a retrieval server (R1-Searcher /queries or Search-R1 /retrieve)
    top_k: int = 3  # paper: 3 in training, 5 in evaluation
    max_doc_words: int = 100  # cap on each inserted passage's words
    timeout_s: float = 30.0
    retries: int = 3


@dataclass
class RolloutConfig:
    n_samples: int = 4  # samples per question (a GRPO group)
    temperature: float = 1.0
    top_p: float = 0.95
    greedy: bool = False
    max_searches: int = 8  # paper: 8 in training, 9 in evaluation
    max_new_tokens_per_turn: int = 512
    max_response_tokens: int = 4096  # policy + inserted tokens after the prompt
    prompt: str = "base"  # "base" (User:/Assistant: <think>) or "chat" (the tokenizer's template)
    few_shot: bool = True  # add one worked example to the instruction
    shots: int = 1  # with few_shot: 1 = the 2-hop example; 2 = a 1-hop example, then the 2-hop one (prompts.examples)
    batch_size: int = 32  # sequences decoded together
    on_retriever_error: str = "raise"  # after retrieval.retries: "raise" RetrieverError, or "stop" (stop reason retriever_error)
    seed: int = 0


@dataclass
class RewardConfig:
    stage: int = 2  # 1: retrieval + format; 2: F1 − format penalty
    retrieval_reward: float = 0.5
    format_reward: float = 0.5
    answer_bonus: bool = False  # stage 1: the released code's ±1 cover-EM term
    format_penalty: float = 2.0  # paper/Qwen: 2; released Llama code: 1
    max_answer_words: int = 10  # the Qwen server's ≤10-word answer rule (0 = off)
    found_bonus: float = 0.0  # stage 2, beyond the paper: + this when a gold answer is in the retrieved documents (0 = the paper's reward)


@dataclass
class DataConfig:
    path: str = ""
    limit: int = 0  # 0 = all
    on_error: str = "skip"  # "skip" bad lines (reported) or "fail"
    shuffle: bool = True


@dataclass
class TrainConfig:
    algo: str = "reinforce_pp_baseline"  # reinforce_pp_baseline | reinforce_pp | grpo
    max_steps: int = 100
    max_minutes: float = 0.0  # stop (with a checkpoint) once this much training time is spent; 0 = no limit
    questions_per_step: int = 4
    micro_batch_size: int = 4
    lr: float = 2e-6
    lr_schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 0
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    clip_eps: float = 0.2
    kl_coef: float = 0.0
    kl_estimator: str = "k1"  # k1 | k2 | k3
    kl_in_reward: bool = True
    drop_uniform_groups: bool = False
    seed: int = 0
    save_every: int = 10
    keep_last: int = 2
    init_from: str = ""  # checkpoint to start from (stage 2 from stage 1): a run, checkpoint or model folder
    loss_agg: str = "seq-mean-token-mean"  # seq-mean-token-mean (OpenRLHF, micro-batch 1) | token-mean
    min_lr_ratio: float = 0.1  # cosine decays to min_lr_ratio × lr (OpenRLHF cosine_with_min_lr)
    recompute_old_logprobs: bool = False  # extra no-grad forward instead of the sampler's log-probs
    gradient_checkpointing: bool = False
    fsdp: bool = False  # under torchrun: shard weights, gradients and AdamW state over ranks (FSDP2; rl/fsdp.py)
    share_prompt: bool = True  # encode each micro-batch's common token prefix once in the training forward (exact)
    log_samples: int = 2  # trajectories per step written to samples.jsonl (0 = none)
    progress: bool = True  # tqdm bar with live reward and searches (against the clock when max_minutes is set)
    eval_every: int = 0  # greedy held-out evaluation every N steps, before the first and after the last (0 = off)
    eval_data: str = ""  # held-out questions for it (a QA file); results in RUN/eval.jsonl and log.jsonl heldout_*
    eval_limit: int = 24  # the first N questions of eval_data: the same slice every time
    stop_when: str = ""  # end the stage once all hold on the mean of the last stop_window steps, e.g.
    # "frac_with_search>=0.8, reward_format>=0.4" (stage 1: the format holds; rl/stopping.py)
    stop_window: int = 2
    # trackers mirroring log.jsonl and samples live: tensorboard | wandb | trackio | none, a list or a comma
    # string (r1searcher/trackers.py; optional packages; WANDB_MODE=offline, Trackio's store is local)
    report_to: Any = field(default_factory=list)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/default"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    pass


def _closest(key: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)``: a key whose last part abbreviates this one's words (``learning_rate`` →
    ``lr``) or equals it in another section, else the closest spelling (if any is close)."""
    section, _, leaf = key.rpartition(".")
    initials = "".join(w[0] for w in leaf.lower().split("_") if w)

    def rank(opt: str) -> tuple:
        osec, _, oleaf = opt.rpartition(".")
        return (osec != section, opt)

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
    """``(dotted key, old value, new value)`` for every leaf that differs between two config dicts."""
    out = []
    for key in sorted(set(old) | set(new), key=lambda k: (k not in old, str(k))):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_configs(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def _field_type(obj: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    return hints[name]


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        typ = args[0]
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
    if typ is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return value
    return value


def _apply(obj: Any, data: dict, prefix: str = "") -> None:
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'{_closest(full, [prefix + n for n in names])}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(current))}")
            _apply(current, value, f"{full}.")
        else:
            setattr(obj, key, _coerce(value, _field_type(obj, key), full))


def _all_keys(obj: Any, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out += _all_keys(v, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``a.b=value`` overrides (value parsed as a YAML scalar)."""
    valid = _all_keys(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. train.lr=1e-6)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in valid:
            raise ConfigError(f"unknown config key '{key}'{_closest(key, valid)}")
        value = yaml.safe_load(raw) if raw.strip() else ""
        nested: dict = {}
        cur = nested
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
        _apply(cfg, nested)
    return cfg


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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (if any: a path or a packaged config's name), then the dotted overrides."""
    cfg = Config()
    if path:
        p = resolve_config(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{p}: YAML syntax error{where}: {what}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        try:
            _apply(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
