"""The one record a rollout produces and the trainer, rewards and evaluation consume.

Layout of one trajectory (P prompt tokens, R response tokens)::

    prompt_ids   [p0 p1 … pP-1]
    response_ids [ policy … <|end_of_query|> | <|begin_of_documents|> … <|end_of_documents|>\\n\\n | policy … </answer> ]
    loss_mask    [ 1 1 …            1        |  0 0 0 …                                      0    | 1 1 …          1 ]
    logprobs     [ sampler log-prob at mask-1 positions; 0.0 at mask-0 positions ]

The mask is recorded when each token is produced (1 = sampled by the policy, 0 = inserted by the
system); it is never rebuilt by searching for token patterns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from r1searcher.retrieval.base import Passage

#: Stop reasons. Terminated (the task ended): ``answer``, ``eos``. Truncated (an outside limit):
#: ``length``, ``max_searches``, ``empty_query``, ``retriever_error``.
TERMINATED = ("answer", "eos")
TRUNCATED = ("length", "max_searches", "empty_query", "retriever_error")
STOP_REASONS = TERMINATED + TRUNCATED


@dataclass
class Trajectory:
    prompt_ids: list[int]
    response_ids: list[int]
    loss_mask: list[int]  # len == len(response_ids); 1 = policy token, 0 = inserted
    logprobs: list[float]  # len == len(response_ids); sampler log-prob, 0.0 where loss_mask == 0
    text: str = ""  # decoded response (documents included)
    queries: list[str] = field(default_factory=list)
    passages: list[list[Passage]] = field(default_factory=list)  # one list per search
    n_searches: int = 0
    stop_reason: str = "eos"
    question: str = ""
    answer: str | None = None  # extracted prediction (None when no <answer>…</answer>)
    group: int = 0  # index of the question in the batch (samples of one question share it)
    sample: int = 0  # index of this sample within its group
    n_turns: int = 1  # policy turns (searches that got documents + 1)
    n_forced: int = 0  # policy tokens forced by a steer (training's exploration: rollout/steer.py)

    def __post_init__(self) -> None:
        if len(self.loss_mask) != len(self.response_ids):
            raise ValueError(
                f"loss_mask has {len(self.loss_mask)} entries for {len(self.response_ids)} response tokens"
            )
        if self.logprobs and len(self.logprobs) != len(self.response_ids):
            raise ValueError(
                f"logprobs has {len(self.logprobs)} entries for {len(self.response_ids)} response tokens"
            )
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(f"unknown stop reason {self.stop_reason!r}; one of {STOP_REASONS}")

    @property
    def terminated(self) -> bool:
        return self.stop_reason in TERMINATED

    @property
    def truncated(self) -> bool:
        return self.stop_reason in TRUNCATED

    @property
    def n_policy_tokens(self) -> int:
        return sum(self.loss_mask)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passages"] = [[p.to_dict() if isinstance(p, Passage) else p for p in ps] for ps in self.passages]
        return d
