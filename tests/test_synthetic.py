"""The synthetic world: seeded, answerable from its supporting passages, held-out answers unseen."""

import hashlib
import json
import re
from collections import defaultdict

import pytest

from r1searcher.data import synthetic as syn
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


# ------------------------------------------------------------------ prose="varied"
# sha256 over corpus.jsonl + train.jsonl + heldout.jsonl + world.json written by the generator as it was
# before prose= existed (commit 9c47b17): plain mode must stay byte-identical.
PLAIN_SHA256 = {
    (60, 3): "bdafd0377ccf868f174e0d591aefae461af91c1f894de0ecdf871a21965351e5",
    (200, 0): "6c7d513f28bedd7a3b7a7e707db388eedecf2bedbb3846a8025cd176656b4420",
    (8, 0): "3dfbbdc1843774d96f51e8cc08ea4bce2be0704ea21ddcb6e91e1fd333cb28c1",
}


@pytest.mark.parametrize("entities,seed", sorted(PLAIN_SHA256))
def test_plain_prose_is_byte_identical_to_before(tmp_path, entities, seed):
    for world in (generate_world(entities, seed), generate_world(entities, seed, prose="plain")):
        paths = world.save(tmp_path)
        h = hashlib.sha256()
        for key in ("corpus", "train", "heldout", "world"):
            h.update(paths[key].read_bytes())
        assert h.hexdigest() == PLAIN_SHA256[entities, seed]


def test_varied_is_deterministic_and_describes_the_same_world_as_plain():
    a, b = generate_world(60, seed=4, prose="varied"), generate_world(60, seed=4, prose="varied")
    assert a.passages == b.passages and a.train == b.train and a.heldout == b.heldout
    assert generate_world(60, seed=5, prose="varied").passages != a.passages
    plain = generate_world(60, seed=4)
    assert a.entities == plain.entities
    assert [p["id"] for p in a.passages] == [p["id"] for p in plain.passages]
    strip = lambda qs: [(q.id, q.answers, q.hops, q.supporting_ids, q.split) for q in qs]  # noqa: E731
    assert strip(a.train) == strip(plain.train) and strip(a.heldout) == strip(plain.heldout)
    assert sum(x.question != y.question for x, y in zip(a.train, plain.train)) > len(a.train) // 2
    assert sum(x["text"] != y["text"] for x, y in zip(a.passages, plain.passages)) == len(a.passages)


def test_unknown_prose_is_a_clear_error():
    with pytest.raises(ValueError, match="prose"):
        generate_world(20, prose="fancy")


@pytest.mark.parametrize("seed", [0, 3])
def test_varied_answers_are_verbatim_in_the_last_supporting_passage(seed):
    w = generate_world(80, seed=seed, prose="varied")
    by_id = {p["id"]: p for p in w.passages}
    for q in w.train + w.heldout:
        assert len(q.supporting_ids) == q.hops and 1 <= q.hops <= 4
        assert q.answers[0] in by_id[q.supporting_ids[-1]]["text"], q
        for prev, nxt in zip(q.supporting_ids, q.supporting_ids[1:]):
            assert by_id[nxt]["title"] in by_id[prev]["text"], (q, prev, nxt)
    assert all(len(p["text"].split()) <= 100 for p in w.passages)


def _pattern(template: str, known: dict[str, str]) -> str:
    parts = re.split(r"\{(\w+)\}", template)
    return "".join(re.escape(s) if i % 2 == 0 else (re.escape(known[s]) if s in known else ".+?")
                   for i, s in enumerate(parts))


def test_varied_uses_several_phrasings_per_passage_and_question_kind():
    w = generate_world(200, seed=0, prose="varied")
    ents = {e.id: e for e in w.entities}
    capitals = {e.facts["capital"] for e in w.entities if e.kind == "country"}
    lists = {"country": syn._COUNTRY, "city": syn._CITY, "capital": syn._CAPITAL, "person": syn._PERSON,
             "org": syn._ORG, "work": syn._WORK}
    used = defaultdict(set)
    for p in w.passages:
        kind = "capital" if p["id"] in capitals else ents[p["id"]].kind
        hits = [i for i, t in enumerate(lists[kind]) if re.match(_pattern(t, {"name": p["title"]}), p["text"])]
        assert hits, p
        if len(hits) == 1:
            used[kind].add(hits[0])
    assert {k: len(v) >= 3 for k, v in used.items()} == {k: True for k in lists}, dict(used)

    names = {e.name for e in w.entities}
    kinds = "|".join(syn._WORK_KINDS)
    qlists = {k: v for k, v in vars(syn).items() if k.startswith("_Q_")}
    qused = defaultdict(set)
    for q in w.train + w.heldout:
        for key, templates in qlists.items():
            for i, t in enumerate(templates):
                rx = re.escape(t).replace(r"\{kind\}", f"(?:{kinds})").replace(r"\{made\}", r"\w+")
                for ph in ("p", "o", "w"):
                    rx = rx.replace(rf"\{{{ph}\}}", "(?P<e>.+)")
                m = re.fullmatch(rx, q.question)
                if m and m.group("e") in names:
                    qused[key].add(i)
    assert len(qlists) == 9 and all(len(qused[k]) >= 3 for k in qlists), dict(qused)


def test_varied_extra_sentences_state_only_true_birthplaces_and_founders():
    """Namesakes and rivals appear in other entities' passages; every "born in C" / "founded by F"
    must still be true of the person/organisation it is said of (the nearest name before it, or the
    passage's own subject)."""
    w = generate_world(160, seed=2, prose="varied")
    ents = {e.id: e for e in w.entities}
    by_name = {e.name: e for e in w.entities}
    alt = lambda kind: "|".join(re.escape(e.name) for e in sorted(  # noqa: E731
        (e for e in w.entities if e.kind == kind), key=lambda e: -len(e.name)))
    person, city, org = alt("person"), alt("city"), alt("org")
    checked = 0
    for p in w.passages:
        for sentence in re.split(r"(?<=[.;]) ", p["text"]):
            for rel, subj_rx, obj_rx, fact in [("born in (?:the city of )?", person, city, "born_in"),
                                                ("(?:founded|established) by ", org, person, "founded_by")]:
                for m in re.finditer(f"{rel}({obj_rx})", sentence):
                    before = list(re.finditer(subj_rx, sentence[: m.start()]))
                    after = list(re.finditer(subj_rx, sentence[m.end():]))
                    subj = before[-1].group(0) if before else after[0].group(0) if after else p["title"]
                    assert ents[by_name[subj].facts[fact]].name == m.group(1), (p, sentence)
                    checked += 1
    assert checked > 200


def test_varied_one_hop_questions_are_retrievable_with_bm25(tmp_path):
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages

    w = generate_world(120, seed=0, prose="varied")
    paths = w.save(tmp_path)
    index = BM25Index.build(list(read_passages(paths["corpus"])))
    qs = [q for q in w.train + w.heldout if q.hops == 1]
    hits = index.search([q.question for q in qs], k=2)
    found = sum(q.supporting_ids[0] in {p.id for p in h} for q, h in zip(qs, hits))
    assert len(qs) > 100 and found / len(qs) >= 0.8, found / len(qs)


def test_synth_command_takes_prose(tmp_path, capsys):
    import argparse

    from r1searcher.commands import synth

    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    assert parser.parse_args(["--out", "x"]).prose == "plain"
    assert synth.run(parser.parse_args(["--out", str(tmp_path), "--entities", "20", "--prose", "varied"])) == 0
    corpus = [json.loads(line) for line in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    assert [r["text"] for r in corpus] == [p["text"] for p in generate_world(20, 0, prose="varied").passages]
