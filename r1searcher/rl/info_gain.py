"""How likely the gold answer is after a trajectory's searches: ``reward.info_gain`` (beyond the paper).

IGPO (arXiv 2510.14967) rewards each search turn by how much it raises the policy's probability of
the gold answer. Summed over a trajectory's turns those gains telescope to

    P(gold | prompt + everything the trajectory wrote and read before its answer) − P(gold | prompt)

and the second term is the same for every sample of a question, so it cancels in a group's
advantages. This module computes the first term, once per trajectory, with the policy itself (no
grad): the context is the completion up to its ``<answer>`` tag (closed with ``</think>`` and the
tag where the trajectory never wrote them), followed by each gold alias; the score is the
probability of the alias's tokens, ``exp(Σ log p)`` at temperature 1, the best over aliases.

Why (BENCHMARKS.md, "Where the advantage goes", last paragraph): on a 2-hop question a policy that answers after one
search and one that searches twice and misreads both score F1 0, so the group is uniform and
teaches nothing; the second search that brought the answer's passage makes the answer likely,
and this term tells the two apart. Unlike ``reward.found_bonus`` (the answer's words anywhere in
the documents) it asks the reader, so a distractor passage that merely mentions the gold city
counts for little.
"""

from __future__ import annotations

import torch

from r1searcher.rl.logprobs import batched_logprobs
from r1searcher.rollout.trajectory import Trajectory

#: aliases scored per question (the first ones; a question with many aliases costs no more)
MAX_ALIASES = 3


def answer_context(text: str) -> str:
    """The completion up to and including its answer's opening tag; a completion without one gets
    ``</think>`` (where it has none after its last document block) and the tag appended."""
    cut = text.find("<answer>")
    if cut >= 0:
        return text[: cut + len("<answer>")]
    body = text.rstrip()
    if "</think>" not in body.rsplit("<|end_of_documents|>", 1)[-1]:
        body += " </think>"
    return body + "\n\n<answer>"


def scoring_rows(trajs: list[Trajectory], answers: list[list[str]], tokenizer) -> tuple[list[Trajectory], list[int]]:
    """One pseudo-trajectory per (trajectory, alias): the trajectory's prompt, then its answer
    context and `` alias`` as the response, with only the alias's tokens selected (``loss_mask``).
    Also the index of the trajectory each row scores."""
    rows, owner = [], []
    for i, (tr, gold) in enumerate(zip(trajs, answers)):
        ctx = tokenizer(answer_context(tr.text), add_special_tokens=False).input_ids
        for alias in [a.strip() for a in gold if a.strip()][:MAX_ALIASES]:
            ans = tokenizer(" " + alias, add_special_tokens=False).input_ids
            ids = list(ctx) + list(ans)
            rows.append(Trajectory(prompt_ids=list(tr.prompt_ids), response_ids=ids,
                                   loss_mask=[0] * len(ctx) + [1] * len(ans), logprobs=[], group=tr.group))
            owner.append(i)
    return rows, owner


@torch.no_grad()
def gold_probability(model, tokenizer, trajs: list[Trajectory], answers: list[list[str]], pad_id: int,
                     micro_batch: int) -> torch.Tensor:
    """``[B]`` float: P(best gold alias | the trajectory's context before its answer) under ``model``
    (temperature 1), 0 for a trajectory whose question has no usable alias.

    Rows of one micro-batch share their prompt (``rl/logprobs.decoder_hidden``), so a GRPO group
    costs one prompt encoding and its contexts, like the training forward without its backward."""
    rows, owner = scoring_rows(trajs, answers, tokenizer)
    out = torch.zeros(len(trajs))
    if not rows:
        return out
    T = max(len(r.response_ids) for r in rows)
    lp = batched_logprobs(model, rows, pad_id, 1.0, micro_batch, T)  # [N, T], 0 off the alias tokens
    prob = lp.sum(1).exp()  # [N]
    for p, i in zip(prob.tolist(), owner):
        out[i] = max(float(out[i]), p)
    return out
