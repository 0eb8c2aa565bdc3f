"""The ``demo`` section: ``r1searcher demo``'s knobs (its flags' defaults are read from here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from r1searcher.settings.fields import Section, knob


@dataclass(frozen=True)
class DemoSpec(Section):
    """What one demo run does: its world, budget, evaluation slices and the RL curriculum."""

    SECTION: ClassVar[str] = "demo"
    task: str = knob("synthetic", "the questions and corpus: a seeded fictional world, or HotpotQA (the shared corpus)",
                     choices=("synthetic", "hotpotqa"))
    minutes: float = knob(30.0, "wall-clock budget of the whole demo, evaluations included", gt=0)
    out: str = knob("runs/demo", "the demo's folder (run again with the same one to resume)")
    entities: int = knob(120, "synthetic world size", ge=8)
    seed: int = knob(0, "seed of the world and of training")
    eval_questions: int = knob(40, "held-out questions per method (synthetic: 2-hop ones, plus eval_one_hop 1-hop ones)",
                               ge=1)
    eval_hops: int = knob(2, "synthetic: the hop count the comparison is about (0 = all)", ge=0)
    eval_one_hop: int = knob(20, "synthetic: held-out 1-hop questions per method (RL must not lose them)", ge=0)
    monitor_questions: int = knob(16, "a separate held-out slice evaluated during training (half 1-hop, half 2-hop)",
                                  ge=0)
    stage1_max_share: float = knob(0.4, "stage 1 ends when the format holds (train.stop_when), at most this share of "
                                   "the training time", gt=0, le=1)
    stage1_hops: int = knob(2, "curriculum: stage 1 trains on 1..N-hop questions", ge=1)
    stage2_hops: int = knob(3, "curriculum: stage 2 trains on 1..N-hop questions", ge=1)
    stage2_weights: str = knob("1:2,2:3,3:1", "synthetic: times each h-hop training question appears in stage 2's "
                               "data, hop:weight,... (0 drops a hop)")
    model: str = knob("qwen-coder-0.5b", "qwen-coder-0.5b (installed by make demo), smollm2 (embedded), or a local "
                      "HF folder")
    prose: str = knob("varied", "synthetic: several phrasings per fact and distractor sentences (generalises beyond "
                      "templates), or plain", choices=("plain", "varied"))
    overrides: tuple = knob((), "training config overrides key=value applied to both stages (e.g. train.lr=2e-5)")
