"""``validate(cfg)``: the checks between fields, run once when a config is loaded or derived.

Each field's own checks (choices, bounds) run when its section is made (:mod:`.fields`); what is
left here are combinations that cannot work, found at load instead of at first use, each as one
line naming the key.
"""

from __future__ import annotations

import re
from typing import Any

from r1searcher.settings.fields import ConfigError
from r1searcher.settings.specs import parse_conditions, parse_report_to

_LORA_LAYERS = re.compile(r"^(all|top:[1-9]\d*)$")


def parse_hop_weights(text: str) -> dict[int, int]:
    """``"1:1,2:3,3:1"`` → ``{1: 1, 2: 3, 3: 1}``: how many times each h-hop training question is
    listed in the demo's stage-2 data (hops not named keep weight 1; weight 0 leaves them out).

    Why the default leans on 2 hops: with the natural mix (40% 1-hop, 50% 2-hop, 10% 3-hop) four
    stage-2 steps taught the policy to search once and answer (see BENCHMARKS.md, "Demo"):
    on a 1-hop question one search is right, while on a 2-hop one a second search is where the
    0.5B model most often loops to the length cap (format penalty −2), so one search and a guess
    (reward 0) beats it in expectation until 2-hop questions dominate the groups."""
    out: dict[int, int] = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        hop, _, w = part.partition(":")
        try:
            h, n = int(hop), int(w)
        except ValueError:
            raise ValueError(f"hop weights look like '1:1,2:3,3:1', got {text!r}") from None
        if h < 1 or n < 0:
            raise ValueError(f"hop weights need hops >= 1 and weights >= 0, got {part!r}")
        out[h] = n
    return out


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _checks(cfg: Any) -> list[tuple[bool, str]]:
    """(broken, one line naming the key) for every combination rule."""
    r, t, m = cfg.rollout, cfg.train, cfg.model
    return [
        (not r.greedy and r.temperature == 0,
         "rollout.temperature: must be > 0 when sampling (set rollout.greedy=true to decode greedily)"),
        (t.eval_every > 0 and not t.eval_data,
         f"train.eval_every: {t.eval_every} needs train.eval_data (a held-out QA file); or set train.eval_every=0"),
        (t.uniform_by != "reward" and not t.drop_uniform_groups,
         f"train.uniform_by: {t.uniform_by} takes effect only with train.drop_uniform_groups=true"),
        (t.fill_groups > 0 and not t.drop_uniform_groups,
         f"train.fill_groups: {t.fill_groups} takes effect only with train.drop_uniform_groups=true"),
        (t.drop_uniform_groups and r.n_samples == 1,
         "train.drop_uniform_groups: with rollout.n_samples=1 every group is uniform and every step is dropped"),
        (t.explore_share > 0 and round(t.explore_share * r.n_samples) == 0,
         f"train.explore_share: {t.explore_share} of rollout.n_samples={r.n_samples} rounds to no sample"),
        (t.explore_share > 0 and t.explore_searches > r.max_searches,
         f"train.explore_searches: {t.explore_searches} is more than rollout.max_searches={r.max_searches}"),
        (t.stop_share > 0 and round(t.stop_share * r.n_samples) == 0,
         f"train.stop_share: {t.stop_share} of rollout.n_samples={r.n_samples} rounds to no sample"),
        (t.stop_share > 0 and t.stop_after > r.max_searches,
         f"train.stop_after: {t.stop_after} is more than rollout.max_searches={r.max_searches}"),
        (t.stop_spread and 0 < round(t.stop_share * r.n_samples) < t.stop_after,
         f"train.stop_spread: {round(t.stop_share * r.n_samples)} stopping sample(s) a group "
         f"(train.stop_share={t.stop_share} of rollout.n_samples={r.n_samples}) cannot spread over "
         f"train.stop_after={t.stop_after} searches; raise stop_share or lower stop_after"),
        (round(t.stop_share * r.n_samples) + round(t.explore_share * r.n_samples) > r.n_samples,
         f"train.stop_share: {t.stop_share} and train.explore_share={t.explore_share} together take more than "
         f"rollout.n_samples={r.n_samples} samples (stops are a group's first samples, explorers its last)"),
        (r.sampler_quant == "int8" and (m.device.startswith("cuda") or m.device == "auto" and _has_cuda()),
         "rollout.sampler_quant: int8 is a CPU decoder; on a GPU use model.dtype=bf16 and rollout.sampler_quant=none"),
        (not _LORA_LAYERS.match(m.lora_layers),
         f"model.lora_layers: must be 'all' or 'top:N' (N >= 1), got {m.lora_layers!r}"),
    ]


def validate(cfg: Any) -> Any:
    """Raise :class:`ConfigError` with the first broken rule; return ``cfg`` (for chaining)."""
    for broken, message in _checks(cfg):
        if broken:
            raise ConfigError(message)
    try:
        parse_hop_weights(cfg.demo.stage2_weights)
    except ValueError as e:
        raise ConfigError(f"demo.stage2_weights: {e}") from None
    try:
        parse_conditions(cfg.train.stop_when)
        parse_report_to(cfg.train.report_to)
    except ValueError as e:  # their messages name the key
        raise ConfigError(str(e)) from None
    return cfg
