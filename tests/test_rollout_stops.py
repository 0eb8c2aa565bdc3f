"""Stop detection on real tokenizers, query extraction, and the inserted block's text."""

from __future__ import annotations

import pytest

from r1searcher.retrieval.base import Passage
from r1searcher.rollout.stops import StopMatcher, block_lead, document_block
from r1searcher.rollout.tags import QUERY_CLOSE, FormatCounts


def test_text_stop_in_the_middle_of_a_turn(smollm_tokenizer):
    tok = smollm_tokenizer
    m = StopMatcher(tok)
    turn = tok.encode(" think <|begin_of_query|> river  castle <|end_of_query|>", add_special_tokens=False)
    assert m.check(turn[:-1]) is None
    match = m.check(turn)
    assert match.kind == "query" and match.trailing == "" and not match.by_ids
    assert m.query(turn, match) == "river castle"
    answer = tok.encode(" done </think>\n\n<answer> x </answer>", add_special_tokens=False)
    assert m.check(answer).kind == "answer"


def test_stop_ending_inside_a_token_keeps_the_trailing_text(smollm_tokenizer):
    tok = smollm_tokenizer
    m = StopMatcher(tok)
    turn = tok.encode(" <|begin_of_query|> q <|end_of_query|", add_special_tokens=False) + [tok.convert_tokens_to_ids(">.")]
    match = m.check(turn)
    assert match.kind == "query" and match.trailing == "."


def test_wordpiece_stops_match_on_ids(bert_tokenizer):
    """BERT decodes '<|end_of_query|>' as '< | end _ of _ query | >': the ids still stop the turn."""
    tok = bert_tokenizer
    m = StopMatcher(tok)
    turn = tok.encode("think <|begin_of_query|> River Castle <|end_of_query|>", add_special_tokens=False)
    match = m.check(turn)
    assert match is not None and match.by_ids and match.kind == "query"
    assert m.query(turn, match) == "river castle"
    no_open = tok.encode("think <|end_of_query|>", add_special_tokens=False)
    assert m.query(no_open, m.check(no_open)) is None


@pytest.mark.parametrize("trailing, lead", [("", "\n\n"), ("\n", "\n"), ("\n\n", ""), ("\n\n\n", ""), (".", "\n\n"), (" ", "\n\n")])
def test_block_lead_makes_the_text_read_like_the_paper(trailing, lead):
    assert block_lead(trailing) == lead
    text = " <|begin_of_query|> q " + QUERY_CLOSE + trailing + document_block([Passage("1", "T", "x y")], 10, trailing)
    counts = FormatCounts.of(text)
    assert counts.docs_ok and counts.n_searches == 1
    if trailing in ("", "\n", "\n\n"):
        assert QUERY_CLOSE + "\n\n<|begin_of_documents|>\n(1) T: x y\n<|end_of_documents|>\n\n" in text


def test_document_block_caps_words_and_numbers_passages():
    ps = [Passage("1", "A", "one two three four"), Passage("2", "B", "five")]
    assert document_block(ps, 2) == "\n\n<|begin_of_documents|>\n(1) A: one two\n(2) B: five\n<|end_of_documents|>\n\n"
