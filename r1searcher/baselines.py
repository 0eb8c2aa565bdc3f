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

Every method runs through the same rollout engine, so decoding and limits are identical; only the
prompt and the search budget differ.

The direct methods (naive, rag, oracle) get the prompt a fair reviewer would give them, in the style
of FlashRAG's baselines (the paper's Table 2): a plain short-answer instruction, no tags to learn,

* instruct models (the tokenizer has a chat template): system = the instruction (+ the documents),
  user = ``Question: …``; generation stops at the end of the assistant turn (the template's
  end-of-turn token, see ``rollout.engine.end_of_turn_ids``);
* base models: ``instruction / documents / Question: … / Answer:``; the answer is the first line.

A direct answer is taken from ``<answer>…</answer>`` when the model writes one, and otherwise from
the first non-empty line of the reply, with an ``Answer:`` / ``The answer is`` lead-in and a final
period removed (:func:`direct_answer`). They get ``DIRECT_MAX_TOKENS`` new tokens: enough for any
short answer, and no time spent on text that would be cut anyway.
"""

from __future__ import annotations

import re

from r1searcher.retrieval.base import Passage, format_documents

METHODS = ("rl", "iterative", "naive", "rag", "oracle")
SEARCHING = ("rl", "iterative")
DIRECT = ("naive", "rag", "oracle")

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


_LEAD_IN = re.compile(r"^(?:final answer|the answer is|answer)\s*[:\-]?\s*", re.IGNORECASE)
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>|</s>|<eos>|<end_of_turn>")  # end-of-turn/EOS token texts
_DOC_NUMBER = re.compile(r"^\(\d{1,2}\)\s*")  # a "(2) " copied from the numbered documents


def direct_answer(text: str) -> str:
    """The prediction of a direct method from its reply text.

    ``<answer>x</answer>`` → ``x``; otherwise the first non-empty line, without an ``Answer:`` or
    ``The answer is`` lead-in, a copied document number ``(2)``, surrounding quotes or ``**``, or a final
    period; special-token text (``<|im_end|>``) is dropped first. Empty text → ``""``.
    """
    text = _SPECIAL.sub("", text)
    if "<answer>" in text and "</answer>" in text.split("<answer>", 1)[1]:
        return text.split("<answer>")[-1].split("</answer>")[0].strip()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        line = _DOC_NUMBER.sub("", _LEAD_IN.sub("", line).strip().strip("*").strip())
        if re.search(r"[^A-Z.]\.$", line):  # a sentence's period, not "U.S."
            line = line[:-1]
        line = line.strip().strip('*"“”\'').strip()
        if line:  # "The answer is:" alone on its line: the answer is on the next one
            return line
    return ""


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS)}")
    return method
