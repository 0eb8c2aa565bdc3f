"""Exploration at the search decision (``train.explore_share``, ``rollout/steer.ExploreSteer``) and at
the stop decision (``train.stop_share``, ``StopSteer``) on real parts: a tiny random Llama over the SmolLM2 tokenizer, a real BM25 index, the real engine and
the real training loop. The random model is scripted turn by turn (it would never search on its
own); the exploration steer forces the second query's tag before the script speaks."""

from __future__ import annotations

import json
import math

import pytest

from conftest import make_tiny_causal_lm
from r1searcher.config import ConfigError, RetrievalConfig, RolloutConfig, load_config
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.bm25 import BM25Index
from r1searcher.rollout.engine import RolloutEngine
from r1searcher.rollout.steer import ExploreSteer, StopSteer
from r1searcher.rollout.tags import ANSWER_CLOSE, ANSWER_OPEN, QUERY_CLOSE, QUERY_OPEN, THINK_CLOSE

pytestmark = pytest.mark.usefixtures("one_thread")

#: What the scripted "policy" writes in each turn (index = searches so far), or after a forced tag.
TURNS = [f" find it {QUERY_OPEN} alpha river {QUERY_CLOSE}", f" so {THINK_CLOSE}\n\n{ANSWER_OPEN} one {ANSWER_CLOSE}",
         f" so {THINK_CLOSE}\n\n{ANSWER_OPEN} two {ANSWER_CLOSE}"]
AFTER_TAG = f" beta castle {QUERY_CLOSE}"


class TurnScript:
    """Scripted turns, with ``explore`` asked first: a row whose turn began with the forced tag
    continues with a query (``AFTER_TAG``), every other turn with ``TURNS[searches so far]``."""

    def __init__(self, tokenizer, explore: ExploreSteer | None):
        self.explore = explore
        self.turns = [tokenizer.encode(t, add_special_tokens=False) for t in TURNS]
        self.after_tag = tokenizer.encode(AFTER_TAG, add_special_tokens=False)
        self.tag = tokenizer.encode(QUERY_OPEN, add_special_tokens=False)

    def __call__(self, row):
        if self.explore is not None and (forced := self.explore(row)) is not None:
            return forced
        turn = list(row.turn)
        if self.explore is not None and self.explore.explores(row) and len(row.passages) == 1:
            script = self.tag + self.after_tag  # the tag was forced: the "policy" writes the query
        else:
            script = self.turns[min(len(row.passages), len(self.turns) - 1)]
        return script[len(turn)] if len(turn) < len(script) else None


def script_ids(tok, text):
    return tok.encode(text, add_special_tokens=False)


@pytest.fixture(scope="module")
def engine_parts(smollm_tokenizer):
    words = ["alpha", "beta", "river", "castle", "north", "city"]
    index = BM25Index.build([Passage(str(i), f"T{i}", f"{words[i % 6]} {words[(i * 5) % 6]} fact {i}") for i in range(12)])
    return smollm_tokenizer, make_tiny_causal_lm(smollm_tokenizer), index


def _engine(parts, steer, n=4):
    tok, model, index = parts
    cfg = RolloutConfig(n_samples=n, few_shot=False, max_new_tokens_per_turn=48, max_response_tokens=400, seed=0,
                        max_searches=4, temperature=1.0)
    return RolloutEngine(model, tok, index, cfg, RetrievalConfig(top_k=1, max_doc_words=12), steer=steer)


def test_the_last_share_of_each_group_searches_again_and_the_tag_is_trained_on(engine_parts):
    tok = engine_parts[0]
    explore = ExploreSteer(tok, n=4, share=0.5)
    eng = _engine(engine_parts, TurnScript(tok, None))
    trajs = eng.rollout(["q one", "q two"], steer=TurnScript(tok, explore))
    assert [(t.group, t.sample) for t in trajs] == [(g, s) for g in range(2) for s in range(4)]
    tag = tok.encode(QUERY_OPEN, add_special_tokens=False)
    for t in trajs:
        n_script = len(script_ids(tok, TURNS[0])) + len(script_ids(tok, TURNS[1 if t.sample < 2 else 2]))
        if t.sample < 2:  # the policy's own decision: one search, then the answer (all scripted here)
            assert (t.n_searches, t.n_forced, t.answer) == (1, n_script, "one")
        else:  # made to search again; the rest of the turn is the "policy's" (the script's)
            n_script += len(script_ids(tok, AFTER_TAG)) + len(tag)
            assert (t.n_searches, t.n_forced, t.answer) == (2, n_script, "two")
            assert t.queries == ["alpha river", "beta castle"]
            # the forced tag sits right after the first documents, mask 1, with the policy's own log-prob
            start = min(i for i, m in enumerate(t.loss_mask[:-1]) if m == 0 and t.loss_mask[i + 1] == 1) + 1
            assert t.response_ids[start : start + len(tag)] == tag
            assert all(t.loss_mask[start : start + len(tag)])
            lps = t.logprobs[start : start + len(tag)]
            assert all(lp < 0 and math.isfinite(lp) for lp in lps)
    # the steer was this call's only: the next call (an evaluation) decides alone
    again = eng.rollout(["q one"], n=4)
    assert all(t.n_searches == 1 and t.answer == "one" for t in again)


def test_explore_searches_three_forces_a_third_query_only_after_the_second(engine_parts):
    tok = engine_parts[0]
    explore = ExploreSteer(tok, n=2, share=0.5, min_searches=3)
    script = TurnScript(tok, explore)

    def steer(row):  # after a forced second query, the third is forced too
        forced = explore(row)
        if forced is not None:
            return forced
        if explore.explores(row) and len(row.passages) in (1, 2):
            s = script.tag + script.after_tag
            return s[len(row.turn)] if len(row.turn) < len(s) else None
        return script(row)

    trajs = _engine(engine_parts, None, n=2).rollout(["q"], steer=steer)
    assert [t.n_searches for t in trajs] == [1, 3]
    assert trajs[1].queries == ["alpha river", "beta castle", "beta castle"]


def test_sentence_mode_opens_the_query_after_the_turns_first_sentence(engine_parts):
    """``at="sentence"``: the explorer states what it read first; the tag (space-led, as the policy
    writes it after a sentence) comes after the first full stop, and a turn that closes its thought
    before any full stop is left alone."""
    tok = engine_parts[0]
    explore = ExploreSteer(tok, n=4, share=0.5, at="sentence")
    said = " alpha is a river."
    tag = tok.encode(" " + QUERY_OPEN, add_special_tokens=False)
    script = TurnScript(tok, None)
    closing = tok.encode(f" so {THINK_CLOSE}\n\n{ANSWER_OPEN} one {ANSWER_CLOSE}", add_special_tokens=False)

    def steer(row):
        forced = explore(row)
        if forced is not None:
            return forced
        if row.sample == 3 and len(row.passages) == 1:  # this explorer closes its thought at once
            s = closing
        elif explore.explores(row) and len(row.passages) == 1:
            s = tok.encode(said, add_special_tokens=False) + tag + script.after_tag
        else:
            return script(row)
        return s[len(row.turn)] if len(row.turn) < len(s) else None

    trajs = _engine(engine_parts, None).rollout(["q"], steer=steer)
    assert [t.n_searches for t in trajs] == [1, 1, 2, 1]
    assert f"{said} {QUERY_OPEN} beta castle {QUERY_CLOSE}" in trajs[2].text
    assert trajs[3].answer == "one"


def test_steer_arguments_are_checked(smollm_tokenizer):
    with pytest.raises(ValueError, match="share"):
        ExploreSteer(smollm_tokenizer, n=8, share=1.5)
    with pytest.raises(ValueError, match="at must be"):
        ExploreSteer(smollm_tokenizer, n=8, share=0.5, at="never")
    with pytest.raises(ValueError, match="min_searches"):
        ExploreSteer(smollm_tokenizer, n=8, share=0.5, min_searches=1)
    assert ExploreSteer(smollm_tokenizer, n=8, share=0.25).first == 6


class StopScript:
    """Every turn after documents states what it read (``SAID``) and searches again, up to ``searches``
    searches; a row whose turn was closed by ``stop`` writes the answer "one" after the forced tags."""

    def __init__(self, tokenizer, stop: StopSteer | None, searches: int = 2):
        enc = lambda t: tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
        self.stop = stop
        again = enc(SAID) + enc(f" {QUERY_OPEN}") + enc(AFTER_TAG)
        self.turns = [enc(TURNS[0]), *[again] * (searches - 1), enc(TURNS[2])]
        self.stopped = enc(SAID) + stop.tag + enc(f" one {ANSWER_CLOSE}") if stop else None

    def __call__(self, row):
        if self.stop is not None and (forced := self.stop(row)) is not None:
            return forced
        if self.stop is not None and self.stop.stops(row) and len(row.passages) == self.stop.after_for(row.sample):
            script = self.stopped
        else:
            script = self.turns[min(len(row.passages), len(self.turns) - 1)]
        return script[len(row.turn)] if len(row.turn) < len(script) else None


SAID = " alpha is a river."


def test_the_first_share_of_each_group_answers_after_the_first_sentence_and_the_tags_are_trained_on(engine_parts):
    tok = engine_parts[0]
    stop = StopSteer(tok, n=4, share=0.5)
    trajs = _engine(engine_parts, None).rollout(["q one", "q two"], steer=StopScript(tok, stop))
    for t in trajs:
        if t.sample < 2:  # made to answer after one search; what it read and its answer are the script's
            assert (t.n_searches, t.answer) == (1, "one")
            assert f"{SAID} {THINK_CLOSE}\n\n{ANSWER_OPEN} one" in t.text
            start = min(i for i, m in enumerate(t.loss_mask[:-1]) if m == 0 and t.loss_mask[i + 1] == 1) + 1
            start += len(tok.encode(SAID, add_special_tokens=False))
            assert t.response_ids[start : start + len(stop.tag)] == stop.tag
            assert all(t.loss_mask[start : start + len(stop.tag)])
            assert all(lp < 0 and math.isfinite(lp) for lp in t.logprobs[start : start + len(stop.tag)])
        else:  # the policy's own decision: search again, then answer
            assert (t.n_searches, t.answer) == (2, "two")
            assert t.queries == ["alpha river", "beta castle"]
    assert stop.last == 2 and StopSteer(tok, n=8, share=0.25).last == 2


def test_stop_after_two_forces_the_answer_only_after_the_second_documents(engine_parts):
    tok = engine_parts[0]
    stop = StopSteer(tok, n=2, share=0.5, after=2)
    script = StopScript(tok, None)
    closing = tok.encode(SAID, add_special_tokens=False) + stop.tag + tok.encode(f" one {ANSWER_CLOSE}", add_special_tokens=False)

    def steer(row):
        if (forced := stop(row)) is not None:
            return forced
        if stop.stops(row) and len(row.passages) == 2:
            return closing[len(row.turn)] if len(row.turn) < len(closing) else None
        return script(row)

    trajs = _engine(engine_parts, None, n=2).rollout(["q"], steer=steer)
    assert [(t.n_searches, t.answer) for t in trajs] == [(2, "one"), (2, "two")]


def test_spread_stops_answer_after_one_search_then_after_two(engine_parts):
    """``train.stop_spread``: a group's stopping samples answer after 1, 2, … searches in turn."""
    tok = engine_parts[0]
    stop = StopSteer(tok, n=4, share=0.5, after=2, spread=True)
    trajs = _engine(engine_parts, None).rollout(["q"], steer=StopScript(tok, stop, searches=3))
    assert [(t.n_searches, t.answer) for t in sorted(trajs, key=lambda t: t.sample)] == [
        (1, "one"), (2, "one"), (3, "two"), (3, "two")]
    assert [stop.after_for(i) for i in range(3)] == [1, 2, 1] and StopSteer(tok, n=4, share=0.5, after=2).after_for(0) == 2


@pytest.mark.parametrize("overrides, key", [
    (["rollout.n_samples=4", "train.stop_share=0.1"], "train.stop_share"),
    (["rollout.n_samples=4", "train.stop_share=0.5", "train.explore_share=0.75"], "train.stop_share"),
    (["train.stop_share=1.5"], "train.stop_share"),
    (["rollout.max_searches=2", "train.stop_share=0.25", "train.stop_after=3"], "train.stop_after"),
    (["train.stop_after=0"], "train.stop_after"),
    # one stopping sample a group cannot answer both after the first search and after the second
    (["rollout.n_samples=2", "train.stop_share=0.5", "train.stop_after=2", "train.stop_spread=true"],
     "train.stop_spread"),
]
)
def test_config_refuses_stops_that_cannot_happen(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides)


def test_config_takes_spread_stops_with_a_sample_per_stop():
    cfg = load_config(None, ["rollout.n_samples=8", "train.stop_share=0.25", "train.stop_after=2",
                             "train.stop_spread=true"])
    assert cfg.train.stop_spread and round(cfg.train.stop_share * cfg.rollout.n_samples) == cfg.train.stop_after


def test_stop_steer_arguments_are_checked(smollm_tokenizer):
    with pytest.raises(ValueError, match="share"):
        StopSteer(smollm_tokenizer, n=8, share=-0.1)
    with pytest.raises(ValueError, match="after"):
        StopSteer(smollm_tokenizer, n=8, share=0.5, after=0)


@pytest.mark.parametrize("overrides, key", [
    (["rollout.n_samples=4", "train.explore_share=0.1"], "train.explore_share"),
    (["rollout.max_searches=2", "train.explore_share=0.5", "train.explore_searches=3"], "train.explore_searches"),
    (["train.explore_share=1.5"], "train.explore_share"),
    (["train.explore_searches=1"], "train.explore_searches"),
])
def test_config_refuses_exploration_that_cannot_happen(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides)


def _one_step_log(tmp_path, tok, overrides, steer) -> dict:
    """log.jsonl of one training step of the tiny run, its rollouts steered by ``steer``."""
    from tests.test_trainer_loop import write_tiny_run
    from r1searcher.rl.trainer import train

    d = write_tiny_run(tmp_path, tok)
    cfg = load_config(d / "tiny.yaml", ["train.max_steps=1", "rollout.max_response_tokens=400",
                                         "rollout.max_new_tokens_per_turn=48", *overrides])
    run = train(cfg, tmp_path / "run", steer=steer)
    return json.loads((run / "log.jsonl").read_text().splitlines()[-1])


def test_training_logs_explored_and_natural_samples_apart(tmp_path, smollm_tokenizer):
    """The loop's rollouts explore (its steer asked before the test's script) and it logs both kinds."""
    tok = smollm_tokenizer
    rec = _one_step_log(tmp_path, tok, ["train.explore_share=0.5", "rollout.n_samples=2"],
                        TurnScript(tok, ExploreSteer(tok, n=2, share=0.5)))
    assert rec["frac_explored"] == pytest.approx(0.5)
    assert rec["searches_explored"] == 2 and rec["searches_natural"] == 1
    assert rec["f1_explored"] == 0 and rec["f1_natural"] == 0  # "two" and "one" are not the gold answers
    assert rec["searches_per_trajectory"] == pytest.approx(1.5)


def test_training_logs_stopped_and_natural_samples_apart(tmp_path, smollm_tokenizer):
    tok = smollm_tokenizer
    rec = _one_step_log(tmp_path, tok, ["train.stop_share=0.5", "rollout.n_samples=2"],
                        StopScript(tok, StopSteer(tok, n=2, share=0.5)))
    assert rec["frac_stopped"] == pytest.approx(0.5) and "frac_explored" not in rec
    assert rec["searches_stopped"] == 1 and rec["searches_natural"] == 2
    assert rec["searches_per_trajectory"] == pytest.approx(1.5)


def test_training_stops_after_the_configured_search(tmp_path, smollm_tokenizer):
    """``train.stop_after=2``: the loop's stopping samples answer after their second documents."""
    tok = smollm_tokenizer
    rec = _one_step_log(tmp_path, tok, ["train.stop_share=0.5", "train.stop_after=2", "rollout.n_samples=2",
                                        "rollout.max_searches=3"],
                        StopScript(tok, StopSteer(tok, n=2, share=0.5, after=2), searches=3))
    assert rec["searches_stopped"] == 2 and rec["searches_natural"] == 3


@pytest.mark.parametrize("spread, forced_after", [(True, 1), (False, 2)])
def test_training_arms_spread_the_stops_when_asked(smollm_tokenizer, spread, forced_after):
    """``train.stop_spread`` reaches the steer the trainer and the bench build: the first stopping
    sample is made to answer after its first documents only when spread."""
    from r1searcher.config import TrainConfig
    from r1searcher.rollout.row import RowState
    from r1searcher.rollout.steer import training_arms

    tok = smollm_tokenizer
    steer, _ = training_arms(tok, 8, TrainConfig(stop_share=0.25, stop_after=2, stop_spread=spread))
    said = tok.encode(SAID, add_special_tokens=False)
    for searches in (1, 2):
        row = RowState(group=0, sample=0, question="q", prompt_ids=[1], response_ids=said,
                       passages=[[]] * searches)
        forced = steer(row)
        assert (forced is not None) == (searches == forced_after)


def test_without_exploration_the_log_has_no_explore_keys(tmp_path, smollm_tokenizer):
    rec = _one_step_log(tmp_path, smollm_tokenizer, [], TurnScript(smollm_tokenizer, None))
    assert "frac_explored" not in rec and rec["searches_per_trajectory"] == 1
