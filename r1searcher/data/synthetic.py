"""A seeded fictional world for multi-hop QA that no model can know: every correct answer is
earned by searching.

The world has countries, cities (located in a country; capitals), people (born in a city, work as
something), organisations (founded by a person, based in a city, in an industry) and works
(created by a person). Each entity gets one short Wikipedia-style passage; distractor people share
surnames, so a query must name the right entity. Questions take 1–4 hops, for example::

    1 hop   Where was Maren Oduya born?                                   -> Kelvara
    2 hops  In which country was Maren Oduya born?                        -> Norland
    3 hops  In which country was the founder of Veltrix Labs born?        -> Norland
    4 hops  In which country was the founder of the company behind "Glass Harbor" born?

Two disjoint sub-worlds are generated from separate name pools: ``train`` questions come from the
first, ``heldout`` questions from the second, so held-out answers never appear in training.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "th", "sh", "vel", "mor", "cal"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia"]
_CODAS = ["", "n", "r", "l", "s", "th", "nd", "rk", "x", "m"]
_ORG_KINDS = ["Labs", "Works", "Group", "Systems", "Foundry", "Collective", "Studios", "Dynamics"]
_INDUSTRIES = ["robotics", "shipbuilding", "publishing", "textiles", "aviation", "pharmaceuticals", "mining", "software"]
_JOBS = ["engineer", "painter", "novelist", "architect", "physician", "composer", "botanist", "economist"]
_WORK_KINDS = ["novel", "symphony", "painting", "film", "opera"]


@dataclass
class Entity:
    id: str
    kind: str  # country | city | person | org | work
    name: str
    facts: dict = field(default_factory=dict)  # relation -> entity id or literal


@dataclass
class Question:
    id: str
    question: str
    answers: list[str]
    hops: int
    supporting_ids: list[str]
    split: str


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: tuple[int, int] = (2, 3)) -> str:
        for _ in range(1000):
            n = self.rng.randint(*syllables)
            w = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(n)) + self.rng.choice(_CODAS)
            w = w.capitalize()
            if w not in self.used and 4 <= len(w) <= 12:
                self.used.add(w)
                return w
        raise RuntimeError("name space exhausted; use fewer entities")


def _subworld(rng: random.Random, names: _Names, tag: str, n_people: int) -> list[Entity]:
    ents: list[Entity] = []
    n_countries = max(3, n_people // 8)
    n_cities = max(6, n_people // 3)
    countries = [Entity(f"{tag}-country-{i}", "country", names.word((2, 2)) + rng.choice(["ia", "land", "mark", "stan", "ora"])) for i in range(n_countries)]
    cities = []
    for i in range(n_cities):
        c = Entity(f"{tag}-city-{i}", "city", names.word((2, 3)), {"country": countries[i % n_countries].id})
        cities.append(c)
    for i, country in enumerate(countries):
        country.facts["capital"] = cities[i].id  # the first city of each country is its capital
    surnames = [names.word((2, 3)) for _ in range(max(2, n_people // 2))]  # shared surnames: distractors
    people = []
    for i in range(n_people):
        p = Entity(
            f"{tag}-person-{i}",
            "person",
            f"{names.word((1, 2))} {rng.choice(surnames)}",
            {"born_in": rng.choice(cities).id, "job": rng.choice(_JOBS), "born_year": rng.randint(1890, 1990)},
        )
        people.append(p)
    orgs = []
    for i in range(max(3, n_people // 2)):
        founder = rng.choice(people)
        o = Entity(
            f"{tag}-org-{i}",
            "org",
            f"{names.word((2, 2))} {rng.choice(_ORG_KINDS)}",
            {"founded_by": founder.id, "based_in": rng.choice(cities).id, "industry": rng.choice(_INDUSTRIES),
             "founded_year": founder.facts["born_year"] + rng.randint(20, 45)},
        )
        orgs.append(o)
    works = []
    for i in range(max(3, n_people // 2)):
        creator = rng.choice(people)
        w = Entity(
            f"{tag}-work-{i}",
            "work",
            f"{names.word((2, 2))} {names.word((2, 2))}",
            {"created_by": creator.id, "work_kind": rng.choice(_WORK_KINDS), "published_by": rng.choice(orgs).id},
        )
        works.append(w)
    ents += countries + cities + people + orgs + works
    return ents


def _a(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _passage(e: Entity, by_id: dict[str, Entity]) -> str:
    f = e.facts
    name = lambda key: by_id[f[key]].name  # noqa: E731
    if e.kind == "country":
        return f"{e.name} is a country whose capital is {name('capital')}."
    if e.kind == "city":
        cap = " It is the capital of the country." if by_id[f["country"]].facts.get("capital") == e.id else ""
        return f"{e.name} is a city in {name('country')}.{cap}"
    if e.kind == "person":
        return f"{e.name} is {_a(f['job'])} who was born in {name('born_in')} in {f['born_year']}."
    if e.kind == "org":
        return (f"{e.name} is {_a(f['industry'])} company founded by {name('founded_by')} in {f['founded_year']}. "
                f"It is based in {name('based_in')}.")
    if e.kind == "work":
        return f"{e.name} is {_a(f['work_kind'])} by {name('created_by')}, published by {name('published_by')}."
    raise ValueError(e.kind)


def _questions(ents: list[Entity], by_id: dict[str, Entity], rng: random.Random, split: str) -> list[Question]:
    qs: list[Question] = []

    def add(text: str, answer_id: str, hops: int, support: list[str]) -> None:
        qs.append(Question(f"{split}-{len(qs)}", text, [by_id[answer_id].name], hops, support, split))

    for e in ents:
        f = e.facts
        if e.kind == "person":
            city = by_id[f["born_in"]]
            add(f"Where was {e.name} born?", city.id, 1, [e.id])
            add(f"In which country was {e.name} born?", city.facts["country"], 2, [e.id, city.id])
        elif e.kind == "org":
            founder = by_id[f["founded_by"]]
            city = by_id[founder.facts["born_in"]]
            add(f"Who founded {e.name}?", founder.id, 1, [e.id])
            add(f"In which city was the founder of {e.name} born?", city.id, 2, [e.id, founder.id])
            add(f"In which country was the founder of {e.name} born?", city.facts["country"], 3, [e.id, founder.id, city.id])
            add(f"In which country is {e.name} based?", by_id[f["based_in"]].facts["country"], 2, [e.id, f["based_in"]])
        elif e.kind == "work":
            creator = by_id[f["created_by"]]
            org = by_id[f["published_by"]]
            add(f"Who created the {f['work_kind']} {e.name}?", creator.id, 1, [e.id])
            add(f"Where was the creator of {e.name} born?", creator.facts["born_in"], 2, [e.id, creator.id])
            founder = by_id[org.facts["founded_by"]]
            city = by_id[founder.facts["born_in"]]
            add(
                f"In which country was the founder of the company that published {e.name} born?",
                city.facts["country"], 4, [e.id, org.id, founder.id, city.id],
            )
    rng.shuffle(qs)
    for i, q in enumerate(qs):
        q.id = f"{split}-{i}"
    return qs


@dataclass
class World:
    entities: list[Entity]
    passages: list[dict]  # {id, title, text}
    train: list[Question]
    heldout: list[Question]

    def save(self, out: str | Path) -> dict[str, Path]:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"corpus": out / "corpus.jsonl", "train": out / "train.jsonl", "heldout": out / "heldout.jsonl",
                 "world": out / "world.json"}
        with open(paths["corpus"], "w") as f:
            for p in self.passages:
                f.write(json.dumps(p) + "\n")
        for split in ("train", "heldout"):
            with open(paths[split], "w") as f:
                for q in getattr(self, split):
                    f.write(json.dumps(asdict(q)) + "\n")
        paths["world"].write_text(json.dumps([asdict(e) for e in self.entities], indent=1))
        return paths


def generate_world(entities: int = 200, seed: int = 0) -> World:
    """``entities`` people in all (split between the two sub-worlds); other kinds scale with it."""
    if entities < 8:
        raise ValueError("entities must be at least 8")
    rng = random.Random(seed)
    names = _Names(rng)
    n_train = max(4, entities * 3 // 4)
    train_ents = _subworld(rng, names, "t", n_train)
    held_ents = _subworld(rng, names, "h", entities - n_train)
    ents = train_ents + held_ents
    by_id = {e.id: e for e in ents}
    passages = [{"id": e.id, "title": e.name, "text": _passage(e, by_id)} for e in ents]
    rng.shuffle(passages)
    return World(ents, passages, _questions(train_ents, by_id, rng, "train"), _questions(held_ents, by_id, rng, "heldout"))
