"""Evaluation methods as objects: each carries its prompts, its rollout arguments and its answer rule.

=========  ===========================================================  ==========
method     prompt                                                       searches
=========  ===========================================================  ==========
rl         the training prompt (a trained policy)                       up to the limit
iterative  the training prompt + the worked examples (untrained model)   up to the limit
naive      answer directly, no documents                                none
rag        the question's top-k passages in the prompt, then answer     none (one retrieval up front)
oracle     the gold supporting passages in the prompt (upper bound)     none
=========  ===========================================================  ==========

Every method runs through the same rollout engine, so decoding and limits are identical; only the
prompt and the search budget differ. :data:`METHODS` maps each name to its :class:`Method`:
``prompts`` (None: the engine's own training prompt), ``rollout_args`` (the engine's per-call
limits), ``answer`` (the prediction of one trajectory), ``config_overrides`` (config defaults the
method needs, before the user's own) and ``needs_gold`` (the oracle reads a corpus of gold passages).

The direct methods (naive, rag, oracle) get the prompt a fair reviewer would give them, in the style
of FlashRAG's baselines (the paper's Table 2): a plain short-answer instruction, no tags to learn,

* instruct models (the tokenizer has a chat template): system = the instruction (+ the documents),
  user = ``Question: …``; generation stops at the end of the assistant turn (the template's
  end-of-turn token, which the tokenizer or the model's generation config names as EOS);
* base models: ``instruction / documents / Question: … / Answer:``; the answer is the first line.

A direct answer is taken from ``<answer>…</answer>`` when the model writes one, and otherwise from
the first non-empty line of the reply, with an ``Answer:`` / ``The answer is`` lead-in and a final
period removed (:func:`r1searcher.rollout.tags.extract_answer` with ``first_line=True``). They get
``DIRECT_MAX_TOKENS`` new tokens: enough for any short answer, and no time spent on text that would
be cut anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from r1searcher.retrieval.base import Passage, format_documents
from r1searcher.rollout.tags import extract_answer

#: New tokens a direct method may write (a short phrase, on one line).
DIRECT_MAX_TOKENS = 32

NAIVE_INSTRUCTION = (
    "Answer the question based on your own knowledge. "
    "Only give me the answer (a short phrase: a name, a place, a date or yes/no) and do not output any other words."
)
RAG_INSTRUCTION = (
    "Answer the question based on the given documents. "
    "Only give me the answer (a short phrase: a name, a place, a date or yes/no) and do not output any other words.\n"
    "The following are given documents.\n\n"
)


def _instruction(passages: list[Passage] | None, max_words: int | None) -> str:
    if passages is None:
        return NAIVE_INSTRUCTION
    return RAG_INSTRUCTION + format_documents(passages, max_words).rstrip("\n")


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def direct_prompt(question: str, passages: list[Passage] | None = None, max_words: int | None = None,
                  tokenizer=None) -> str:
    """A prompt that asks for a short answer with no searching, optionally with documents.

    With a chat-template ``tokenizer`` the instruction is the system turn and the question the user
    turn (ending in the assistant's turn); otherwise (a base model, or no tokenizer) a plain
    ``Question: … / Answer:`` completion prompt.
    """
    instruction = _instruction(passages, max_words)
    if tokenizer is not None and has_chat_template(tokenizer):
        messages = [{"role": "system", "content": instruction}, {"role": "user", "content": f"Question: {question}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{instruction}\n\nQuestion: {question}\nAnswer:"


class Question(Protocol):
    """What a method reads of a QA record (``r1searcher.data.qa.QARecord``)."""

    id: str
    question: str
    meta: dict


class PromptSettings(Protocol):
    """What a method reads of the evaluation settings (``r1searcher.eval.evaluate.EvalSpec``)."""

    top_k: int
    max_doc_words: int | None
    gold_passages: dict[str, Passage]


@dataclass(frozen=True)
class Method:
    """A searching method (rl, iterative): the engine's training prompt, its search budget, the
    tagged answer the rollout extracted (``""`` when none was written)."""

    name: str
    config_overrides: tuple[str, ...] = ()  # config defaults the method needs (before the user's own)
    needs_gold: bool = False  # reads gold passages (``--corpus``)

    @property
    def searches(self) -> bool:
        return True

    def prompts(self, records: Sequence[Question], spec: PromptSettings, retriever, tokenizer=None) -> list[str] | None:
        """One prompt per record, or None for the engine's own training prompt."""
        return None

    def rollout_args(self, tokenizer=None) -> dict[str, Any]:
        """Keyword arguments for ``RolloutEngine.rollout`` beyond the questions, ``n=1``, ``greedy``."""
        return {}

    def answer(self, traj) -> str:
        """The prediction of one trajectory."""
        return traj.answer if traj.answer is not None else ""


@dataclass(frozen=True)
class DirectMethod(Method):
    """A direct method: its own short-answer prompt, no search, ``DIRECT_MAX_TOKENS`` new tokens
    (a base model stops at the first line), the answer read from the reply's first line."""

    @property
    def searches(self) -> bool:
        return False

    def passages(self, records: Sequence[Question], spec: PromptSettings, retriever) -> list[list[Passage] | None]:
        """The documents each prompt shows (None: no document section)."""
        return [None] * len(records)

    def prompts(self, records: Sequence[Question], spec: PromptSettings, retriever, tokenizer=None) -> list[str]:
        docs = self.passages(records, spec, retriever)
        return [direct_prompt(r.question, d, None if d is None else spec.max_doc_words, tokenizer)
                for r, d in zip(records, docs)]

    def rollout_args(self, tokenizer=None) -> dict[str, Any]:
        return {"max_searches": 0, "max_new_tokens": DIRECT_MAX_TOKENS, "end_at_answer": False,
                "stop_at_newline": not has_chat_template(tokenizer)}

    def answer(self, traj) -> str:
        return extract_answer(traj.text, first_line=True)


@dataclass(frozen=True)
class RagMethod(DirectMethod):
    """rag: one retrieval of the question's top-k passages, shown in the prompt."""

    def passages(self, records: Sequence[Question], spec: PromptSettings, retriever) -> list[list[Passage] | None]:
        return list(retriever.search([r.question for r in records], spec.top_k))


def gold_ids(rec: Question) -> list[str]:
    """The record's gold supporting passage ids (``supporting_ids``, else ``gold_passage_ids``)."""
    for key in ("supporting_ids", "gold_passage_ids"):
        ids = rec.meta.get(key)
        if ids:
            return [str(i) for i in ids]
    return []


@dataclass(frozen=True)
class OracleMethod(DirectMethod):
    """oracle: the record's gold supporting passages (from ``spec.gold_passages``) in the prompt."""

    def passages(self, records: Sequence[Question], spec: PromptSettings, retriever) -> list[list[Passage] | None]:
        out: list[list[Passage] | None] = []
        for r in records:
            ids = gold_ids(r)
            if not ids:
                raise ValueError(f"oracle needs gold passage ids (supporting_ids / gold_passage_ids); record {r.id} has none")
            missing = [i for i in ids if i not in spec.gold_passages]
            if missing:
                raise ValueError(f"oracle: gold passages {missing[:3]} of record {r.id} are not in the corpus given")
            out.append([spec.gold_passages[i] for i in ids])
        return out


#: Every evaluation method by name, in the order the CLI lists them.
METHODS: Mapping[str, Method] = {
    "rl": Method("rl"),
    "iterative": Method("iterative", config_overrides=("rollout.few_shot=true",)),
    "naive": DirectMethod("naive"),
    "rag": RagMethod("rag"),
    "oracle": OracleMethod("oracle", needs_gold=True),
}


def get_method(name: str) -> Method:
    """The method called ``name``; an unknown name is a one-line ValueError."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: one of {', '.join(METHODS)}")
    return METHODS[name]
