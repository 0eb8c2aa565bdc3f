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
        with open(corpus, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
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
    tmp = Path(str(out) + ".tmp")
    n_tokens = 0
    with open(tmp, "w", encoding="utf-8") as f:
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
            f.write("\n".join(lines) + "\n")
            if bar is not None:
                bar.update(m)
    if bar is not None:
        bar.close()
    tmp.replace(out)
    return {"passages": n, "tokens": n_tokens, "model": model, "rare_share": rare_share, "seed": seed,
            "bytes": Path(out).stat().st_size}


def write_reworded(out: str | Path, n: int, source: str | Path, seed: int = 0, fixed_top: int = 512,
                   band: int = 64, rare_count: int = 2, show_progress: bool = True) -> dict:
    """``n`` passages made from the real passages of ``source`` (the shared corpus), re-worded.

    Why: passages sampled word by word (:func:`write_corpus`) have no term burstiness: every query
    term is spread uniformly, so a top-k search must score most postings and no engine can prune
    (the worst case, reported as such). Real text repeats its topic's rare words in few passages.
    Here passage ``i`` is source passage ``i mod S`` in variant ``v = i // S``; variant 0 is the
    source itself (so the evaluation questions stay answerable), and variant ``v`` maps every word
    consistently inside the passage: the ``fixed_top`` most frequent words stay (function words),
    other words move to another word of similar corpus frequency (a rotation inside bands of
    ``band`` frequency ranks, different per variant), and words seen at most ``rare_count`` times
    become a fresh pseudo-word per variant (names, numbers: the vocabulary grows with the corpus
    as Wikipedia's does). Passage length, word repetition and frequency profile stay real.
    """
    rows = [json.loads(x) for x in open(source, encoding="utf-8") if x.strip()]
    counts: Counter[str] = Counter()
    for r in rows:
        counts.update(_WORD.findall(r["title"] + " " + r["text"]))
    # every passage once as token ids (words and the text between them), so that a variant is a
    # table lookup and a join, not a regex pass
    table: dict[str, int] = {}
    templates = []
    for r in rows:
        templates.append(tuple([table.setdefault(t, len(table)) for t in _SPLIT.split(r["title"])] + [-1] +
                               [table.setdefault(t, len(table)) for t in _SPLIT.split(r["text"])]))
    tokens = list(table)
    ranked = [w for w, _ in counts.most_common()]
    rank = {w: i for i, w in enumerate(ranked)}
    tok_rank = np.asarray([rank.get(t, -1) for t in tokens])
    tok_count = np.asarray([counts.get(t, 0) for t in tokens])
    movable = np.flatnonzero((tok_rank >= fixed_top) & (tok_count > rare_count))
    rare = np.flatnonzero((tok_rank >= fixed_top) & (tok_count <= rare_count) & (tok_count > 0))
    rng = np.random.default_rng(seed)
    n_bands = len(ranked) // band + 1
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="reword", unit="psg", mininterval=2.0)
    tmp = Path(str(out) + ".tmp")
    s_count = len(rows)
    base = np.asarray(tokens, dtype=object)
    ranked_arr = np.asarray(ranked, dtype=object)
    r_m = tok_rank[movable]
    lo = (r_m // band) * band
    size = np.minimum(band, len(ranked) - lo)
    with open(tmp, "w", encoding="utf-8") as f:
        for v in range(0, -(-n // s_count)):
            m = base.copy()
            if v:
                offsets = rng.integers(1, band, size=n_bands)
                m[movable] = ranked_arr[lo + (r_m - lo + offsets[r_m // band]) % size]
                ids = rng.integers(1000, 1000 + RARE_SPACE, size=len(rare))
                m[rare] = [_pseudo(int(i)) for i in ids]
            ml = m.tolist()
            lines = []
            for i in range(min(s_count, n - v * s_count)):
                tpl = templates[i]
                cut = tpl.index(-1)
                lines.append(json.dumps({"id": f"r{v:04d}-{i:06d}", "title": "".join([ml[t] for t in tpl[:cut]]),
                                         "text": "".join([ml[t] for t in tpl[cut + 1:]])}, ensure_ascii=False))
            f.write("\n".join(lines) + "\n")
            if bar is not None:
                bar.update(len(lines))
    if bar is not None:
        bar.close()
    tmp.replace(out)
    return {"passages": n, "model": f"re-worded {Path(source).name} ({s_count} passages × {-(-n // s_count)} variants)",
            "fixed_top": fixed_top, "band": band, "rare_count": rare_count, "seed": seed, "bytes": Path(out).stat().st_size}
