"""Where a turn stops, what its query is, and the text of the block the system inserts.

Stop strings may end inside a token (Qwen has ``>\\n\\n``; SmolLM2 has ``>.``), and some tokenizers
do not decode back to the text they encoded (WordPiece: ``< | end _ of _ query | >``). So a turn
stops when EITHER

* the decoded text of the turn's last few tokens contains a stop string (earliest stop wins; the
  text after it, inside the same token, is the *trailing* text), or
* the turn's token ids end with the stop string's own tokenisation (for non-faithful decoders).

The sampled tokens are never cut or re-tokenised. The inserted block starts with just enough
newlines that the text reads ``<|end_of_query|>\\n\\n<|begin_of_documents|>\\n(1) …``: none if the
stop token already brought ``\\n\\n``, one if it brought ``\\n``, two otherwise (after any other
trailing characters, e.g. ``<|end_of_query|>.\\n\\n<|begin_of_documents|>``). The reward's format
counts (``tags.FormatCounts``) only count tags, so they come out right in every case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from r1searcher.retrieval.base import Passage, format_documents
from r1searcher.rollout.tags import DOCS_CLOSE, DOCS_OPEN, QUERY_OPEN, STOP_ANSWER, STOP_QUERY, clean_query, extract_query

#: Stop string → what it means for the turn.
STOPS: dict[str, str] = {STOP_QUERY: "query", STOP_ANSWER: "answer"}


@dataclass(frozen=True)
class StopMatch:
    kind: str  # "query" | "answer"
    stop: str
    trailing: str  # decoded text after the stop string, inside the turn's last token ("" for id matches)
    by_ids: bool  # matched on token ids (the decoded text did not show the stop string)


def decode(tokenizer, ids: Sequence[int]) -> str:
    """Decode policy tokens as they are (special tokens kept, no clean-up of spaces)."""
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


class StopMatcher:
    """Detects a stop at the end of a turn; call :meth:`check` after every new token."""

    def __init__(self, tokenizer, stops: dict[str, str] | None = None, window: int = 32):
        self.tokenizer = tokenizer
        self.stops = dict(stops or STOPS)
        self.seqs = {s: tuple(tokenizer.encode(s, add_special_tokens=False)) for s in self.stops}
        self.window = max(window, max(len(v) for v in self.seqs.values()) + 4)
        self.query_open_ids = tuple(tokenizer.encode(QUERY_OPEN, add_special_tokens=False))

    def check(self, turn: Sequence[int]) -> StopMatch | None:
        if not turn:
            return None
        tail = decode(self.tokenizer, turn[-self.window :])
        best: tuple[int, str] | None = None
        for stop in self.stops:
            i = tail.find(stop)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, stop)
        if best is not None:
            i, stop = best
            return StopMatch(self.stops[stop], stop, tail[i + len(stop) :], by_ids=False)
        for stop, seq in self.seqs.items():
            if seq and len(turn) >= len(seq) and tuple(turn[-len(seq) :]) == seq:
                return StopMatch(self.stops[stop], stop, "", by_ids=True)
        return None

    def query(self, turn: Sequence[int], match: StopMatch) -> str | None:
        """The turn's query (cleaned), or None when the turn opened no query."""
        if not match.by_ids:
            return extract_query(decode(self.tokenizer, turn))
        close = self.seqs[match.stop]
        body = list(turn[: len(turn) - len(close)])
        open_ = self.query_open_ids
        for start in range(len(body) - len(open_), -1, -1):
            if tuple(body[start : start + len(open_)]) == open_:
                return clean_query(decode(self.tokenizer, body[start + len(open_) :]))
        return None


def block_lead(trailing: str) -> str:
    """Newlines the inserted block starts with, given the text the stop token brought after the stop."""
    if trailing.strip():
        return "\n\n"
    return "\n" * max(0, 2 - trailing.count("\n"))


def document_block(passages: list[Passage], max_words: int | None, trailing: str = "") -> str:
    """``[\\n\\n]<|begin_of_documents|>\\n(1) Title: text\\n…<|end_of_documents|>\\n\\n`` (paper format)."""
    return f"{block_lead(trailing)}{DOCS_OPEN}\n{format_documents(passages, max_words)}{DOCS_CLOSE}\n\n"
