"""``r1searcher bench agent``: the agent service's throughput against ``eval`` on the same questions.

One process, one model, one BM25 index over the synthetic world, the same greedy rollout settings:

(e) ``evaluate_dataset`` over the questions in batches of ``--batch`` (the ``eval`` command's path);
(1) the ``serve-agent`` app (uvicorn on loopback, in a thread) answering them one at a time from
    one client;
(c) the same app with ``--clients`` concurrent clients (default 8) sharing the questions.

Printed: questions/s of each, the ratios (1)/(e), (c)/(e) and (c)/(1), the service's mean batch
size, and how many trajectories equal eval's (greedy, but a row's batch-mates change its padding,
so a few may differ). The service adds HTTP, JSON and the batching window; (c)/(e) near 1 means
concurrent clients get eval's batched throughput.
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import tempfile
import threading
import time
from pathlib import Path

from r1searcher.util.files import read_jsonl

HELP = "agent service (serve-agent) questions/s at 1 and N concurrent clients vs `eval` on the same questions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions", type=int, default=24, help="held-out synthetic questions")
    p.add_argument("--batch", type=int, default=8, help="eval's batch size and the service's --max-batch")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients of the second service run")
    p.add_argument("--model", default="smollm2", help="embedded model name or HF folder")
    p.add_argument("--max-response", type=int, default=128, help="rollout.max_response_tokens")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="the service's batching window")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ThreadServer:
    """uvicorn in a daemon thread on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def _serve_run(url: str, model_id: str, questions: list[str], clients: int, max_tokens: int) -> tuple[float, list]:
    """Seconds to answer every question with ``clients`` concurrent clients; the trajectories in order."""
    import httpx

    todo: queue.Queue = queue.Queue()
    for i, q in enumerate(questions):
        todo.put((i, q))
    answers: list = [None] * len(questions)
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=600) as c:
            while True:
                try:
                    i, q = todo.get_nowait()
                except queue.Empty:
                    return
                r = c.post(url + "/v1/chat/completions", json={
                    "model": model_id, "messages": [{"role": "user", "content": q}], "max_tokens": max_tokens})
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                    return
                answers[i] = r.json()["choices"][0]["message"]["r1searcher"]["trajectory"]

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"the service refused a request: {errors[0]}")
    return seconds, answers


def run(args: argparse.Namespace) -> int:
    import torch

    from r1searcher.agent.app import create_app
    from r1searcher.agent.batcher import Batcher
    from r1searcher.agent.engine import ServingEngine
    from r1searcher.agent.schema import ServeLimits
    from r1searcher.benchmarks import machine_info
    from r1searcher.config import load_config
    from r1searcher.data.synthetic import generate_world
    from r1searcher.eval.evaluate import EvalSpec, evaluate_dataset
    from r1searcher.models.loading import load_policy
    from r1searcher.retrieval.bm25 import BM25Index
    from r1searcher.retrieval.corpus import read_passages
    from r1searcher.rollout.engine import RolloutEngine

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    overrides = [f"model.name={args.model}", "rollout.few_shot=true", "rollout.max_searches=4",
                 "rollout.max_new_tokens_per_turn=80", f"rollout.max_response_tokens={args.max_response}",
                 "retrieval.top_k=2", "retrieval.max_doc_words=40", f"rollout.batch_size={args.batch}"]
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        work = Path(tmp)
        world = generate_world(120, 0)
        paths = world.save(work / "world")
        records = world.heldout[: args.questions]
        data = work / "questions.jsonl"
        data.write_text("".join(json.dumps({"id": q.id, "question": q.question, "answers": q.answers}) + "\n"
                                for q in records))
        questions = [q.question for q in records]
        retriever = BM25Index.build(list(read_passages(paths["corpus"])))
        cfg = load_config(None, overrides)
        model, tok = load_policy(cfg.model)
        engine = RolloutEngine(model, tok, retriever, cfg.rollout, cfg.retrieval)
        spec = EvalSpec(method="rl", batch_size=args.batch, top_k=2, max_doc_words=40)

        serve_cfg = load_config(None, overrides + ["rollout.on_retriever_error=stop"])
        serving = ServingEngine(model, tok, retriever, serve_cfg.rollout, serve_cfg.retrieval, max_rows=args.batch)
        batcher = Batcher(serving, max_batch=args.batch, max_wait_ms=args.max_wait_ms, max_queue=4 * len(questions))
        limits = ServeLimits(max_tokens=args.max_response, default_max_tokens=args.max_response,
                             default_max_searches=serve_cfg.rollout.max_searches, timeout_s=3600.0)
        srv = _ThreadServer(create_app(batcher, limits, "bench"))
        try:
            _serve_run(srv.url, "bench", questions[:2], 1, args.max_response)  # warm-up: first-call costs
            t0 = time.perf_counter()
            metrics = evaluate_dataset(engine, retriever, data, work / "eval", spec, progress=False)
            eval_s = time.perf_counter() - t0
            eval_texts = [r["gen_text_store"] for r in read_jsonl(work / "eval" / "predictions.jsonl", on_bad="raise").values()]
            one_s, one_texts = _serve_run(srv.url, "bench", questions, 1, args.max_response)
            c0 = dict(serving.counts)
            many_s, many_texts = _serve_run(srv.url, "bench", questions, args.clients, args.max_response)
            c1 = serving.counts  # rows per decode step while the concurrent clients ran
            mean_batch = (c1["decode_rows"] - c0["decode_rows"]) / max(1, c1["decode_steps"] - c0["decode_steps"])
        finally:
            srv.stop()
    n = len(questions)
    q = {"eval": n / eval_s, "serve_1": n / one_s, f"serve_{args.clients}": n / many_s}
    same = {"serve_1": sum(a == b for a, b in zip(one_texts, eval_texts)),
            f"serve_{args.clients}": sum(a == b for a, b in zip(many_texts, eval_texts))}
    result = {
        "machine": info, "model": args.model, "questions": n, "batch": args.batch, "clients": args.clients,
        "max_response": args.max_response, "seconds": {"eval": eval_s, "serve_1": one_s, f"serve_{args.clients}": many_s},
        "q_per_s": q, "serve_1_over_eval": q["serve_1"] / q["eval"],
        f"serve_{args.clients}_over_eval": q[f"serve_{args.clients}"] / q["eval"],
        f"serve_{args.clients}_over_serve_1": q[f"serve_{args.clients}"] / q["serve_1"],
        "mean_batch": round(mean_batch, 2), "trajectories_equal_to_eval": same, "eval_f1": metrics.get("f1"),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_result(result)
    return 0


def _print_result(result: dict) -> None:
    """The human-readable lines of :func:`run`'s result."""
    info, n, c, q, sec = result["machine"], result["questions"], result["clients"], result["q_per_s"], result["seconds"]
    same = result["trajectories_equal_to_eval"]
    print(f"machine: {info.get('cpu')} ({info.get('cores')} cores, {info.get('threads')} torch threads)")
    print(f"{result['model']}, {n} questions, greedy, max_response_tokens {result['max_response']}, batch {result['batch']}")
    print(f"  eval (batches of {result['batch']}):   {q['eval']:.2f} q/s ({sec['eval']:.1f} s)")
    print(f"  serve-agent, 1 client:  {q['serve_1']:.2f} q/s ({sec['serve_1']:.1f} s)  = {result['serve_1_over_eval']:.2f}x eval")
    print(f"  serve-agent, {c} clients: {q[f'serve_{c}']:.2f} q/s ({sec[f'serve_{c}']:.1f} s)  = "
          f"{result[f'serve_{c}_over_eval']:.2f}x eval, {result[f'serve_{c}_over_serve_1']:.2f}x one client "
          f"(mean batch {result['mean_batch']})")
    print(f"  trajectories identical to eval's: {same['serve_1']}/{n} (1 client), {same[f'serve_{c}']}/{n} ({c} clients)")
