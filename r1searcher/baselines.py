"""Evaluation methods: how each builds its prompts and whether it may search.

=========  ===========================================================  ==========
method     prompt                                                       searches
=========  ===========================================================  ==========
rl         the training prompt (a trained policy)                       up to the limit
iterative  the training prompt + one worked example (untrained model)   up to the limit
naive      answer directly, no documents                                none
rag        the question's top-k passages in the prompt, then answer     none (one retrieval up front)
oracle     the gold supporting passages in the prompt (upper bound)     none
=========  ===========================================================  ==========

Every method runs through the same rollout engine, so decoding, limits and answer extraction are
identical; only the prompt and the search budget differ.
"""

from __future__ import annotations

from r1searcher.retrieval.base import Passage, format_documents

METHODS = ("rl", "iterative", "naive", "rag", "oracle")
SEARCHING = ("rl", "iterative")

_ANSWER_INSTRUCTION = (
    "The User asks a question, and the Assistant answers it.\n"
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with the final answer.\n"
    'The output format of reasoning process and final answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "<think> reasoning process here </think>\n\n<answer> final answer here </answer>".\n'
    "The final answer is a short phrase (a name, a place, a date or yes/no), not a sentence."
)


def direct_prompt(question: str, passages: list[Passage] | None = None, max_words: int | None = None) -> str:
    """A base-style prompt that asks for an answer with no searching, optionally with documents."""
    docs = ""
    if passages is not None:
        docs = "\n\nUse these documents:\n" + format_documents(passages, max_words)
    return f"{_ANSWER_INSTRUCTION}{docs}\n\nUser:{question}\nAssistant: <think>"


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS)}")
    return method
