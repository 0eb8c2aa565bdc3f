"""``train.protect_tags``: the query tags' tokens never take a negative advantage (rl/protect.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_tiny_causal_lm
from r1searcher.config import TrainConfig
from r1searcher.rl.logprobs import batched_logprobs
from r1searcher.rl.parallel import Parallel
from r1searcher.rl.protect import protect_advantages, tag_positions, token_spans
from r1searcher.rl.trainer import policy_update
from r1searcher.rollout.tags import ANSWER_CLOSE, ANSWER_OPEN, DOCS_CLOSE, DOCS_OPEN, QUERY_CLOSE, QUERY_OPEN
from r1searcher.rollout.trajectory import Trajectory

pytestmark = pytest.mark.usefixtures("one_thread")


def _enc(tok, text):
    return tok.encode(text, add_special_tokens=False)


def _words(tok, ids, pos):
    return "".join(tok.decode([ids[p]]) for p in pos)


def test_protect_advantages_zeroes_only_negative_protected_entries():
    adv = torch.tensor([[-1.0, -1.0, 2.0, 0.5], [3.0, -2.0, -2.0, 0.0]])
    protect = torch.tensor([[True, False, True, False], [True, True, False, False]])
    out = protect_advantages(adv, protect)
    assert out.tolist() == [[0.0, -1.0, 2.0, 0.5], [3.0, 0.0, -2.0, 0.0]]


def _spelling(tok, tag):
    """The tag without its first token: what protection covers of ``<|begin_of_query|>``."""
    first = tok.decode(_enc(tok, tag)[:1])
    return tag[len(first):]


def test_the_policy_written_query_tags_are_found_and_the_documents_left_alone(smollm_tokenizer):
    """Both tags of each search, all but the token that opens the query (the decision to search),
    and not the tag quoted inside an inserted document block (mask 0) nor the answer's words."""
    tok = smollm_tokenizer
    policy1 = _enc(tok, f" I need the city. {QUERY_OPEN} alpha river {QUERY_CLOSE}")
    docs = _enc(tok, f"\n\n{DOCS_OPEN}\n(1) a {QUERY_OPEN} b\n{DOCS_CLOSE}\n\n")
    policy2 = _enc(tok, f"So {QUERY_OPEN}beta{QUERY_CLOSE} then {ANSWER_OPEN} one {ANSWER_CLOSE}")
    ids = policy1 + docs + policy2
    mask = [1] * len(policy1) + [0] * len(docs) + [1] * len(policy2)
    pos = tag_positions(tok, ids, mask)
    assert all(mask[p] for p in pos)
    assert _words(tok, ids, pos).replace(" ", "") == (_spelling(tok, QUERY_OPEN) + QUERY_CLOSE) * 2
    everything = tag_positions(tok, ids, mask, tags={QUERY_OPEN: False, QUERY_CLOSE: False})
    assert _words(tok, ids, everything).replace(" ", "") == (QUERY_OPEN + QUERY_CLOSE) * 2
    assert len(everything) == len(pos) + 2  # the two decisions to search
    text, spans = token_spans(tok, ids)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_spans_are_right_when_tokens_split_a_character(smollm_tokenizer):
    """A rare character spelt in several byte tokens does not shift the tags after it."""
    tok = smollm_tokenizer
    text = f" 龘𝔘 then {QUERY_OPEN} x {QUERY_CLOSE}"
    ids = _enc(tok, text)
    assert "".join(tok.decode([i]) for i in ids) != tok.decode(ids)  # the slow path is taken
    pos = tag_positions(tok, ids, [1] * len(ids))
    assert _words(tok, ids, pos).replace(" ", "") == _spelling(tok, QUERY_OPEN) + QUERY_CLOSE


def test_a_tokenizer_that_does_not_decode_to_its_text_still_finds_the_tags(bert_tokenizer):
    """WordPiece decodes ``<|begin_of_query|>`` as ``< | begin _ of _ query | >``: the tags are
    matched on their own token ids too."""
    tok = bert_tokenizer
    ids = _enc(tok, f"find {QUERY_OPEN} alpha {QUERY_CLOSE} done")
    pos = tag_positions(tok, ids, [1] * len(ids))
    want = len(_enc(tok, QUERY_OPEN)) - 1 + len(_enc(tok, QUERY_CLOSE))
    assert len(pos) == want and _enc(tok, "alpha")[0] not in [ids[p] for p in pos]


def _pair(tok):
    """One group of two samples with the same search; the first answers wrong (reward 0), the
    second right (reward 1)."""
    prompt = _enc(tok, "Question: where? Answer:")
    trajs = []
    for s, ans in enumerate(("two", "one")):
        resp = _enc(tok, f" {QUERY_OPEN} alpha {QUERY_CLOSE} so {ANSWER_OPEN} {ans} {ANSWER_CLOSE}")
        trajs.append(Trajectory(prompt_ids=prompt, response_ids=resp, loss_mask=[1] * len(resp),
                                logprobs=[0.0] * len(resp), group=0, sample=s, stop_reason="answer"))
    return trajs, torch.tensor([0.0, 1.0])


def test_protected_update_raises_the_tags_of_a_right_answer_that_a_wrong_one_shares(smollm_tokenizer):
    """Without protection the wrong sample's push on the shared tag tokens cancels the right one's;
    with it only the push up remains, and the log counts the held-back tokens."""
    tok = smollm_tokenizer
    base = make_tiny_causal_lm(tok, seed=3)
    trajs, rewards = _pair(tok)
    par = Parallel.start("cpu")
    T = max(len(t.response_ids) for t in trajs)
    pos = tag_positions(tok, trajs[0].response_ids, trajs[0].loss_mask)
    assert pos
    gain, stats = {}, {}
    for on in (False, True):
        model = copy.deepcopy(base)
        before = batched_logprobs(model, trajs, 0, 1.0, 2, T)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        t = TrainConfig(micro_batch_size=2, algo="grpo", protect_tags=on, recompute_old_logprobs=True)
        stats[on] = policy_update(model, opt, trajs, rewards, t, pad_id=0, temperature=1.0, par=par, tokenizer=tok)
        after = batched_logprobs(model, trajs, 0, 1.0, 2, T)
        gain[on] = float((after - before)[0, pos].sum())
    assert abs(gain[False]) < 0.2 * gain[True] and gain[True] > 0
    assert stats[True]["protected_neg"] == len(pos) and "protected_neg" not in stats[False]


def test_protection_needs_the_tokenizer(smollm_tokenizer):
    trajs, rewards = _pair(smollm_tokenizer)
    model = make_tiny_causal_lm(smollm_tokenizer)
    with pytest.raises(ValueError, match="tokenizer"):
        policy_update(model, torch.optim.SGD(model.parameters(), lr=0.1), trajs, rewards,
                      TrainConfig(protect_tags=True), pad_id=0, temperature=1.0, par=Parallel.start("cpu"))
