"""``r1searcher bench rollout``: the multi-turn engine against plain decoding, on the embedded model.

For each batch size B (``n`` samples per question, B/n questions of the synthetic world, BM25 over
its passages), measured in one process:

(a) ``RolloutEngine.rollout`` with every row forced (``ScriptedSteer``) to write the same
    well-formed trajectory shape: ``--searches`` queries, then an answer. Forcing only picks the
    token; the model runs every decode step and the sampler draws every token, so the cost is that
    of real sampling, and every run has the same token counts.
(b) HF ``generate`` (sampling, same T/top-p) on the same prompts at batch B, exactly as many new
    tokens per row as (a)'s mean policy tokens per row (``min_new_tokens`` = ``max_new_tokens``).
(c) One batched forward pass over the same inserted document tokens (each row's blocks, joined),
    appended to a cache of its prompt.
(r) The re-encode baseline: the same engine loop, but each document insertion re-encodes the row's
    whole history from scratch (what a loop that passes text or full ids to ``generate`` does).

Efficiency = ((b) + (c)) / (a) (1.0: multi-turn costs no more than plain decoding plus encoding
the documents once), and the same for (r). Prefill is reported apart: the engine encodes the
shared instruction once per batch; (b) encodes every prompt in full. ``--no-generate-prefill``
skips measuring (b)'s prefill alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

HELP = "multi-turn rollout engine vs plain generate (+ one document forward) vs re-encoding every turn"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", default="8,32", help="comma-separated batch sizes (sequences decoded together)")
    p.add_argument("--n", type=int, default=4, help="samples per question (prompt encoded once per group)")
    p.add_argument("--searches", type=int, default=2, help="forced searches per trajectory")
    p.add_argument("--thought-words", type=int, default=8, help="words of forced reasoning before each query")
    p.add_argument("-k", "--top-k", type=int, default=2, help="passages per search")
    p.add_argument("--max-doc-words", type=int, default=30)
    p.add_argument("--model", default="smollm2", help="embedded model name or HF folder")
    p.add_argument("--few-shot", action="store_true", help="use the worked examples (rollout.shots=2) (longer prefill)")
    p.add_argument("--skip-reencode", action="store_true", help="do not run the re-encode baseline")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def gib(self) -> float:
        return round(self.peak / 2**30, 2)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class TimedGenerator:
    """Delegates to a generator and adds up the seconds spent in each of its methods."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds: dict[str, float] = {}

    def _timed(self, name, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        return out

    def prefill(self, prompts, repeats=1):
        return self._timed("prefill", self.inner.prefill, prompts, repeats)

    def sample(self, state, params, generator=None, forced=None):
        return self._timed("sample", self.inner.sample, state, params, generator, forced)

    def feed(self, state, chunks):
        import torch

        return self._timed("decode" if isinstance(chunks, torch.Tensor) else "insert", self.inner.feed, state, chunks)

    def select(self, state, rows):
        return self._timed("select", self.inner.select, state, rows)

    def concat(self, states):
        return self._timed("concat", self.inner.concat, states)


def _reencode_generator_cls():
    from r1searcher.rollout.generator import HFGenerator

    class ReencodeGenerator(HFGenerator):
        """Baseline: on every document insertion, drop the cache and encode each row's whole history
        (prompt, every turn, every block) from scratch. Decoding within a turn keeps its cache."""

        def prefill(self, prompts, repeats=1):
            state = super().prefill(prompts, repeats)
            state.hist = [list(p) for p in prompts for _ in range(repeats)]
            return state

        def feed(self, state, chunks):
            import torch

            hist = getattr(state, "hist", None)
            if hist is None:  # inside prefill
                return super().feed(state, chunks)
            if isinstance(chunks, torch.Tensor):
                super().feed(state, chunks)
                for h, t in zip(hist, chunks.tolist()):
                    h.append(t)
                return None
            full = [h + list(c) for h, c in zip(hist, chunks)]
            fresh = self._empty(len(full))
            super().feed(fresh, full)
            state.cache, state.mask, state.next_pos, state.logits = fresh.cache, fresh.mask, fresh.next_pos, fresh.logits
            state.hist = full
            return None

        def select(self, state, rows):
            new = super().select(state, rows)
            new.hist = [state.hist[r] for r in rows]
            return new

        def concat(self, states):
            states = [s for s in states if s.batch_size > 0]
            new = super().concat(states)
            new.hist = [h for s in states for h in s.hist]
            return new

    return ReencodeGenerator


def _log(msg: str) -> None:
    print(f"[bench rollout {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _setup(args):
    from r1searcher.config import ModelConfig, RetrievalConfig, RolloutConfig
    from r1searcher.data.synthetic import generate_world
    from r1searcher.models.loading import load_policy
    from r1searcher.retrieval.base import Passage
    from r1searcher.retrieval.bm25 import BM25Index

    model, tok = load_policy(ModelConfig(name=args.model))
    world = generate_world(200, seed=0)
    index = BM25Index.build([Passage(p["id"], p["title"], p["text"]) for p in world.passages])
    rcfg = RetrievalConfig(top_k=args.top_k, max_doc_words=args.max_doc_words)
    return model, tok, index, world, rcfg, RolloutConfig


def _scripts(tok, questions, args):
    from r1searcher.rollout.steer import script_tokens, search_script

    thought = " ".join(["I", "should", "look", "this", "up", "to", "be", "sure", "of", "it"] * 4)
    thought = " ".join(thought.split()[: args.thought_words])
    scripts = []
    for q in questions:
        words = [w.strip("?,.\"") for w in q.split()][-4:]
        scripts.append(script_tokens(tok, search_script(words, "unknown", thought, args.searches)))
    return scripts


def _generate_baseline(model, tok, prompts, n, new_tokens, cfg) -> tuple[float, float]:
    """(seconds for generate with new_tokens, seconds for generate with 1 new token) at batch len(prompts)*n."""
    import torch

    rows = [p for p in prompts for _ in range(n)]
    L = max(len(p) for p in rows)
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (L - len(p)) + p for p in rows])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in rows])
    kw = dict(attention_mask=mask, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0, pad_token_id=pad)
    with torch.inference_mode():
        torch.manual_seed(0)
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        full = time.perf_counter() - t0
        assert out.shape[1] - L == new_tokens, "generate stopped early"
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, **kw)
        prefill = time.perf_counter() - t0
    return full, prefill


def _docs_forward(model, tok, prompts, n, trajs) -> float:
    """One forward over every row's inserted tokens (joined), appended to its prompt's cache."""
    from r1searcher.rollout.generator import HFGenerator

    gen = HFGenerator(model, pad_token_id=tok.pad_token_id)
    state = gen.prefill(prompts, repeats=n)
    chunks = [[t for t, m in zip(tr.response_ids, tr.loss_mask) if m == 0] for tr in trajs]
    t0 = time.perf_counter()
    gen.feed(state, chunks)
    return time.perf_counter() - t0


def run_batch(model, tok, index, world, rcfg, RolloutConfig, batch: int, args) -> dict:
    from r1searcher.rollout.engine import RolloutEngine
    from r1searcher.rollout.generator import HFGenerator
    from r1searcher.rollout.steer import ScriptedSteer

    n = args.n
    n_q = max(1, batch // n)
    questions = [q.question for q in world.train[:n_q]]
    cfg = RolloutConfig(
        n_samples=n, temperature=1.0, top_p=0.95, few_shot=args.few_shot, batch_size=batch,
        max_searches=args.searches + 1, max_new_tokens_per_turn=128, max_response_tokens=4096,
    )
    steer = ScriptedSteer(_scripts(tok, questions, args))
    res: dict = {"batch": n_q * n, "questions": n_q, "n": n}

    timed = TimedGenerator(HFGenerator(model, pad_token_id=tok.pad_token_id))
    engine = RolloutEngine(model, tok, index, cfg, rcfg, generator=timed, steer=steer)
    _log(f"batch {batch}: engine rollout")
    with PeakRSS() as mem:
        trajs = engine.rollout(questions, seed=0)
    a = engine.stats.wall_s
    _log(f"batch {batch}: engine {a:.1f} s; generate baseline")
    st = engine.stats
    assert all(t.stop_reason == "answer" and t.n_searches == args.searches for t in trajs), "forced script did not run"
    policy, inserted = st.policy_tokens, st.inserted_tokens
    prompts = [engine.prompt_ids(q) for q in questions]
    res["engine"] = {
        "wall_s": round(a, 2),
        "policy_tokens": policy,
        "inserted_tokens": inserted,
        "prompt_tokens": st.prompt_tokens,
        "policy_tok_per_s": round(policy / a, 1),
        "rounds": st.rounds,
        "retrieval_calls": st.retrieval_calls,
        "decode_steps": st.decode_steps,
        "breakdown_s": {k: round(v, 2) for k, v in sorted(timed.seconds.items())},
        "peak_rss_gib": mem.gib,
    }
    res["engine"]["breakdown_s"]["retrieval"] = round(st.retrieval_s, 3)

    new_tokens = round(policy / len(trajs))
    with PeakRSS() as mem_b:
        b, b_prefill = _generate_baseline(model, tok, prompts, n, new_tokens, cfg)
    _log(f"batch {batch}: generate {b:.1f} s; document forward")
    c = _docs_forward(model, tok, prompts, n, trajs)
    res["generate"] = {
        "wall_s": round(b, 2), "new_tokens_per_row": new_tokens, "prefill_plus_1_s": round(b_prefill, 2),
        "policy_tok_per_s": round(new_tokens * len(trajs) / b, 1), "peak_rss_gib": mem_b.gib,
    }
    res["docs_forward_s"] = round(c, 2)
    ideal = b + c
    res["efficiency"] = round(ideal / a, 3)
    # Without prompt prefill on either side: multi-turn mechanics alone.
    eng_prefill = timed.seconds.get("prefill", 0.0)
    res["efficiency_excl_prefill"] = round((b - b_prefill + c) / (a - eng_prefill), 3)
    res["prefill_s"] = {"engine_shared_prefix": round(eng_prefill, 2), "generate_plus_1_token": round(b_prefill, 2)}

    if not args.skip_reencode:
        Reencode = _reencode_generator_cls()
        rgen = TimedGenerator(Reencode(model, pad_token_id=tok.pad_token_id))
        rengine = RolloutEngine(model, tok, index, cfg, rcfg, generator=rgen, steer=steer)
        _log(f"batch {batch}: docs {c:.1f} s; re-encode baseline")
        with PeakRSS() as mem_r:
            rtrajs = rengine.rollout(questions, seed=0)
        r = rengine.stats.wall_s
        assert [t.response_ids for t in rtrajs] == [t.response_ids for t in trajs], "baselines diverged"
        res["reencode"] = {
            "wall_s": round(r, 2),
            "policy_tok_per_s": round(rengine.stats.policy_tokens / r, 1),
            "efficiency": round(ideal / r, 3),
            "breakdown_s": {k: round(v, 2) for k, v in sorted(rgen.seconds.items())},
            "peak_rss_gib": mem_r.gib,
        }
    return res


def run(args: argparse.Namespace) -> int:
    import torch

    from r1searcher.benchmarks import machine_info

    batches = [int(b) for b in str(args.batch).split(",") if b.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tok, index, world, rcfg, RolloutConfig = _setup(args)
    out = {
        "machine": machine_info(),
        "load_avg_start": os.getloadavg(),
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("bench", "command")},
        "results": [],
    }
    torch.manual_seed(0)
    for b in batches:
        res = run_batch(model, tok, index, world, rcfg, RolloutConfig, b, args)
        out["results"].append(res)
        if not args.json:
            _print_row(res)
    out["load_avg_end"] = os.getloadavg()
    out["total_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(out, indent=1, default=str))
    else:
        print(f"machine: {json.dumps(out['machine'])}  load avg {out['load_avg_start']} → {out['load_avg_end']}")
        print(f"total {out['total_s']} s")
    return 0


def _print_row(r: dict) -> None:
    e, g = r["engine"], r["generate"]
    line = (
        f"batch {r['batch']:>3} ({r['questions']} q × {r['n']}): engine {e['wall_s']} s "
        f"({e['policy_tok_per_s']} policy tok/s, {e['policy_tokens']} policy + {e['inserted_tokens']} inserted tokens, "
        f"{e['rounds']} rounds, peak {e['peak_rss_gib']} GiB) | generate {g['wall_s']} s + docs fwd {r['docs_forward_s']} s "
        f"→ efficiency {r['efficiency']} (excl. prefill {r['efficiency_excl_prefill']})"
    )
    if "reencode" in r:
        x = r["reencode"]
        line += f" | re-encode {x['wall_s']} s ({x['policy_tok_per_s']} tok/s) → efficiency {x['efficiency']}"
    print(line)
    print(f"    engine breakdown (s): {json.dumps(e['breakdown_s'])}; prefill {json.dumps(r['prefill_s'])}")
    if "reencode" in r:
        print(f"    re-encode breakdown (s): {json.dumps(r['reencode']['breakdown_s'])}")

