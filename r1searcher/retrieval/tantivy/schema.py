"""What the tantivy BM25 reader (:mod:`~r1searcher.retrieval.tantivy.reader`) and builder
(:mod:`~r1searcher.retrieval.tantivy.build`) must agree on: the index's schema, the text
analyzer and its registered name, the text a passage is indexed by, and how a shard's files are
listed and hashed for the manifest.

Why a module of its own: both sides need these, and neither should import the other's internals
(the builder used to import four private names from the reader, and the reader the builder).
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

from r1searcher.util.fingerprint import file_sha256
from r1searcher.retrieval.base import Passage

KIND = "bm25"
ENGINE = "tantivy"
#: The name the analyzer is registered under in every shard (the schema's body field names it).
TOKENIZER = "r1_simple"


def make_analyzer(stemmer: str | None = "english", stopwords: str | None = "en"):
    """The tantivy text analyzer used for passages and queries alike: split on non-alphanumeric
    characters, lower-case, drop English stop words (bm25s's list) and single ASCII letters/digits,
    Snowball-stem (see :mod:`~r1searcher.retrieval.tantivy.reader`'s module doc)."""
    import tantivy

    if stopwords not in ("en", None):
        raise ValueError(f"stopwords must be 'en' or None, got {stopwords!r}")
    single = list(string.ascii_lowercase) + list(string.digits)
    stops = single
    if stopwords == "en":
        from bm25s.stopwords import STOPWORDS_EN

        stops = sorted(set(STOPWORDS_EN) | set(single))
    b = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.remove_long(100))
         .filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.custom_stopword(stops)))
    if stemmer is not None:
        try:
            b = b.filter(tantivy.Filter.stemmer(stemmer))
        except ValueError:
            raise ValueError(f"unknown stemmer language {stemmer!r}") from None
    return b.build()


def schema():
    """A shard's schema: the analysed ``body`` (term frequencies, not stored) and the passage's
    ``row`` within the shard (a fast field, to map hits back to the passage store)."""
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("body", stored=False, tokenizer_name=TOKENIZER, index_option="freq")
    sb.add_unsigned_field("row", stored=False, fast=True, indexed=False)
    return sb.build()


def passage_body(p: Passage, index_title: bool) -> str:
    """The text a passage is indexed and exactly re-scored by: title and text, or the text alone."""
    return f"{p.title} {p.text}" if index_title and p.title else p.text


def index_files(d: Path) -> dict[str, int]:
    """Name → size of the files of folder ``d`` (hidden files left out): what the manifest records."""
    return {f.name: f.stat().st_size for f in sorted(d.iterdir()) if f.is_file() and not f.name.startswith(".")}


def file_sha256s(d: Path, names: Iterable[str] | None = None) -> dict[str, str]:
    """sha256 of the files of ``d`` that :func:`index_files` lists (or of ``names``): what the manifest records."""
    return {n: file_sha256(d / n) for n in (names if names is not None else index_files(d))}
