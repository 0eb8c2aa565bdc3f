"""The data sets ``r1searcher data get`` knows: where each comes from and where it goes.

Every source below was checked by hand (see README, "Reproduce the paper"):

* the paper's own files live in its GitHub repository, pinned to commit ``631167c``; their sizes
  and sha256 are those of the files at that commit, so a download is checked against them;
* the full dev sets and the ready-made 100-word Wikipedia corpus come from the Hugging Face hub
  dataset repo where FlashRAG publishes them; the hub publishes each file's sha256 (LFS) or git
  blob id, which the download is checked against;
* the paper's corpus is the KILT knowledge source (Wikipedia 2019-08-01, one article per line),
  split into 100-word passages by ``r1searcher corpus build``; its host publishes no checksum, so
  the sha256 of the first download is recorded and later downloads are checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

R1_COMMIT = "631167cbb3c2464f805730e3e364a690f5b136d4"
R1_RAW = f"https://raw.githubusercontent.com/RUCAIBox/R1-Searcher/{R1_COMMIT}/"
FLASHRAG_REPO = "RUC-NLPIR/FlashRAG_datasets"
KILT_URL = "https://dl.fbaipublicfiles.com/KILT/kilt_knowledgesource.json"


@dataclass(frozen=True)
class Source:
    """One remote file: a plain HTTPS ``url``, or ``path`` in the hub dataset repo ``repo``."""

    url: str = ""
    repo: str = ""
    path: str = ""
    sha256: str = ""  # pinned; empty: the hub's published hash, or the first download's
    size: int | None = None  # bytes, when known
    size_text: str = ""  # a rough size to show when the exact one is unknown
    member: str = ""  # the file to read inside a .zip

    @property
    def on_hub(self) -> bool:
        return bool(self.repo)

    @property
    def where(self) -> str:
        """The address a person would open to download it by hand."""
        if self.on_hub:
            return f"https://huggingface.co/datasets/{self.repo}/resolve/main/{self.path}"
        return self.url

    @property
    def filename(self) -> str:
        return (self.path or self.url).rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        """Folder under ``downloads/`` for the raw file (also where a hand-downloaded copy goes)."""
        if self.on_hub:
            return f"hub/{self.repo}/{self.path.rsplit('/', 1)[0]}" if "/" in self.path else f"hub/{self.repo}"
        host_path = self.url.split("://", 1)[-1]
        return host_path.rsplit("/", 1)[0]


@dataclass(frozen=True)
class Entry:
    """A name users type: what it is, where it comes from, what it becomes (QA JSONL or passages)."""

    name: str
    what: str
    kind: Literal["qa", "corpus"]
    folder: Literal["eval", "train", "corpus"]
    source: Source
    licence: str = ""

    @property
    def relpath(self) -> str:
        return f"{self.folder}/{self.name}.jsonl"


def _r1(path: str, sha256: str, size: int) -> Source:
    return Source(url=R1_RAW + path, sha256=sha256, size=size)


def _flashrag(path: str, size: int | None = None, size_text: str = "", member: str = "") -> Source:
    return Source(repo=FLASHRAG_REPO, path=path, size=size, size_text=size_text, member=member)


_ENTRIES = [
    Entry("hotpotqa", "paper's HotpotQA eval set: 500 dev questions", "qa", "eval",
          _r1("data/eval_set/hotpotqa_500.jsonl", "bf8a42f6e1abcaaaf050cf3c7ffa50231102dd1c021b77ab01eeac95fad04bea", 87363),
          "CC BY-SA 4.0"),
    Entry("2wiki", "paper's 2WikiMultiHopQA eval set: 500 dev questions", "qa", "eval",
          _r1("data/eval_set/2wiki_500.jsonl", "0fb19dee8acbf146d60c699443b1164038727f9597f30f4894bab2da253b2f1a", 74747),
          "Apache-2.0"),
    Entry("musique", "paper's MuSiQue eval set: 500 dev questions", "qa", "eval",
          _r1("data/eval_set/musique_500.jsonl", "d1342802b9b9850e44a946031de4557722427783c92421178d729dd6e113b50d", 89778),
          "CC BY 4.0"),
    Entry("bamboogle", "paper's Bamboogle eval set: all 125 questions", "qa", "eval",
          _r1("data/eval_set/bamboogle.jsonl", "1c551e2f4c3387fd97a1cf711737258df5ffd4ea86996f1b2ba63a861cb7af29", 17783),
          "redistributed by R1-Searcher (MIT)"),
    Entry("stage_1", "paper's stage-1 training questions (350)", "qa", "train",
          _r1("data/training_set/stage_1.jsonl", "17d9eee9de22a25152ca0445fc9d7da06dde1f74ef44fb997d173c45d26d29f7", 394727),
          "MIT (R1-Searcher)"),
    Entry("stage_2", "paper's stage-2 training questions (8148)", "qa", "train",
          _r1("data/training_set/stage_2.jsonl", "25ef0a7f3b91d36e87b46f269f039b5307e89a87b12a6ee5102fb93619286219", 1376672),
          "MIT (R1-Searcher)"),
    Entry("hotpotqa-dev", "full HotpotQA dev set (FlashRAG)", "qa", "eval", _flashrag("hotpotqa/dev.jsonl"),
          "CC BY-SA 4.0"),
    Entry("2wiki-dev", "full 2WikiMultiHopQA dev set (FlashRAG)", "qa", "eval",
          _flashrag("2wikimultihopqa/dev.jsonl", size_text="54.7 MB"), "Apache-2.0"),
    Entry("musique-dev", "full MuSiQue dev set (FlashRAG)", "qa", "eval",
          _flashrag("musique/dev.jsonl", size_text="5.6 MB"), "CC BY 4.0"),
    Entry("bamboogle-test", "Bamboogle test set, 125 questions (FlashRAG)", "qa", "eval",
          _flashrag("bamboogle/test.jsonl", size=17031), ""),
    Entry("kilt-100w", "paper's corpus: KILT Wikipedia 2019-08 (5.9M articles) cut into 100-word passages", "corpus",
          "corpus", Source(url=KILT_URL, size_text="34.8 GiB"), "CC BY-SA (Wikipedia)"),
    Entry("wiki18-100w", "ready-made 100-word Wikipedia 2018 passages (FlashRAG wiki18_100w)", "corpus", "corpus",
          _flashrag("retrieval-corpus/wiki18_100w.zip", size=5130719280, member="wiki18_100w.jsonl"),
          "CC BY-SA (Wikipedia)"),
]

REGISTRY: dict[str, Entry] = {e.name: e for e in _ENTRIES}

#: Names that stand for several entries.
GROUPS: dict[str, list[str]] = {
    "eval": ["hotpotqa", "2wiki", "musique", "bamboogle"],
    "train": ["stage_1", "stage_2"],
}


def expand(names: list[str]) -> list[Entry]:
    """Entries for ``names`` (groups expanded, duplicates dropped); ValueError names the unknown ones."""
    out: list[Entry] = []
    for name in names:
        for n in GROUPS.get(name, [name]):
            if n not in REGISTRY:
                known = ", ".join(list(REGISTRY) + list(GROUPS))
                raise ValueError(f"unknown data set {n!r}; known: {known}")
            if REGISTRY[n] not in out:
                out.append(REGISTRY[n])
    return out
