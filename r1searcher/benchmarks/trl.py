"""``r1searcher bench trl``: seconds per TRL ``GRPOTrainer`` step with our ``rollout_func`` against
TRL's own multi-turn tool loop (``tools=``), same model, questions, retriever, group size and token
limits, measured in one run (needs ``pip install trl==1.16.0``).

Variants (each a fresh trainer from the same weights, ``--steps`` steps, the same questions):

``ours``        ``R1RolloutFunc``: our engine, each distinct prompt prefilled once and its KV cache
                expanded × G, KV kept across turns, one batched BM25 call per round.
``ours-rows``   the same, one sample per prompt row (no grouping of TRL's duplicated prompts).
``trl-tools``   TRL 1.16's ``tools=[search]`` loop: ``generate`` until EOS, parse tool calls, call
                the tool once per call, then re-``generate`` from prompt + completion + tool result
                (re-prefilled: no KV across turns), ``max_tool_calling_iterations`` = searches.

SmolLM2's own chat template cannot render tool calls (TRL refuses it), so ``trl-tools`` gives the
same tokenizer TRL's ChatML template for Qwen2.5 (SmolLM2 uses the same ``<|im_start|>``/``<|im_end|>``
tokens) and TRL's Qwen response parser (``<tool_call>{json}</tool_call>``). The 135M model emits
neither our query tags nor tool calls by itself, so every row of every variant is steered into the
same shape (``--searches`` searches of the same query, then the same answer): ours with
``ScriptedSteer``, TRL's through a logits processor added to ``model.generate``; in both the model
computes every step and the forced token is drawn through the normal sampling path. The search tool
returns the same top-k BM25 passages in the same document-block format.

Both sides generate from the same prompt text (TRL's rendering of the system message, the tool
schema and the question; ``R1RolloutFunc(prompt_text=…)``), and our steered thought is padded to the
same number of policy tokens as TRL's tool-call turns.

Reported per variant: median step seconds over the steps after the first, as wall time (TRL's own
``step_time``) and as this process's CPU time (robust when other processes share the cores), the
generation part (TRL's ``_generate``: our rollout or its tool loop), and the tokens per completion
(prompt, policy and inserted), so the work compared is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

HELP = "TRL GRPOTrainer step: our rollout_func vs TRL's own tool loop (same model, questions, retriever, limits)"
THOUGHT = "Let me search."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=2, help="trainer steps per variant (the first is warm-up when > 1)")
    p.add_argument("--questions", type=int, default=2, help="distinct questions per step")
    p.add_argument("--group", type=int, default=4, help="completions per question (num_generations)")
    p.add_argument("--searches", type=int, default=1, help="forced searches per completion")
    p.add_argument("--max-completion", type=int, default=256, help="max_completion_length (policy + inserted tokens)")
    p.add_argument("--top-k", type=int, default=2, help="passages per search")
    p.add_argument("--doc-words", type=int, default=40, help="words per passage")
    p.add_argument("--model", default="smollm2", help="embedded model name or HF folder")
    p.add_argument("--variants", default="ours,ours-rows,trl-tools", help="comma-separated subset")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _world(n_questions: int):
    from r1searcher.data.synthetic import generate_world
    from r1searcher.retrieval.base import Passage
    from r1searcher.retrieval.bm25 import BM25Index

    world = generate_world(entities=40, seed=0)
    index = BM25Index.build([Passage(p["id"], p["title"], p["text"]) for p in world.passages])
    return world.train[:n_questions], index


def _query(question) -> str:
    return " ".join(question.question.rstrip("?").split()[-3:])


class _ForceTurns:
    """Logits processor: row b's k-th token of assistant turn t is ``scripts[t][k]`` (then EOS)."""

    def __init__(self, scripts: list[list[int]], im_start: int, header: int, eos: int, prompt_turns: int):
        self.scripts, self.im_start, self.header, self.eos, self.base = scripts, im_start, header, eos, prompt_turns

    def __call__(self, input_ids, scores):
        import torch

        out = torch.full_like(scores, float("-inf"))
        for b, row in enumerate(input_ids.tolist()):
            starts = [i for i, t in enumerate(row) if t == self.im_start]
            turn = (len(starts) - self.base) // 2  # each tool round adds a tool turn and an assistant header
            k = len(row) - (starts[-1] + self.header)
            script = self.scripts[min(turn, len(self.scripts) - 1)]
            out[b, script[k] if 0 <= k < len(script) else self.eos] = 0.0
        return out


def _trl_tools_setup(tok, questions, index, args):
    """Tokenizer with a tool-calling ChatML template, the search tool, the steer, the dataset."""
    import copy

    from datasets import Dataset
    from trl.chat_template_utils import add_response_schema, qwen2_5_chat_template

    from r1searcher.rollout.prompts import CHAT_SYSTEM
    from r1searcher.retrieval.base import format_documents

    tok = copy.deepcopy(tok)
    tok.chat_template = qwen2_5_chat_template
    add_response_schema(tok)

    def search(query: str) -> str:
        """Search the corpus.

        Args:
            query: keywords of one fact to look up
        """
        return format_documents(index.search([query], args.top_k)[0], args.doc_words)

    q = questions[0]
    call = json.dumps({"name": "search", "arguments": {"query": _query(q)}})
    turns = [f"{THOUGHT}\n<tool_call>\n{call}\n</tool_call>"] * args.searches
    turns.append(f"<think> {THOUGHT} </think>\n\n<answer> {q.answers[0]} </answer>")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    scripts = [tok.encode(t, add_special_tokens=False) + [eos] for t in turns]
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    header = len(tok.encode("<|im_start|>assistant\n", add_special_tokens=False))
    msgs = [[{"role": "system", "content": CHAT_SYSTEM}, {"role": "user", "content": x.question}] for x in questions]
    prompt_turns = len(tok.apply_chat_template(msgs[0], tools=[search], add_generation_prompt=True, tokenize=False)
                       .split("<|im_start|>")) - 1
    ds = Dataset.from_list([{"prompt": m, "answers": x.answers} for m, x in zip(msgs, questions)])

    def render(prompt) -> str:  # the exact prompt TRL's tool loop generates from (tool schema included)
        return tok.apply_chat_template(prompt, tools=[search], add_generation_prompt=True, tokenize=False)

    setup = {"render": render, "policy_tokens": sum(map(len, scripts))}
    return tok, search, _ForceTurns(scripts, im_start, header, eos, prompt_turns), ds, setup


def _ours_rollout_func(name: str, tok, questions, index, args, setup: dict):
    """Our rollout function for TRL, steered through the same scripted search as TRL's tool loop:
    the same prompt text (``setup["render"]``), and a thought padded to as many policy tokens."""
    from r1searcher.config import RetrievalConfig, RolloutConfig
    from r1searcher.integrations.trl import R1RolloutFunc
    from r1searcher.rollout.steer import ScriptedSteer, script_tokens, search_script

    q = questions[0]
    for m in range(64):
        thought = THOUGHT + " Hmm." * m
        script = script_tokens(tok, search_script(_query(q).split(), q.answers[0], thought, args.searches))
        if len(script) >= setup["policy_tokens"]:
            break
    return R1RolloutFunc(
        index,
        RolloutConfig(prompt="chat", few_shot=False, max_searches=args.searches, batch_size=64,
                      max_new_tokens_per_turn=args.max_completion),
        RetrievalConfig(top_k=args.top_k, max_doc_words=args.doc_words),
        group_prompts=name == "ours", steer=ScriptedSteer(lambda row: script), prompt_text=setup["render"],
    )


def _run_variant(name: str, args, model_dir: Path, tok, questions, index, out_dir: Path) -> dict:
    import torch
    from transformers import LogitsProcessorList
    from trl import GRPOConfig, GRPOTrainer

    from r1searcher.integrations.trl import stage1_reward

    cfg = GRPOConfig(
        output_dir=str(out_dir / name), use_cpu=True, per_device_train_batch_size=args.questions * args.group,
        num_generations=args.group, max_completion_length=args.max_completion, max_steps=args.steps,
        learning_rate=1e-6, logging_steps=1, report_to="none", save_strategy="no", seed=0, bf16=False,
        gradient_checkpointing=False, max_tool_calling_iterations=args.searches, disable_tqdm=True,
    )
    kw: dict = {}
    ttok, search, force, ds, setup = _trl_tools_setup(tok, questions, index, args)
    if name.startswith("ours"):
        rf = _ours_rollout_func(name, tok, questions, index, args, setup)
        kw.update(rollout_func=rf, train_dataset=ds, processing_class=tok)
    else:
        kw.update(tools=[search], train_dataset=ds, processing_class=ttok)
    trainer = GRPOTrainer(model=str(model_dir), args=cfg, reward_funcs=[stage1_reward], **kw)
    if name == "trl-tools":
        gen = trainer.model.generate
        trainer.model.generate = lambda *a, **k: gen(*a, logits_processor=LogitsProcessorList([force]), **k)
    gen_s: list[float] = []
    gen_cpu: list[float] = []
    step_cpu: list[float] = []
    shapes: list[dict] = []
    inner, inner_step = trainer._generate, trainer.training_step

    def timed_step(*a, **k):  # CPU seconds of this process: robust to other processes on the core
        c0 = time.process_time()
        out = inner_step(*a, **k)
        step_cpu.append(time.process_time() - c0)
        return out

    def timed_generate(prompts):
        t0, c0 = time.perf_counter(), time.process_time()
        out = inner(prompts)
        gen_s.append(time.perf_counter() - t0)
        gen_cpu.append(time.process_time() - c0)
        prompt_ids, completion_ids, tool_mask = out[0], out[1], out[2]
        masks = tool_mask or [[1] * len(c) for c in completion_ids]
        n = len(completion_ids)
        shapes.append({
            "completions": n,
            "prompt_tokens": sum(map(len, prompt_ids)) / n,
            "policy_tokens": sum(map(sum, masks)) / n,
            "inserted_tokens": sum(len(m) - sum(m) for m in masks) / n,
        })
        return out

    trainer._generate = timed_generate
    trainer.training_step = timed_step
    torch.manual_seed(0)
    trainer.train()
    steps = [float(h["step_time"]) for h in trainer.state.log_history if "step_time" in h]
    timed = steps[1:] or steps
    return {
        "variant": name,
        "step_s": [round(s, 2) for s in steps],
        "median_step_s": statistics.median(timed),
        "median_generate_s": statistics.median(gen_s[1:] or gen_s),
        "step_cpu_s": [round(s, 2) for s in step_cpu],
        "median_step_cpu_s": statistics.median(step_cpu[1:] or step_cpu),
        "median_generate_cpu_s": statistics.median(gen_cpu[1:] or gen_cpu),
        "shape": shapes[-1],
        "reward_mean": [h.get("reward") for h in trainer.state.log_history if "reward" in h],
    }


def run(args) -> int:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch

    from r1searcher.benchmarks import machine_info
    from r1searcher.models.loading import load_tokenizer, resolve_model_path

    model_dir = resolve_model_path(args.model)
    tok = load_tokenizer(model_dir)
    questions, index = _world(args.questions)
    load = os.getloadavg()
    res: dict = {"machine": machine_info(), "loadavg_start": [round(x, 2) for x in load],
                 "settings": {k: getattr(args, k) for k in ("steps", "questions", "group", "searches", "max_completion",
                                                          "top_k", "doc_words", "model")},
                 "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            torch.manual_seed(0)
            res["variants"][name] = _run_variant(name, args, model_dir, tok, questions, index, Path(tmp))
            if not args.json:
                v = res["variants"][name]
                print(f"{name:10s} step {v['median_step_s']:.2f} s wall (all: {v['step_s']}), "
                      f"{v['median_step_cpu_s']:.2f} s CPU (all: {v['step_cpu_s']});  generate "
                      f"{v['median_generate_s']:.2f} s wall, {v['median_generate_cpu_s']:.2f} s CPU;"
                      f"  per completion: {json.dumps(v['shape'])}", flush=True)
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    v = res["variants"]
    for other, label in (("trl-tools", "trl_tools_over_ours"), ("ours-rows", "rows_over_grouped")):
        if "ours" in v and other in v:
            for part in ("step", "generate"):
                for unit in ("s", "cpu_s"):
                    key = f"median_{part}_{unit}"
                    res[f"{label}_{part}_{'cpu' if unit == 'cpu_s' else 'wall'}"] = v[other][key] / v["ours"][key]
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for k, x in res.items():
            if k.startswith(("trl_tools_over", "rows_over")):
                print(f"{k}: {x:.2f}×")
        print("machine:", json.dumps(res["machine"]), "load average start/end:", res["loadavg_start"], res["loadavg_end"])
    return 0
