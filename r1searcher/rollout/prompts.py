"""The paper's prompts: the base-model template and the chat template, optional one-shot.

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

#: One worked 2-hop trajectory, in exactly the format the rollout produces (two searches, two
#: inserted document blocks, then the answer). Fictional on purpose: it teaches the form, not facts.
EXAMPLE_QUESTION = "In which country was the founder of Veltrix Labs born?"
EXAMPLE_COMPLETION = (
    " I need to find who founded Veltrix Labs, then where that person was born. "
    f"{QUERY_OPEN} Veltrix Labs founder {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Veltrix Labs: Veltrix Labs is a robotics company founded by Maren Oduya in 2004.\n{DOCS_CLOSE}\n\n"
    f"Veltrix Labs was founded by Maren Oduya. Now I need where Maren Oduya was born. "
    f"{QUERY_OPEN} Maren Oduya birthplace {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Maren Oduya: Maren Oduya is an engineer who was born in Kelvara, a town in Norland.\n{DOCS_CLOSE}\n\n"
    "Maren Oduya was born in Kelvara, which is in Norland. </think>\n\n<answer> Norland </answer>"
)

#: A worked 1-hop trajectory (one search, then the answer): with ``rollout.shots=2`` it comes first,
#: so the policy sees that it may stop searching once the documents hold the answer. With the
#: 2-hop example alone, Qwen2.5-0.5B searched twice on every 1-hop question and answered the
#: second hop (see BENCHMARKS.md, "Stage 2 learns from its first step").
ONE_HOP_QUESTION = "Who founded Veltrix Labs?"
ONE_HOP_COMPLETION = (
    " I need to find who founded Veltrix Labs. "
    f"{QUERY_OPEN} Veltrix Labs founder {QUERY_CLOSE}\n\n"
    f"{DOCS_OPEN}\n(1) Veltrix Labs: Veltrix Labs is a robotics company founded by Maren Oduya in 2004.\n{DOCS_CLOSE}\n\n"
    "The documents say Veltrix Labs was founded by Maren Oduya. </think>\n\n<answer> Maren Oduya </answer>"
)


def examples(shots: int = 1) -> list[tuple[str, str]]:
    """The worked examples, in prompt order: 1 → the 2-hop one; 2 → the 1-hop one, then the 2-hop one."""
    if shots not in (1, 2):
        raise ValueError(f"rollout.shots must be 1 or 2, got {shots}")
    two = (EXAMPLE_QUESTION, EXAMPLE_COMPLETION)
    return [two] if shots == 1 else [(ONE_HOP_QUESTION, ONE_HOP_COMPLETION), two]


def _example_block(shots: int = 1) -> str:
    ex = examples(shots)
    if len(ex) == 1:
        return f"\n\nExample:\nUser:{ex[0][0]}\nAssistant: <think>{ex[0][1]}"
    return "".join(f"\n\nExample {i}:\nUser:{q}\nAssistant: <think>{c}" for i, (q, c) in enumerate(ex, 1))


def base_prompt(question: str, few_shot: bool = False, shots: int = 1) -> str:
    """The paper's base-model prompt, ending ``\\nAssistant: <think>``."""
    example = _example_block(shots) if few_shot else ""
    return f"{BASE_INSTRUCTION}{example}\n\nUser:{question}\nAssistant: <think>"


def chat_messages(question: str, few_shot: bool = False, shots: int = 1) -> list[dict]:
    msgs = [{"role": "system", "content": CHAT_SYSTEM}]
    if few_shot:
        for q, c in examples(shots):
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": "<think>" + c}]
    msgs.append({"role": "user", "content": question})
    return msgs


def chat_prompt(question: str, tokenizer, few_shot: bool = False, shots: int = 1) -> str:
    """The chat template's assistant turn followed by ``<think>``."""
    text = tokenizer.apply_chat_template(chat_messages(question, few_shot, shots), tokenize=False, add_generation_prompt=True)
    return text + "<think>"


def build_prompt(question: str, style: str = "base", tokenizer=None, few_shot: bool = False, shots: int = 1) -> str:
    if style == "base":
        return base_prompt(question, few_shot, shots)
    if style == "chat":
        if tokenizer is None:
            raise ValueError("the chat prompt needs a tokenizer with a chat template")
        return chat_prompt(question, tokenizer, few_shot, shots)
    raise ValueError(f"unknown prompt style {style!r}: use 'base' or 'chat'")
