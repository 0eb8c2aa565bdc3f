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

``prose="plain"`` writes every passage and question of a kind with one template (the first entry of
each template list below). ``prose="varied"`` describes the *same* world (same entities, answers,
supporting passages and order) in the style of short Wikipedia leads: every passage and question
kind picks one of several phrasings, and every passage gets one or two extra sentences: true facts
about *other* entities of its kind and sub-world (a namesake, a similar-sounding city and its
country, a rival firm and its founder) or neutral filler. Extra sentences restate no fact of the
passage's own subject and link no entity to a later hop of a chain (a person's passage never names
a country, an organisation's never its founder's birthplace), so every gold answer stays the only
correct one and no question gets answerable in fewer hops. Phrasings come from their own seeded
generator, so the plain world is byte-identical to the one generated before ``prose`` existed.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
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


# ------------------------------------------------------------------------------------------ prose
# Templates are data. The FIRST entry of every list is the plain-mode text (kept byte-identical to
# the original generator); prose="varied" picks any entry with the prose generator.

_COUNTRY = [
    "{name} is a country whose capital is {capital}.",
    "{name} is a sovereign state whose capital city is {capital}.",
    "{name} is a republic whose capital and seat of government is {capital}.",
    "The country of {name} has {capital} as its capital.",
    "{name} is a small nation; its capital is {capital}.",
]
_CITY = [
    "{name} is a city in {country}.",
    "{name} is {a_descr} city in {country}.",
    "Located in {country}, {name} is {a_descr} city.",
    "{name} is a city of {country}, {locus}.",
    "{name} is a municipality in {country}, {locus}.",
]
_CAPITAL = [
    "{name} is a city in {country}. It is the capital of the country.",
    "{name} is the capital of {country}.",
    "{name} is the capital city of {country} and the seat of its government.",
    "As the capital of {country}, {name} is home to the national government.",
    "{name}, the capital of {country}, is {a_descr} city {locus}.",
]
_PERSON = [
    "{name} is {a_job} who was born in {city} in {year}.",
    "Born in {city} in {year}, {name} is {a_job}.",
    "{name} (born {year} in {city}) is {a_job}.",
    "{A_job} by training, {name} was born in {city} in {year}.",
    "{name} is {a_job}, born in the city of {city} in {year}.",
]
_ORG = [
    "{name} is {a_industry} company founded by {founder} in {year}. It is based in {city}.",
    "Founded in {year} by {founder}, {name} is {a_industry} company headquartered in {city}.",
    "{name} is {a_industry} firm based in {city}. It was established by {founder} in {year}.",
    "{name}, headquartered in {city}, is {a_industry} company that {founder} founded in {year}.",
    "{name} is {a_industry} business with its head office in {city}; {founder} set it up in {year}.",
]
_WORK = [
    "{name} is {a_kind} by {creator}, published by {publisher}.",
    "{name} is {a_kind} {made} by {creator} and published by {publisher}.",
    "Published by {publisher}, {name} is {a_kind} by {creator}.",
    "{name} is {a_kind} by {creator}; it was released by {publisher}.",
    "{name} is {a_kind} {made} by {creator}. {publisher} published it.",
]
_CITY_DESCR = ["port", "river", "market", "hill", "university", "industrial", "coastal", "garrison"]
_CITY_LOCUS = ["known for its old harbour", "set on a wide river delta", "in the interior of the country",
               "near the coast", "on a high plateau", "at the foot of a mountain range"]
_MADE = {"novel": ("written", "wrote"), "symphony": ("composed", "composed"), "painting": ("made", "painted"),
         "film": ("directed", "directed"), "opera": ("composed", "composed")}

# Extra sentences (varied only): true facts about OTHER entities of the same sub-world, or filler.
_COUNTRY_OTHER = [
    "It is not to be confused with {other}, whose capital is {other_capital}.",
    "The capital of {other}, by contrast, is {other_capital}.",
]
_COUNTRY_CITY = ["Its cities also include {city}.", "Other cities of the country include {city}."]
_CITY_OTHER = [
    "It is often confused with {other}, a city in {other_country}.",
    "It should not be confused with {other}, which lies in {other_country}.",
]
# the second only for non-capitals
_CITY_SIBLING = ["Other cities in {country} include {sibling}.", "The capital of {country} is {capital}."]
_PERSON_NAMESAKE = [
    "Not to be confused with the {other_job} {other} (born {other_year}).",
    "{name} should not be confused with {other}, {a_other_job} born in {other_city}.",
]
_PERSON_OTHER = [
    "{other}, another {job}, was born in {other_city} in {other_year}.",
    "Other people born in {city} include the {other_job} {other}.",
]
_ORG_OTHER = [
    "Its rival {other} was founded by {other_founder}.",
    "It is not to be confused with {other}, {a_other_industry} company based in {other_city}.",
    "{other}, another {industry} company, was founded by {other_founder} in {other_year}.",
]
_WORK_OTHER = [
    "It is not to be confused with {other}, {a_other_kind} by {other_creator}.",
    "{publisher} also published {other}, {a_other_kind} by {other_creator}.",
    "{creator} is also the creator of the {other_kind} {other}.",
]
_FILLER = {
    "country": ["Its economy rests largely on trade and farming.", "The country has a temperate climate.",
                "It is known for its mountain railways."],
    "city": ["The city is known for its covered markets.", "Its old town has several museums.",
             "It hosts an annual music festival."],
    "person": ["Their career has spanned several decades.", "Their work has been widely discussed."],
    "org": ["The company employs several hundred people.", "It has grown steadily since its founding."],
    "work": ["It received mixed reviews on its release.", "It is regarded as one of its creator's major works."],
}

# Questions: one list per question kind (the hops are fixed by the kind); the first is the plain wording.
_Q_BORN_CITY = ["Where was {p} born?", "What is the birthplace of {p}?", "In which city was {p} born?",
                "{p} was born in which city?"]
_Q_BORN_COUNTRY = ["In which country was {p} born?", "What is the country of birth of {p}?",
                   "{p} was born in which country?", "In what country is the birthplace of {p}?"]
_Q_FOUNDER = ["Who founded {o}?", "Who is the founder of {o}?", "{o} was founded by whom?",
              "Which person founded the company {o}?"]
_Q_FOUNDER_CITY = ["In which city was the founder of {o} born?", "Where was the founder of {o} born?",
                   "What is the birthplace of the person who founded {o}?",
                   "The founder of {o} was born in which city?"]
_Q_FOUNDER_COUNTRY = ["In which country was the founder of {o} born?",
                      "What is the country of birth of the founder of {o}?",
                      "The person who founded {o} was born in which country?",
                      "In what country was the person who founded {o} born?"]
_Q_BASED_COUNTRY = ["In which country is {o} based?", "{o} is headquartered in which country?",
                    "In what country does {o} have its headquarters?", "Which country is {o} based in?"]
_Q_CREATOR = ["Who created the {kind} {w}?", "Who {made} the {kind} {w}?", "Who is the creator of the {kind} {w}?",
              "The {kind} {w} is the work of which person?"]
_Q_CREATOR_CITY = ["Where was the creator of {w} born?", "In which city was the creator of {w} born?",
                   "What is the birthplace of the person who created {w}?",
                   "The creator of {w} was born in which city?"]
_Q_PUBLISHER_FOUNDER_COUNTRY = [
    "In which country was the founder of the company that published {w} born?",
    "What is the country of birth of the founder of the company that published {w}?",
    "The company that published {w} was founded by someone born in which country?",
    "In what country was the person who founded the publisher of {w} born?",
]


def _a(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


_KEYS = {
    "prefix": lambda e: e.name[:2],
    "surname": lambda e: e.name.split()[-1],
    "job": lambda e: e.facts["job"],
    "industry": lambda e: e.facts["industry"],
    "publisher": lambda e: e.facts["published_by"],
    "creator": lambda e: e.facts["created_by"],
    "country": lambda e: e.facts["country"],
    "born_in": lambda e: e.facts["born_in"],
}


class _Prose:
    """Chooses phrasings: the first template (plain) or a seeded random one (varied), and finds
    other entities of the same sub-world for the extra sentences."""

    def __init__(self, ents: list[Entity], by_id: dict[str, Entity], prose: str, seed: int) -> None:
        if prose not in ("plain", "varied"):
            raise ValueError(f"prose must be 'plain' or 'varied', got {prose!r}")
        self.varied = prose == "varied"
        self.rng = random.Random(f"{seed}:prose")  # own generator: the world itself never changes
        self.by_id = by_id
        self.groups: dict[tuple, list[Entity]] = defaultdict(list)  # (sub-world, kind, key, value) -> entities
        for e in ents:
            self.groups[e.id.split("-")[0], e.kind, None, None].append(e)
            for key, fn in _KEYS.items():
                try:
                    self.groups[e.id.split("-")[0], e.kind, key, fn(e)].append(e)
                except KeyError:
                    pass

    def choose(self, templates: list[str]) -> str:
        return self.rng.choice(templates) if self.varied else templates[0]

    def name(self, e: Entity, key: str) -> str:
        return self.by_id[e.facts[key]].name

    def pick(self, e: Entity, key: str | None = None, kind: str | None = None, value=None, exclude=()) -> Entity | None:
        """A random entity of ``kind`` (default: e's) in e's sub-world sharing ``key`` with e (or equal
        to ``value``), other than e and ``exclude``; None if there is none."""
        if not self.varied:
            return None
        if key is not None and value is None:
            value = _KEYS[key](e)
        pool = self.groups[e.id.split("-")[0], kind or e.kind, key, value]
        ok = lambda o: o.id != e.id and o.id not in exclude  # noqa: E731
        for _ in range(4):  # a few draws usually hit; a scan settles small pools
            if pool and ok(o := self.rng.choice(pool)):
                return o
        pool = [o for o in pool if ok(o)]
        return self.rng.choice(pool) if pool else None

    def similar(self, e: Entity) -> Entity | None:
        """Another entity of e's kind, preferably one whose name starts like e's (easily confused)."""
        return self.pick(e, "prefix") or self.pick(e)


def _country(e: Entity, w: _Prose) -> tuple[str, list[str]]:
    f = {"name": e.name, "capital": w.name(e, "capital")}
    extras = []
    if other := w.similar(e):
        extras.append(w.choose(_COUNTRY_OTHER).format(**f, other=other.name, other_capital=w.name(other, "capital")))
    if city := w.pick(e, kind="city", key="country", value=e.id, exclude={e.facts["capital"]}):
        extras.append(w.choose(_COUNTRY_CITY).format(**f, city=city.name))
    return w.choose(_COUNTRY).format(**f), extras


def _city(e: Entity, w: _Prose) -> tuple[str, list[str]]:
    country = w.by_id[e.facts["country"]]
    is_capital = country.facts.get("capital") == e.id
    f = {"name": e.name, "country": country.name, "capital": w.name(country, "capital"),
         "a_descr": _a(w.rng.choice(_CITY_DESCR)), "locus": w.rng.choice(_CITY_LOCUS)}
    extras = []
    if other := w.similar(e):
        extras.append(w.choose(_CITY_OTHER).format(**f, other=other.name, other_country=w.name(other, "country")))
    if sibling := w.pick(e, "country"):  # another city of the same country
        extras.append(w.choose(_CITY_SIBLING[:1] if is_capital else _CITY_SIBLING).format(**f, sibling=sibling.name))
    return w.choose(_CAPITAL if is_capital else _CITY).format(**f), extras


def _other_person(o: Entity, w: _Prose) -> dict:
    return {"other": o.name, "other_job": o.facts["job"], "a_other_job": _a(o.facts["job"]),
            "other_year": o.facts["born_year"], "other_city": w.name(o, "born_in")}


def _person(e: Entity, w: _Prose) -> tuple[str, list[str]]:
    job = e.facts["job"]
    f = {"name": e.name, "job": job, "a_job": _a(job), "A_job": _a(job).capitalize(),
         "city": w.name(e, "born_in"), "year": e.facts["born_year"]}
    extras = []
    if namesake := w.pick(e, "surname"):  # the world's built-in distractor: a shared surname
        extras.append(w.choose(_PERSON_NAMESAKE).format(**f, **_other_person(namesake, w)))
    for template, other in zip(_PERSON_OTHER, [w.pick(e, "job"), w.pick(e, "born_in")]):
        if other:
            extras.append(template.format(**f, **_other_person(other, w)))
    return w.choose(_PERSON).format(**f), extras


def _org(e: Entity, w: _Prose) -> tuple[str, list[str]]:
    ind = e.facts["industry"]
    f = {"name": e.name, "industry": ind, "a_industry": _a(ind), "founder": w.name(e, "founded_by"),
         "year": e.facts["founded_year"], "city": w.name(e, "based_in")}
    extras = []
    other = w.similar(e)
    if other:
        extras.append(w.choose(_ORG_OTHER[:2]).format(
            **f, other=other.name, other_founder=w.name(other, "founded_by"),
            a_other_industry=_a(other.facts["industry"]), other_city=w.name(other, "based_in")))
    if peer := w.pick(e, "industry", exclude={other.id} if other else ()):
        extras.append(_ORG_OTHER[2].format(**f, other=peer.name, other_founder=w.name(peer, "founded_by"),
                                           other_year=peer.facts["founded_year"]))
    return w.choose(_ORG).format(**f), extras


def _work(e: Entity, w: _Prose) -> tuple[str, list[str]]:
    kind = e.facts["work_kind"]
    f = {"name": e.name, "kind": kind, "a_kind": _a(kind), "made": _MADE[kind][0],
         "creator": w.name(e, "created_by"), "publisher": w.name(e, "published_by")}
    extras = []
    for i, other in enumerate([w.similar(e), w.pick(e, "publisher"), w.pick(e, "creator")]):
        if other:
            extras.append(_WORK_OTHER[i].format(**f, other=other.name, other_kind=other.facts["work_kind"],
                                                a_other_kind=_a(other.facts["work_kind"]),
                                                other_creator=w.name(other, "created_by")))
    return w.choose(_WORK).format(**f), extras


_PASSAGE_FNS = {"country": _country, "city": _city, "person": _person, "org": _org, "work": _work}


def _passage(e: Entity, w: _Prose) -> str:
    """The lead sentence; in varied mode followed by one or two extra sentences (at least one names
    another entity when the sub-world has one)."""
    if e.kind not in _PASSAGE_FNS:
        raise ValueError(e.kind)
    lead, extras = _PASSAGE_FNS[e.kind](e, w)
    if not w.varied:
        return lead
    w.rng.shuffle(extras)
    chosen = extras[:1]
    if not chosen or w.rng.random() < 0.5:  # a second sentence: another fact or neutral filler
        chosen.append(extras[1] if len(extras) > 1 and w.rng.random() < 0.5 else w.rng.choice(_FILLER[e.kind]))
    return " ".join([lead, *chosen])


def _questions(
    ents: list[Entity], by_id: dict[str, Entity], rng: random.Random, split: str, w: _Prose
) -> list[Question]:
    qs: list[Question] = []

    def add(templates: list[str], fields: dict, answer_id: str, hops: int, support: list[str]) -> None:
        text = w.choose(templates).format(**fields)
        qs.append(Question(f"{split}-{len(qs)}", text, [by_id[answer_id].name], hops, support, split))

    for e in ents:
        f = e.facts
        if e.kind == "person":
            city = by_id[f["born_in"]]
            p = {"p": e.name}
            add(_Q_BORN_CITY, p, city.id, 1, [e.id])
            add(_Q_BORN_COUNTRY, p, city.facts["country"], 2, [e.id, city.id])
        elif e.kind == "org":
            founder = by_id[f["founded_by"]]
            city = by_id[founder.facts["born_in"]]
            o = {"o": e.name}
            add(_Q_FOUNDER, o, founder.id, 1, [e.id])
            add(_Q_FOUNDER_CITY, o, city.id, 2, [e.id, founder.id])
            add(_Q_FOUNDER_COUNTRY, o, city.facts["country"], 3, [e.id, founder.id, city.id])
            add(_Q_BASED_COUNTRY, o, by_id[f["based_in"]].facts["country"], 2, [e.id, f["based_in"]])
        elif e.kind == "work":
            creator = by_id[f["created_by"]]
            org = by_id[f["published_by"]]
            wk = {"w": e.name, "kind": f["work_kind"], "made": _MADE[f["work_kind"]][1]}
            add(_Q_CREATOR, wk, creator.id, 1, [e.id])
            add(_Q_CREATOR_CITY, wk, creator.facts["born_in"], 2, [e.id, creator.id])
            founder = by_id[org.facts["founded_by"]]
            city = by_id[founder.facts["born_in"]]
            add(_Q_PUBLISHER_FOUNDER_COUNTRY, wk, city.facts["country"], 4, [e.id, org.id, founder.id, city.id])
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


def generate_world(entities: int = 200, seed: int = 0, prose: str = "plain") -> World:
    """``entities`` people in all (split between the two sub-worlds); other kinds scale with it.

    ``prose``: ``"plain"`` (one template per passage/question kind) or ``"varied"`` (several
    phrasings and distractor sentences; same facts, questions, answers and supporting ids)."""
    if entities < 8:
        raise ValueError("entities must be at least 8")
    rng = random.Random(seed)
    names = _Names(rng)
    n_train = max(4, entities * 3 // 4)
    train_ents = _subworld(rng, names, "t", n_train)
    held_ents = _subworld(rng, names, "h", entities - n_train)
    ents = train_ents + held_ents
    by_id = {e.id: e for e in ents}
    w = _Prose(ents, by_id, prose, seed)
    passages = [{"id": e.id, "title": e.name, "text": _passage(e, w)} for e in ents]
    rng.shuffle(passages)
    return World(ents, passages, _questions(train_ents, by_id, rng, "train", w),
                 _questions(held_ents, by_id, rng, "heldout", w))
