"""Wikipedia-like passages at any size, for measuring retrieval at 1M–29M passages on one machine.

Why not the old 50k-word Zipf generator: real text has a head of very common words *and* a
vocabulary that keeps growing with the corpus (Heaps' law: names, numbers, rare words), and
queries are questions made of both. Posting-list lengths, which decide BM25 query cost, follow
from that. So the words are drawn from the **unigram distribution of the shared Wikipedia
corpus** (its ~4.7M tokens, case kept, ``\\w+`` words) and, with probability ``rare_share`` per
token, from an open-ended Zipf(1.3) stream of pseudo-words (ids up to ``RARE_SPACE``), which makes
the vocabulary grow with the corpus as Wikipedia's does. Passage lengths are 60–100 words (the
paper's 100-word split leaves most passages near 100 and a tail of shorter ones); titles are real
titles of the shared corpus, some with a pseudo-word appended. Queries in the benchmark are the
real questions of the four evaluation sets, so their terms meet realistic posting lists.

Without the shared corpus (a user's clone), the unigram model falls back to 50k pseudo-words with
a Zipf(1.0) law; the output says which model was used. Deterministic for a seed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from r1searcher.util.files import Damaged, iter_jsonl, write_atomic

RARE_SPACE = 50_000_000
_WORD = re.compile(r"\w+")
_SPLIT = re.compile(r"(\w+)")
_SYLL = np.array(["ka", "to", "ri", "men", "sa", "lo", "vin", "der", "ba", "chi", "ne", "mor", "tes", "gal", "ru",
                  "pa", "zen", "li", "dor", "fa", "qu", "shi", "ven", "tor", "el", "an", "is", "um", "ox", "yr"])


def _pseudo(i: int) -> str:
    """A pronounceable, unique pseudo-word for id ``i`` (base-30 syllables)."""
    out = []
    i += 30  # at least two syllables
    while i:
        i, r = divmod(i, 30)
        out.append(_SYLL[r])
    return "".join(out)


def unigram_model(corpus: str | Path | None) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(words, cdf, titles, source) from ``corpus``'s word counts, or a pseudo-word Zipf law without one."""
    if corpus is not None and Path(corpus).is_file():
        counts: Counter[str] = Counter()
        titles: list[str] = []
        for _, r in iter_jsonl(corpus):
            if isinstance(r, Damaged):
                raise ValueError(str(r))
            counts.update(_WORD.findall(r["text"]))
            titles.append(r["title"])
        words, freq = zip(*counts.most_common())
        p = np.asarray(freq, dtype=np.float64)
        return np.asarray(words, dtype=object), np.cumsum(p / p.sum()), sorted(set(titles)), f"unigrams of {Path(corpus).name}"
    n = 50_000
    p = 1.0 / (np.arange(n) + 2.7)
    words = np.asarray([_pseudo(i + RARE_SPACE) for i in range(n)], dtype=object)
    return words, np.cumsum(p / p.sum()), [w.title() for w in words[1000:3000]], "pseudo-word Zipf (no corpus given)"


def write_corpus(out: str | Path, n: int, source: str | Path | None = None, seed: int = 0,
                 rare_share: float = 0.04, chunk: int = 100_000, show_progress: bool = True) -> dict:
    """Write ``n`` passages ``{"id","title","text"}`` to ``out`` (JSONL); return what was generated."""
    words, cdf, titles, model = unigram_model(source)
    rng = np.random.default_rng(seed)
    titles_arr = np.asarray(titles, dtype=object)
    rare_cache: dict[int, str] = {}
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="generate", unit="psg", mininterval=2.0)
    n_tokens = 0

    def chunks():
        nonlocal n_tokens
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            lengths = rng.integers(60, 101, size=m)
            total = int(lengths.sum())
            n_tokens += total
            ids = np.minimum(np.searchsorted(cdf, rng.random(total)), len(words) - 1)
            toks = words[ids]
            rare = rng.random(total) < rare_share
            rare_ids = np.minimum(rng.zipf(1.3, size=int(rare.sum())), RARE_SPACE) - 1
            rare_words = []
            for r in rare_ids.tolist():
                w = rare_cache.get(r)
                if w is None:
                    w = _pseudo(r)
                    if len(rare_cache) < 2_000_000:
                        rare_cache[r] = w
                rare_words.append(w)
            toks[rare] = np.asarray(rare_words, dtype=object)
            tpick = rng.integers(0, len(titles_arr), size=m)
            suffix = rng.random(m) < 0.3
            lines = []
            pos = 0
            for j in range(m):
                ln = int(lengths[j])
                title = titles_arr[tpick[j]]
                if suffix[j]:
                    title = f"{title} ({_pseudo(int(rng.integers(0, 1_000_000)))})"
                lines.append(json.dumps({"id": f"w{start + j:09d}", "title": title,
                                         "text": " ".join(toks[pos:pos + ln])}, ensure_ascii=False))
                pos += ln
            yield "\n".join(lines) + "\n"
            if bar is not None:
                bar.update(m)

    try:
        write_atomic(out, chunks())
    finally:
        if bar is not None:
            bar.close()
    return {"passages": n, "tokens": n_tokens, "model": model, "rare_share": rare_share, "seed": seed,
            "bytes": Path(out).stat().st_size}
