"""The tag protocol of R1-Searcher: constants, a parser from completion text to segments, checks.

Tags are plain text (several tokens each), not added special tokens, exactly as in the paper's code.
A completion is everything the model wrote after the prompt (which ends with ``<think>``), with the
system-inserted document blocks in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
QUERY_OPEN = "<|begin_of_query|>"
QUERY_CLOSE = "<|end_of_query|>"
DOCS_OPEN = "<|begin_of_documents|>"
DOCS_CLOSE = "<|end_of_documents|>"

#: Generation pauses at these strings (query: retrieve; answer: done).
STOP_QUERY = QUERY_CLOSE
STOP_ANSWER = ANSWER_CLOSE

_DOC_BLOCK_RE = re.compile(re.escape(DOCS_OPEN) + r".*?" + re.escape(DOCS_CLOSE), re.DOTALL)
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def clean_query(raw: str) -> str:
    """Normalise a query as the released rollout does: drop '"', strip, collapse whitespace."""
    return " ".join(raw.replace('"', "").split())


def extract_query(text: str) -> str | None:
    """The query of a segment that stopped at ``<|end_of_query|>``: text after the last
    ``<|begin_of_query|>`` (and before any ``<|end_of_query|>``), cleaned. None when no query opens."""
    if QUERY_OPEN not in text:
        return None
    return clean_query(text.split(QUERY_OPEN)[-1].split(QUERY_CLOSE)[0])


_LEAD_IN_RE = re.compile(r"^(?:final answer|the answer is|answer)\s*[:\-]?\s*", re.IGNORECASE)
_SPECIAL_RE = re.compile(r"<\|[^|<>\s]{1,40}\|>|</s>|<eos>|<end_of_turn>")  # end-of-turn/EOS token texts
_DOC_NUMBER_RE = re.compile(r"^\(\d{1,2}\)\s*")  # a "(2) " copied from the numbered documents


def extract_answer(text: str, *, first_line: bool = False) -> str:
    """The one answer extractor: the prediction in a model's ``text``.

    Default, the released code's rule (the searching methods; the rollout applies it when a
    completion has both answer tags): ``text.split('<answer>')[-1].split('</answer>')[0].strip()``.

    ``first_line=True``, the direct baselines' rule for a plain reply: special-token text
    (``<|im_end|>``) is dropped; when an ``<answer>`` is closed after it, the released rule;
    otherwise the first non-empty line, without an ``Answer:`` / ``The answer is`` lead-in, a copied
    document number ``(2)``, surrounding quotes or ``**``, or a final period (not that of "U.S.").
    Empty text → ``""``.
    """
    if not first_line:
        return text.split(ANSWER_OPEN)[-1].split(ANSWER_CLOSE)[0].strip()
    text = _SPECIAL_RE.sub("", text)
    if ANSWER_OPEN in text and ANSWER_CLOSE in text.split(ANSWER_OPEN, 1)[1]:
        return extract_answer(text)
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        line = _DOC_NUMBER_RE.sub("", _LEAD_IN_RE.sub("", line).strip().strip("*").strip())
        if re.search(r"[^A-Z.]\.$", line):  # a sentence's period, not "U.S."
            line = line[:-1]
        line = line.strip().strip('*"“”\'').strip()
        if line:  # "The answer is:" alone on its line: the answer is on the next one
            return line
    return ""


def strip_documents(text: str) -> str:
    """Remove every complete ``<|begin_of_documents|> … <|end_of_documents|>`` block."""
    return _DOC_BLOCK_RE.sub("", text)


def documents(text: str) -> list[str]:
    """The contents of every complete ``<|begin_of_documents|> … <|end_of_documents|>`` block, in order."""
    return [m.group(0)[len(DOCS_OPEN) : -len(DOCS_CLOSE)] for m in _DOC_BLOCK_RE.finditer(text)]


def has_cjk(text: str) -> bool:
    return bool(_CJK_RE.search(text))


@dataclass
class FormatCounts:
    """The released reward servers' format-count block, on a completion string."""

    docs_open_nl: int  # c1 "<|begin_of_documents|>\n"
    docs_close_nlnl: int  # c2 "<|end_of_documents|>\n\n"
    query_open: int  # c3
    query_close: int  # c4
    docs_open: int  # c5
    docs_close: int  # c6
    docs_open_numbered: int  # c7 "<|begin_of_documents|>\n(1)"
    think_open: int
    think_close: int
    answer_open: int
    answer_close: int

    @classmethod
    def of(cls, text: str) -> "FormatCounts":
        return cls(
            text.count(DOCS_OPEN + "\n"),
            text.count(DOCS_CLOSE + "\n\n"),
            text.count(QUERY_OPEN),
            text.count(QUERY_CLOSE),
            text.count(DOCS_OPEN),
            text.count(DOCS_CLOSE),
            text.count(DOCS_OPEN + "\n(1)"),
            text.count(THINK_OPEN),
            text.count(THINK_CLOSE),
            text.count(ANSWER_OPEN),
            text.count(ANSWER_CLOSE),
        )

    @property
    def docs_ok(self) -> bool:
        """c1 == c2 == … == c7: every query got exactly one system-inserted, numbered block."""
        c = (
            self.docs_open_nl,
            self.docs_close_nlnl,
            self.query_open,
            self.query_close,
            self.docs_open,
            self.docs_close,
            self.docs_open_numbered,
        )
        return len(set(c)) == 1

    @property
    def n_searches(self) -> int:
        """Well-formed searches: only meaningful when ``docs_ok``."""
        return self.docs_open_nl if self.docs_ok else 0

    @property
    def think_answer_ok(self) -> bool:
        """Prompt ends with <think>: zero <think>, one </think>, one <answer>, one </answer>."""
        return (
            self.think_open == 0
            and self.think_close == 1
            and self.answer_open == 1
            and self.answer_close == 1
        )


@dataclass
class Segment:
    kind: str  # "think" | "query" | "documents" | "answer" | "text"
    text: str


@dataclass
class Parsed:
    """A completion split into segments, with the checks the rewards need."""

    segments: list[Segment] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    answer: str | None = None
    counts: FormatCounts | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


_TOKEN_RE = re.compile(
    "("
    + "|".join(
        re.escape(t)
        for t in (QUERY_OPEN, QUERY_CLOSE, DOCS_OPEN, DOCS_CLOSE, THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
    )
    + ")"
)


def parse(completion: str, max_answer_words: int | None = 10) -> Parsed:
    """Split a completion (text after the prompt's ``<think>``) into segments and check its format.

    Problems (each a short string) are what the paper's stage-2 format penalty punishes:
    query/document tag counts unequal (a block the model made up, an open query), bad
    think/answer counts, a query or document tag inside the answer, an answer of more than
    ``max_answer_words`` words (``None`` or 0: no limit, as ``RewardConfig.max_answer_words``),
    CJK characters outside document blocks.
    """
    counts = FormatCounts.of(completion)
    out = Parsed(counts=counts)
    _split_segments(completion, out)
    _check_format(completion, counts, out, max_answer_words)
    return out


def _split_segments(completion: str, out: Parsed) -> None:
    """Fill ``out``'s segments, queries and documents from the tags of ``completion``, in order."""
    parts = _TOKEN_RE.split(completion)
    state = "think"  # the prompt opened <think>
    buf: list[str] = []

    def flush(kind: str) -> None:
        text = "".join(buf)
        if text.strip():
            out.segments.append(Segment(kind, text))
        buf.clear()

    for part in parts:
        if part == QUERY_OPEN:
            flush(state)
            state = "query"
        elif part == QUERY_CLOSE:
            if state == "query":
                q = clean_query("".join(buf))
                out.queries.append(q)
                out.segments.append(Segment("query", q))
                buf.clear()
            else:
                flush(state)
            state = "think"
        elif part == DOCS_OPEN:
            flush(state)
            state = "documents"
        elif part == DOCS_CLOSE:
            if state == "documents":
                out.documents.append("".join(buf).strip())
                out.segments.append(Segment("documents", "".join(buf)))
                buf.clear()
            else:
                flush(state)
            state = "think"
        elif part == THINK_CLOSE:
            flush(state)
            state = "text"
        elif part == ANSWER_OPEN:
            flush(state)
            state = "answer"
        elif part == ANSWER_CLOSE:
            if state == "answer":
                out.segments.append(Segment("answer", "".join(buf)))
                buf.clear()
            else:
                flush(state)
            state = "text"
        elif part == THINK_OPEN:
            flush(state)
            state = "think"
        else:
            buf.append(part)
    flush(state)


def _check_format(completion: str, c: FormatCounts, out: Parsed, max_answer_words: int | None) -> None:
    """Set ``out.answer`` and append the format problems :func:`parse` describes (``c``: the tag counts)."""
    if c.answer_open >= 1 and c.answer_close >= 1:
        # Text between the last <answer> and the first </answer> after it.
        out.answer = completion.split(ANSWER_OPEN)[-1].split(ANSWER_CLOSE)[0].strip()
    if not c.docs_ok:
        out.problems.append("query/document tag counts differ")
    if c.think_open != 0 or c.think_close != 1:
        out.problems.append("think tags: need zero <think> and one </think>")
    if c.answer_open != 1 or c.answer_close != 1:
        out.problems.append("answer tags: need one <answer> and one </answer>")
    if out.answer is not None:
        if "begin_of_query" in out.answer or "begin_of_documents" in out.answer:
            out.problems.append("query or documents inside the answer")
        if max_answer_words and len(out.answer.split()) > max_answer_words:
            out.problems.append(f"answer longer than {max_answer_words} words")
    if has_cjk(strip_documents(completion)):
        out.problems.append("CJK characters outside documents")
