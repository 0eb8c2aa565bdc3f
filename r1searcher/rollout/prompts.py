"""The paper's prompts: the base-model template and the chat template, optional worked examples.

Both end with ``<think>`` so the policy writes its reasoning first.
"""

from __future__ import annotations

from r1searcher.rollout.tags import DOCS_CLOSE, DOCS_OPEN, QUERY_CLOSE, QUERY_OPEN

BASE_INSTRUCTION = (
    "The User asks a question, and the Assistant solves it.\n"
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with the final answer.\n"
    'The output format of reasoning process and final answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "<think> reasoning process here </think>\n\n<answer> final answer here </answer>".\n'
    'During the thinking process, **the Assistant can perform searching** for uncertain knowledge if necessary with the format of "<|begin_of_query|> search query (only list keywords, such as **"keyword_1 keyword_2 ..."**)<|end_of_query|>". **A query must involve only a single triple**.\n'
    'Then, the search system will provide the Assistant with the retrieval information with the format of "<|begin_of_documents|> ...search results... <|end_of_documents|>".'
)

CHAT_SYSTEM = (
    "You are a helpful assistant.\n"
    "Given a question, you should answer it by first thinking about the reasoning process in the mind and then providing the final answer.\n"
    'The output format of reasoning process and final answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "<think> reasoning process here </think>\n\n<answer> final answer here </answer>".\n'
    'During the thinking process, **you can perform searching for uncertain knowledge** if necessary with the format of "<|begin_of_query|> search query (only list keywords, such as **"keyword_1 keyword_2 ..."**)<|end_of_query|>". **A query must involve only a single triple**.\n'
    'Then, the search system will provide you with the retrieval information with the format of "<|begin_of_documents|> ...search results... <|end_of_documents|>".'
)

#: Worked trajectories, in exactly the format the rollout produces (each search, its inserted
#: document block, then the answer). Fictional on purpose: they teach the form, not facts. Each
#: document states one fact, as a retrieved passage does: an earlier example's birthplace passage
#: also named the town's country ("born in Kelvara, a town in Norland"), and Qwen2.5-0.5B copied
#: that shape, answering "born in <city>, which is in <invented place>" and stopping after one search
#: on the questions that ask for a country (0 F1 on them; BENCHMARKS.md, "Worked examples whose
#: documents state one fact").
#:
#: A 2-hop chain through a person: who founded it, then where that person was born (a city).
EXAMPLE_QUESTION = "Where was the founder of Veltrix Labs born?"
EXAMPLE_COMPLETION = (
    " I need to find who founded Veltrix Labs, then where that person was born. "
    f"{QUERY_OPEN} Veltrix Labs founder {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Veltrix Labs: Veltrix Labs is a robotics company founded by Maren Oduya in 2004.\n{DOCS_CLOSE}\n\n"
    "Veltrix Labs was founded by Maren Oduya. Now I need where Maren Oduya was born. "
    f"{QUERY_OPEN} Maren Oduya birthplace {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Maren Oduya: Maren Oduya is an engineer who was born in Kelvara in 1961.\n{DOCS_CLOSE}\n\n"
    "Maren Oduya was born in Kelvara. </think>\n\n<answer> Kelvara </answer>"
)

#: A 2-hop chain through a place: the documents give a city, the question asks for its country, so
#: the policy searches again instead of answering the city.
PLACE_QUESTION = "In which country was Tomas Ferrow born?"
PLACE_COMPLETION = (
    " I need to find where Tomas Ferrow was born, then which country that place is in. "
    f"{QUERY_OPEN} Tomas Ferrow birthplace {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Tomas Ferrow: Tomas Ferrow is a painter who was born in Ostrel in 1932.\n{DOCS_CLOSE}\n\n"
    "Tomas Ferrow was born in Ostrel, but the question asks for a country. Now I need the country of Ostrel. "
    f"{QUERY_OPEN} Ostrel country {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Ostrel: Ostrel is a port city in Vandmark.\n{DOCS_CLOSE}\n\n"
    "Ostrel is in Vandmark. </think>\n\n<answer> Vandmark </answer>"
)

#: A worked 1-hop trajectory (one search, then the answer): with ``rollout.shots=3`` it comes first,
#: so the policy sees that it may stop searching once the documents hold the answer.
ONE_HOP_QUESTION = "Who founded Veltrix Labs?"
ONE_HOP_COMPLETION = (
    " I need to find who founded Veltrix Labs. "
    f"{QUERY_OPEN} Veltrix Labs founder {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Veltrix Labs: Veltrix Labs is a robotics company founded by Maren Oduya in 2004.\n{DOCS_CLOSE}\n\n"
    "The documents say Veltrix Labs was founded by Maren Oduya. </think>\n\n<answer> Maren Oduya </answer>"
)

#: ``rollout.shots`` → the examples, in prompt order. The default, 2, measured on 48 training
#: questions of two demo worlds (untrained, greedy; F1 on country 2-hop / other 2-hop / 1-hop): the
#: old single example 0 / 19 / 25 and 0 / 31 / 31; these two 31 / 31 / 19 and 38 / 44 / 12.5; with
#: the 1-hop example first (3) 38 / 0 / 38 and 31 / 19 / 19.
SHOTS = {1: ("person",), 2: ("person", "place"), 3: ("one_hop", "person", "place")}
_EXAMPLES = {"person": (EXAMPLE_QUESTION, EXAMPLE_COMPLETION), "place": (PLACE_QUESTION, PLACE_COMPLETION),
             "one_hop": (ONE_HOP_QUESTION, ONE_HOP_COMPLETION)}


def examples(shots: int = 2) -> list[tuple[str, str]]:
    """The worked examples (question, completion after ``<think>``), in prompt order (``SHOTS``)."""
    if shots not in SHOTS:
        raise ValueError(f"rollout.shots must be one of {', '.join(map(str, SHOTS))}, got {shots}")
    return [_EXAMPLES[k] for k in SHOTS[shots]]


def _example_block(shots: int = 2) -> str:
    ex = examples(shots)
    if len(ex) == 1:
        return f"\n\nExample:\nUser:{ex[0][0]}\nAssistant: <think>{ex[0][1]}"
    return "".join(f"\n\nExample {i}:\nUser:{q}\nAssistant: <think>{c}" for i, (q, c) in enumerate(ex, 1))


def base_prompt(question: str, few_shot: bool = False, shots: int = 2) -> str:
    """The paper's base-model prompt, ending ``\\nAssistant: <think>``."""
    example = _example_block(shots) if few_shot else ""
    return f"{BASE_INSTRUCTION}{example}\n\nUser:{question}\nAssistant: <think>"


def chat_messages(question: str, few_shot: bool = False, shots: int = 2) -> list[dict]:
    msgs = [{"role": "system", "content": CHAT_SYSTEM}]
    if few_shot:
        for q, c in examples(shots):
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": "<think>" + c}]
    msgs.append({"role": "user", "content": question})
    return msgs


def chat_prompt(question: str, tokenizer, few_shot: bool = False, shots: int = 2) -> str:
    """The chat template's assistant turn followed by ``<think>``."""
    text = tokenizer.apply_chat_template(chat_messages(question, few_shot, shots), tokenize=False, add_generation_prompt=True)
    return text + "<think>"


def build_prompt(question: str, style: str = "base", tokenizer=None, few_shot: bool = False, shots: int = 2) -> str:
    if style == "base":
        return base_prompt(question, few_shot, shots)
    if style == "chat":
        if tokenizer is None:
            raise ValueError("the chat prompt needs a tokenizer with a chat template")
        return chat_prompt(question, tokenizer, few_shot, shots)
    raise ValueError(f"unknown prompt style {style!r}: use 'base' or 'chat'")
