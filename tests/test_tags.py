"""The tag parser over the format rules of the released reward servers (notes §1): DOC_OK
equality, made-up document blocks, an open query at the search limit, unbalanced tags, tags in the
answer, the ≤10-word answer rule, and CJK text outside vs inside documents."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1searcher.rollout.tags import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    DOCS_CLOSE,
    DOCS_OPEN,
    QUERY_CLOSE,
    QUERY_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    FormatCounts,
    clean_query,
    extract_answer,
    extract_query,
    has_cjk,
    parse,
    strip_documents,
)

COUNTS_DIFFER = "query/document tag counts differ"
THINK_BAD = "think tags: need zero <think> and one </think>"
ANSWER_BAD = "answer tags: need one <answer> and one </answer>"
TAG_IN_ANSWER = "query or documents inside the answer"
CJK = "CJK characters outside documents"


def search(query: str, *docs: str) -> str:
    """What a rollout produces for one search: the model's query, then the system's block.

    The model writes ``<|begin_of_query|> q``, generation stops at ``<|end_of_query|>``, and the
    system appends ``<|end_of_query|>\\n\\n<|begin_of_documents|>\\n(1)…\\n<|end_of_documents|>\\n\\n``.
    """
    body = "".join(f"({i + 1}){d}\n" for i, d in enumerate(docs)) or "None\n"
    return f"{QUERY_OPEN} {query}{QUERY_CLOSE}\n\n{DOCS_OPEN}\n{body}{DOCS_CLOSE}\n\n"


def finish(answer: str, think: str = "So that is it.") -> str:
    return f"{think} {THINK_CLOSE}\n\n{ANSWER_OPEN} {answer} {ANSWER_CLOSE}"


GOOD = (
    "I need the director first. "
    + search('"Jaws" director', "Jaws   Jaws is a 1975 film directed by Steven Spielberg.", "Other doc")
    + "Now his birthplace. "
    + search("Steven  Spielberg birthplace", "Steven Spielberg   born in Cincinnati, Ohio.")
    + finish("Cincinnati")
)


# -- well-formed -----------------------------------------------------------------------------------


def test_well_formed_completion() -> None:
    p = parse(GOOD)
    assert p.valid and p.problems == []
    assert p.counts is not None and p.counts.docs_ok and p.counts.n_searches == 2
    assert p.counts.think_answer_ok
    assert p.queries == ["Jaws director", "Steven Spielberg birthplace"]  # '"' dropped, spaces squeezed
    assert len(p.documents) == 2 and p.documents[0].startswith("(1)Jaws")
    assert p.answer == "Cincinnati"
    assert [s.kind for s in p.segments] == ["think", "query", "documents", "think", "query", "documents", "think",
                                            "answer"]


def test_no_search_is_valid_with_zero_searches() -> None:
    p = parse(finish("Paris"))
    assert p.valid and p.counts is not None and p.counts.docs_ok and p.counts.n_searches == 0


def test_empty_result_block_is_not_numbered() -> None:
    # The released rollout writes "None" when the retriever returns nothing: no "(1)", so c7 < c1.
    p = parse(search("nothing here") + finish("x"))
    assert COUNTS_DIFFER in p.problems


# -- DOC_OK equality (c1 … c7) ---------------------------------------------------------------------

ONE = search("q", "doc") + finish("a")


@pytest.mark.parametrize(
    ("broken", "which"),
    [
        (ONE.replace(f"{DOCS_CLOSE}\n\n", DOCS_CLOSE), "c2: end tag without the blank line"),
        (ONE.replace(f"{DOCS_OPEN}\n", DOCS_OPEN + " "), "c1/c7: begin tag without its newline"),
        (ONE.replace("(1)doc", "doc"), "c7: unnumbered block"),
        (ONE.replace(QUERY_CLOSE, "", 1), "c4: query never closed"),
        (ONE.replace(QUERY_OPEN, "", 1), "c3: documents without a query"),
        (ONE + f"\n{QUERY_CLOSE}", "c4: a stray end-of-query"),
        (ONE.replace(DOCS_CLOSE, "", 1), "c2/c6: block never closed"),
    ],
)
def test_doc_ok_needs_all_seven_counts_equal(broken: str, which: str) -> None:
    assert broken != ONE, which
    c = FormatCounts.of(broken)
    assert not c.docs_ok and c.n_searches == 0, which
    assert COUNTS_DIFFER in parse(broken).problems, which


def test_counts_match_the_released_definitions() -> None:
    c = FormatCounts.of(GOOD)
    assert (c.docs_open_nl, c.docs_close_nlnl, c.query_open, c.query_close, c.docs_open, c.docs_close,
            c.docs_open_numbered) == (2,) * 7
    assert (c.think_open, c.think_close, c.answer_open, c.answer_close) == (0, 1, 1, 1)


def test_made_up_unnumbered_document_block() -> None:
    """The model writes its own documents without searching (reward hack 1 of paper §4.2)."""
    text = f"I recall: {DOCS_OPEN}\nParis is the capital of France.\n{DOCS_CLOSE}\n\n" + finish("Paris")
    p = parse(text)
    assert COUNTS_DIFFER in p.problems and p.queries == [] and p.counts.n_searches == 0  # type: ignore[union-attr]
    assert p.documents == ["Paris is the capital of France."]


def test_made_up_block_imitating_the_numbering() -> None:
    # Even a perfect imitation of a block, "(1)" included, has no query: c3 = c4 = 0 < c1.
    p = parse(f"{DOCS_OPEN}\n(1)Paris is the capital.\n{DOCS_CLOSE}\n\n" + finish("Paris"))
    assert COUNTS_DIFFER in p.problems


def test_extra_made_up_block_after_a_real_search() -> None:
    p = parse(search("q", "real doc") + f"{DOCS_OPEN}\n(1)fake\n{DOCS_CLOSE}\n\n" + finish("a"))
    assert COUNTS_DIFFER in p.problems and len(p.documents) == 2 and p.queries == ["q"]


def test_open_query_at_the_search_limit() -> None:
    """A rollout cut at its 9th query: the stop string is not in the output, so c3 = c4 + 1."""
    text = "".join(search(f"q{i}", f"doc {i}") for i in range(8)) + f"More. {QUERY_OPEN} q8"
    p = parse(text)
    assert p.counts is not None and (p.counts.query_open, p.counts.query_close) == (9, 8)
    assert COUNTS_DIFFER in p.problems and ANSWER_BAD in p.problems and THINK_BAD in p.problems
    assert p.answer is None
    assert p.queries == [f"q{i}" for i in range(8)]  # the open one is not a query that ran
    assert p.segments[-1].kind == "query" and p.segments[-1].text.strip() == "q8"


# -- think / answer tags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"{THINK_OPEN} again " + finish("x"), THINK_BAD),  # the prompt already opened <think>
        ("reasoning " + THINK_CLOSE + " " + finish("x"), THINK_BAD),  # two </think>
        (f"r {ANSWER_OPEN} x {ANSWER_CLOSE}", THINK_BAD),  # no </think>
        (finish("x") + f" {ANSWER_OPEN} y {ANSWER_CLOSE}", ANSWER_BAD),  # two answers
        (f"r {THINK_CLOSE} {ANSWER_OPEN} x", ANSWER_BAD),  # answer never closed
        (f"r {THINK_CLOSE} x {ANSWER_CLOSE}", ANSWER_BAD),  # close without open
    ],
)
def test_unbalanced_tags(text: str, problem: str) -> None:
    p = parse(text)
    assert problem in p.problems and not p.valid


def test_answer_extraction_follows_the_released_rule() -> None:
    two = finish("x") + f" {ANSWER_OPEN} y {ANSWER_CLOSE}"
    assert parse(two).answer == "y" == extract_answer(two)  # the last <answer>
    swapped = f"r {THINK_CLOSE} {ANSWER_CLOSE} oops {ANSWER_OPEN} z"
    assert parse(swapped).answer == "z" == extract_answer(swapped)  # both tags present somewhere
    assert parse(f"r {THINK_CLOSE} {ANSWER_OPEN} open only").answer is None
    assert extract_answer("no tags at all ") == "no tags at all"


def test_answer_with_a_query_inside() -> None:
    p = parse(f"r {THINK_CLOSE}\n\n{ANSWER_OPEN} {QUERY_OPEN} capital of France {QUERY_CLOSE} {ANSWER_CLOSE}")
    assert TAG_IN_ANSWER in p.problems and COUNTS_DIFFER in p.problems
    assert p.answer is not None and QUERY_OPEN in p.answer


def test_answer_with_documents_inside() -> None:
    p = parse(search("q", "d") + finish(f"{DOCS_OPEN}\n(1)x\n{DOCS_CLOSE}\n\n"))
    assert TAG_IN_ANSWER in p.problems


@pytest.mark.parametrize(
    ("n_words", "limit", "flagged"),
    [(10, 10, False), (11, 10, True), (11, None, False), (11, 0, False), (4, 3, True), (3, 3, False)],
)
def test_answer_word_limit(n_words: int, limit: int | None, flagged: bool) -> None:
    answer = " ".join(f"w{i}" for i in range(n_words))
    p = parse(finish(answer), max_answer_words=limit)
    assert (any("longer than" in x for x in p.problems)) is flagged
    assert p.answer == answer


# -- CJK -------------------------------------------------------------------------------------------


def test_cjk_inside_documents_is_allowed() -> None:
    p = parse(search("Beijing", "北京 Beijing is the capital of China.") + finish("Beijing"))
    assert p.valid


@pytest.mark.parametrize(
    "text",
    [
        "我想一想。" + finish("Beijing"),  # in the reasoning
        finish("北京"),  # in the answer
        search("北京", "doc") + finish("Beijing"),  # in the query
        f"{DOCS_OPEN}\n(1)北京" + finish("Beijing"),  # in a block that never closes
    ],
)
def test_cjk_outside_documents_is_a_problem(text: str) -> None:
    assert CJK in parse(text).problems


def test_strip_documents_and_has_cjk() -> None:
    t = f"a {DOCS_OPEN}x{DOCS_CLOSE} b {DOCS_OPEN}y{DOCS_CLOSE} c"
    assert strip_documents(t) == "a  b  c"  # non-greedy: the text between blocks stays
    assert has_cjk("漢") and not has_cjk("kana カ and hangul 한")  # only U+4E00–U+9FFF, as released


# -- queries ---------------------------------------------------------------------------------------


def test_query_helpers() -> None:
    assert clean_query(' "Jaws"   director \n') == "Jaws director"
    assert extract_query("no query here") is None
    assert extract_query(f"{QUERY_OPEN} first {QUERY_CLOSE} then {QUERY_OPEN} second  one") == "second one"
    assert extract_query(f"x {QUERY_OPEN} {QUERY_CLOSE}") == ""  # an empty query ends a rollout


# -- property: anything the rollout can build is well-formed -----------------------------------------

plain = st.text(alphabet=st.characters(whitelist_categories=("L", "N", "Zs"), max_codepoint=0x2FFF), max_size=20)
latin_words = st.lists(st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=10).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(latin_words, st.lists(plain, min_size=1, max_size=3), plain), max_size=8),
    latin_words,
)
def test_rollout_built_completions_parse_valid(steps: list[tuple[str, list[str], str]], answer: str) -> None:
    text = "Let me think. "
    for query, docs, thought in steps:
        text += search(query, *docs) + (thought or "ok") + " "
    text += finish(answer)
    p = parse(text)
    assert p.problems == []
    assert p.counts is not None and p.counts.n_searches == len(steps)
    assert p.queries == [clean_query(q) for q, _, _ in steps]
    assert p.answer == answer.strip()
