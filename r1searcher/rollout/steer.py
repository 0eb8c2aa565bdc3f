"""Steering: force chosen tokens through the real rollout loop (tests, benchmarks, demos).

A steer is asked, before each token is drawn, whether to force a token for a row. A forced token
goes through exactly the same path as a drawn one: the model still computes the step, the sampler
still draws (and is overridden), the recorded log-prob is the model's ``log_softmax(logits/T)`` of
the forced token, the mask bit is 1, stops are detected on it. This drives queries to chosen places
(property tests of the mask over random segmentations) and makes a benchmark's token counts
deterministic, without replacing any part of the engine.

Training uses two steers, each only when asked: :class:`ExploreSteer` (``train.explore_share`` > 0),
exploration at the search decision, and :class:`StopSteer` (``train.stop_share`` > 0), at the stop
decision (the training loop passes them to its own rollout calls, so a held-out evaluation never
explores).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Protocol

from r1searcher.rollout.row import RowState
from r1searcher.rollout.tags import ANSWER_CLOSE, ANSWER_OPEN, QUERY_CLOSE, QUERY_OPEN, THINK_CLOSE


class Steer(Protocol):
    def __call__(self, row: RowState) -> int | None:
        """The token to force as ``row``'s next policy token, or None to let the sampler draw."""


class ScriptedSteer:
    """Force each row's policy tokens from a script: the k-th policy token of a row is
    ``script[k]``; past the script's end the sampler draws freely.

    ``scripts``: one script per group (a list indexed by ``row.group``), a mapping
    ``(group, sample) -> script``, or a function of the row.
    """

    def __init__(
        self,
        scripts: Sequence[Sequence[int]] | Mapping[tuple[int, int], Sequence[int]] | Callable[[RowState], Sequence[int]],
    ):
        self.scripts = scripts

    def script(self, row: RowState) -> Sequence[int]:
        if callable(self.scripts):
            return self.scripts(row)
        if isinstance(self.scripts, Mapping):
            return self.scripts.get((row.group, row.sample), ())
        return self.scripts[row.group] if row.group < len(self.scripts) else ()

    def __call__(self, row: RowState) -> int | None:
        script = self.script(row)
        k = row.n_policy_tokens
        return int(script[k]) if k < len(script) else None


#: Where an exploring sample's extra query is opened: at the start of the turn after the documents,
#: or after the first sentence of that turn (the policy has stated what it read, as in the worked
#: example: "X was founded by Y. Now I need …").
EXPLORE_AT = ("turn", "sentence")
#: "sentence": a first sentence longer than this many tokens is not waited for (no extra query).
MAX_SENTENCE_TOKENS = 96


class ExploreSteer:
    """Exploration at the search decision: in each group of ``n`` samples, the last
    ``round(share * n)`` open another query at the start of every policy turn that follows fewer than
    ``min_searches`` searches (the ``<|begin_of_query|>`` tag is forced; the query, the thought after
    its documents and the answer are the policy's own). ``at``: ``"turn"`` forces the tag as the
    turn's first tokens, ``"sentence"`` after the turn's first sentence (:data:`EXPLORE_AT`).

    Why: once every sample of a 2-hop group searches once and answers, the group scores 0 together
    and no outcome reward can bring the second search back (BENCHMARKS.md, "The demo at its budget").
    Forced samples keep two-search trajectories in every group, so the reward compares searching
    again with answering, question by question. The forced tag stays in the loss with the policy's own
    log-prob as its "old" one (what the engine records for a forced token): its advantage trains the
    decision itself, up where the second search paid (a 2-hop question) and down where it did not.
    That gradient is off-policy (the tag was not drawn), which is the price of exploring.
    """

    def __init__(self, tokenizer, n: int, share: float, min_searches: int = 2, at: str = "turn"):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        if min_searches < 2:
            raise ValueError(f"min_searches must be >= 2 (a first search is the policy's own), got {min_searches}")
        if at not in EXPLORE_AT:
            raise ValueError(f"at must be one of {EXPLORE_AT}, got {at!r}")
        self.tokenizer = tokenizer
        # as the policy would write it there: first in the turn, or after a sentence and a space
        self.tag = tokenizer.encode(QUERY_OPEN if at == "turn" else " " + QUERY_OPEN, add_special_tokens=False)
        self.first = n - round(share * n)  # samples first..n-1 of every group explore
        self.min_searches = min_searches
        self.at = at

    def explores(self, row: RowState) -> bool:
        return self.takes(row.sample)

    def takes(self, sample: int) -> bool:
        """A group's ``sample``-th sample is in this arm."""
        return sample >= self.first

    def __call__(self, row: RowState) -> int | None:
        if not self.explores(row) or not 1 <= len(row.passages) < self.min_searches:
            return None
        turn = row.turn
        if self.at == "turn":
            k = len(turn)
            return int(self.tag[k]) if k < len(self.tag) else None
        return _go_on(self.tag, turn, self.tokenizer)


def first_sentence_ends(tokenizer, turn: list[int]) -> bool:
    """The turn so far is one sentence, just ended, with no tag of the policy's own in it."""
    if not turn or len(turn) >= MAX_SENTENCE_TOKENS:
        return False
    text = tokenizer.decode(turn)
    if any(tag in text for tag in (QUERY_OPEN, QUERY_CLOSE, THINK_CLOSE, ANSWER_OPEN)):
        return False  # the policy searched again (or closed its thought) on its own
    return text.rstrip().endswith((".", "!", "?")) and not any(c in text.rstrip()[:-1] for c in ".!?")


def _go_on(tag: list[int], turn: list[int], tokenizer) -> int | None:
    """The next token of ``tag`` when it is forced after the turn's first sentence: the one after the
    part already forced, the first when that sentence has just ended, else None."""
    for k in range(min(len(tag) - 1, len(turn)), 0, -1):  # the tag this steer began: go on with it
        if turn[-k:] == tag[:k] and first_sentence_ends(tokenizer, turn[:-k]):
            return int(tag[k])
    return int(tag[0]) if first_sentence_ends(tokenizer, turn) else None


class StopSteer:
    """Exploration at the stop decision, the mirror of :class:`ExploreSteer`: in each group of ``n``
    samples, the first ``round(share * n)`` close their thought after the first sentence of the turn
    that follows their ``after``-th documents (with ``spread``, their :meth:`after_for`-th:
    1, 2, …, ``after`` in turn; `` </think>\n\n<answer>`` is forced; what they read
    and the answer are the policy's own). A turn that searches or closes its thought before a full
    stop, or whose first sentence runs past ``MAX_SENTENCE_TOKENS``, is left alone.

    Why: under the outcome reward with ``train.uniform_by=answer``, a policy that learned to search
    again on 2-hop questions also chained on 1-hop ones (it read the answer, then searched with it)
    and every sample of such a group scored 0, so the group was dropped and nothing pulled the stop
    back (BENCHMARKS.md, "Groups that differ only by format"). Forced stops keep a one-search answer
    in every group: the reward compares stopping with searching on, question by question, up where
    the answer was in hand (1-hop) and down where it was not (2-hop). As with ``ExploreSteer`` the
    forced tokens stay in the loss with the policy's own log-prob as their "old" one (off-policy).
    """

    def __init__(self, tokenizer, n: int, share: float, after: int = 1, spread: bool = False):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        if after < 1:
            raise ValueError(f"after must be >= 1 (stop after that many searches), got {after}")
        self.tokenizer = tokenizer
        self.tag = tokenizer.encode(f" {THINK_CLOSE}\n\n{ANSWER_OPEN}", add_special_tokens=False)
        self.last = round(share * n)  # samples 0..last-1 of every group stop
        self.after = after
        self.spread = spread

    def stops(self, row: RowState) -> bool:
        return self.takes(row.sample)

    def after_for(self, sample: int) -> int:
        """The searches after which a stopping ``sample`` answers: ``after``, or with ``spread`` the
        stopping samples take 1, 2, …, ``after``, 1, … in turn (one group then compares answering
        after one search, after two, and the policy's own choice)."""
        return 1 + sample % self.after if self.spread else self.after

    def takes(self, sample: int) -> bool:
        """A group's ``sample``-th sample is in this arm."""
        return sample < self.last

    def __call__(self, row: RowState) -> int | None:
        if not self.stops(row) or len(row.passages) != self.after_for(row.sample):
            return None
        return _go_on(self.tag, row.turn, self.tokenizer)


def arm(sample: int, explorer: ExploreSteer | None, stopper: StopSteer | None) -> str:
    """The arm a group's ``sample``-th sample is in: "explored", "stopped" or "natural" (the policy's
    own decisions); the training log sums F1 and searches per arm."""
    if explorer is not None and explorer.takes(sample):
        return "explored"
    if stopper is not None and stopper.takes(sample):
        return "stopped"
    return "natural"


def training_arms(tokenizer, n: int, t, *extra: Steer | None) -> tuple[Steer | None, Callable[[int], str] | None]:
    """The forced arms ``t`` (a ``TrainConfig``) asks for in groups of ``n``: one steer that asks the
    stopper, then the explorer, then ``extra`` (tests' scripts), and sample index → arm
    (:func:`arm`); ``(None, None)`` when neither arm is on. The trainer and ``bench exploration``
    build them here, so both force and label the same samples."""
    explorer = (ExploreSteer(tokenizer, n, t.explore_share, t.explore_searches, t.explore_at)
                if t.explore_share > 0 else None)
    stopper = StopSteer(tokenizer, n, t.stop_share, t.stop_after, t.stop_spread) if t.stop_share > 0 else None
    if explorer is None and stopper is None:
        return None, None
    return chain(stopper, explorer, *extra), partial(arm, explorer=explorer, stopper=stopper)


def chain(*steers: Steer | None) -> Steer | None:
    """One steer that asks ``steers`` in order and forces the first token any of them names."""
    live = [s for s in steers if s is not None]
    if len(live) <= 1:
        return live[0] if live else None

    def first(row: RowState) -> int | None:
        for s in live:
            if (tok := s(row)) is not None:
                return tok
        return None

    return first


def script_tokens(tokenizer, segments: Sequence[str]) -> list[int]:
    """Policy segments (the text between inserted blocks), each tokenised on its own, concatenated:
    the engine stops at the end of each segment that ends with ``<|end_of_query|>``."""
    out: list[int] = []
    for seg in segments:
        out.extend(tokenizer.encode(seg, add_special_tokens=False))
    return out


def search_script(query_words: Sequence[str], answer: str, thought: str, n_searches: int) -> list[str]:
    """Segments of a well-formed trajectory with ``n_searches`` searches (benchmarks, demos)::

        {thought} <|begin_of_query|> q <|end_of_query|>   × n_searches   (documents inserted after each)
        {thought} </think>\\n\\n<answer> {answer} </answer>
    """
    q = " ".join(query_words)
    segs = [f" {thought} {QUERY_OPEN} {q} {QUERY_CLOSE}" for _ in range(n_searches)]
    segs.append(f"{thought} {THINK_CLOSE}\n\n{ANSWER_OPEN} {answer} {ANSWER_CLOSE}")
    return segs
