"""The synthetic world: seeded, answerable from its supporting passages, held-out answers unseen."""

import json

import pytest

from r1searcher.data.synthetic import generate_world


def test_same_seed_same_world_and_different_seed_differs():
    a, b, c = generate_world(40, seed=1), generate_world(40, seed=1), generate_world(40, seed=2)
    assert a.passages == b.passages and [q.question for q in a.heldout] == [q.question for q in b.heldout]
    assert a.passages != c.passages


def test_heldout_answers_never_appear_in_training():
    w = generate_world(80, seed=0)
    train_answers = {a for q in w.train for a in q.answers}
    held_answers = {a for q in w.heldout for a in q.answers}
    assert held_answers and train_answers
    assert not (train_answers & held_answers)
    assert all(q.split == "heldout" for q in w.heldout)


def test_every_question_is_answerable_from_its_supporting_passages():
    w = generate_world(60, seed=3)
    by_id = {p["id"]: p for p in w.passages}
    for q in w.train + w.heldout:
        assert len(q.supporting_ids) == q.hops
        support = " ".join(by_id[i]["text"] for i in q.supporting_ids)
        # The final hop's passage states the answer, and each bridge entity is named by the previous one.
        assert any(a in support for a in q.answers), q
        for prev, nxt in zip(q.supporting_ids, q.supporting_ids[1:]):
            assert by_id[nxt]["title"] in by_id[prev]["text"], (q, prev, nxt)


def test_hop_counts_cover_one_to_four_and_names_are_unique():
    w = generate_world(60, seed=0)
    assert {q.hops for q in w.train} == {1, 2, 3, 4}
    titles = [p["title"] for p in w.passages]
    assert len(titles) == len(set(titles))
    assert all(len(p["text"].split()) <= 100 for p in w.passages)


def test_save_writes_loadable_jsonl(tmp_path):
    paths = generate_world(20, seed=0).save(tmp_path)
    rows = [json.loads(line) for line in paths["heldout"].read_text().splitlines()]
    assert rows and {"id", "question", "answers", "hops"} <= rows[0].keys()
    corpus = [json.loads(line) for line in paths["corpus"].read_text().splitlines()]
    assert {"id", "title", "text"} == set(corpus[0])


def test_too_few_entities_is_a_clear_error():
    with pytest.raises(ValueError, match="at least"):
        generate_world(3)
