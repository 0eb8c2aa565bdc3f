"""``r1searcher ask [options] QUESTION [key=value ...]``: one rollout, printed as a coloured trace
(or one JSON object). Options go before the question: argparse reads the question and the config
overrides as one run of positional arguments."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

HELP = "answer one question with search-while-reasoning and show the trace"

# ANSI styles per segment kind; tags are shown in the colour of the segment they open or close.
_STYLE = {"think": "", "query": "\033[1;33m", "documents": "\033[36m", "answer": "\033[1;32m"}
_RESET = "\033[0m"
_TAG_KIND = {
    "<|begin_of_query|>": ("query", "query"),
    "<|end_of_query|>": ("query", "think"),
    "<|begin_of_documents|>": ("documents", "documents"),
    "<|end_of_documents|>": ("documents", "think"),
    "<answer>": ("answer", "answer"),
    "</answer>": ("answer", "think"),
    "</think>": ("think", "think"),
}
_TAG_RE = re.compile("(" + "|".join(re.escape(t) for t in _TAG_KIND) + ")")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r1searcher.commands._common import add_retriever_arguments

    p.add_argument("question")
    add_retriever_arguments(p)
    p.add_argument("--model", default="smollm2", help="embedded name, HF folder or a checkpoint's model folder")
    p.add_argument("-k", "--top-k", type=int, default=None, help="passages per search (default: retrieval.top_k)")
    p.add_argument("--sample", action="store_true", help="sample (rollout.temperature/top_p) instead of greedy decoding")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", help="YAML config (rollout limits, prompt style)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the trace")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. rollout.max_searches=4)")


def colorize(text: str, enabled: bool = True) -> str:
    """The completion with think / query / documents / answer segments in their own colours."""
    if not enabled:
        return text
    out, state = [], "think"
    for part in _TAG_RE.split(text):
        if not part:
            continue
        if part in _TAG_KIND:
            style_kind, state_after = _TAG_KIND[part]
            out.append(f"{_STYLE[style_kind]}{part}{_RESET}" if _STYLE[style_kind] else part)
            state = state_after
        else:
            style = _STYLE[state]
            out.append(f"{style}{part}{_RESET}" if style else part)
    return "".join(out)


def _use_color(mode: str) -> bool:
    if mode != "auto":
        return mode == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def run(args: argparse.Namespace) -> int:
    from r1searcher.config import derive, load_config
    from r1searcher.models.loading import load_policy
    from r1searcher.rollout.engine import RolloutEngine

    flags = {"model.name": args.model, **({"retrieval.top_k": args.top_k} if args.top_k is not None else {})}
    cfg = derive(load_config(args.config, list(args.overrides)), flags)  # the flags win
    from r1searcher.commands._common import open_retriever

    retriever = open_retriever(args, cfg)
    model, tok = load_policy(cfg.model)
    engine = RolloutEngine(model, tok, retriever, cfg.rollout, cfg.retrieval)
    t0 = time.perf_counter()
    (traj,) = engine.rollout([args.question], n=1, greedy=not args.sample, seed=args.seed)
    seconds = time.perf_counter() - t0
    if args.json:
        d = {
            "question": traj.question,
            "text": traj.text,
            "answer": traj.answer,
            "queries": traj.queries,
            "n_searches": traj.n_searches,
            "stop_reason": traj.stop_reason,
            "response_ids": traj.response_ids,
            "loss_mask": traj.loss_mask,
            "logprobs": traj.logprobs,
            "prompt_ids": traj.prompt_ids,
            "passages": [[p.to_dict() for p in ps] for ps in traj.passages],
            "n_turns": traj.n_turns,
            "seconds": round(seconds, 3),
        }
        print(json.dumps(d, ensure_ascii=False))
        return 0
    color = _use_color(args.color)
    print(f"Question: {traj.question}\n<think>", end="")
    print(colorize(traj.text, color))
    n_policy = sum(traj.loss_mask)
    answer = traj.answer if traj.answer is not None else "(no answer)"
    summary = (
        f"answer: {answer} | searches: {traj.n_searches} | stop: {traj.stop_reason} | "
        f"tokens: {n_policy} written + {len(traj.response_ids) - n_policy} inserted | {seconds:.1f} s"
    )
    print("\n" + (f"\033[1m{summary}{_RESET}" if color else summary))
    return 0
