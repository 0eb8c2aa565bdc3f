"""``r1searcher serve-agent --model RUN_OR_MODEL (--index DIR | --server URL | --web) [options] [key=value ...]``:
the searcher behind an OpenAI-compatible API (``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /health``). Concurrent requests share batched generation (``r1searcher/agent/``).

The model is an embedded name, a HF folder, a checkpoint or a training run (its latest checkpoint);
a run folder's ``config.yaml`` supplies the prompt and rollout limits unless ``--config`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from r1searcher.commands._common import port_number

HELP = "serve the searcher (a trained run or a model) behind an OpenAI-compatible chat API, batched"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from r1searcher.commands._common import add_retriever_arguments

    p.add_argument("--model", default="smollm2", help="embedded name, HF folder, checkpoint or training run folder")
    add_retriever_arguments(p)
    p.add_argument("--config", help="YAML config (prompt style, rollout limits, retrieval.top_k); "
                   "default: the run folder's config.yaml when --model is one")
    p.add_argument("--served-model-name", help="the model id clients name (default: --model as given)")
    p.add_argument("-k", "--top-k", type=int, default=None, help="passages per search (default: retrieval.top_k)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8001, help="TCP port, 0..65535 (0: a free one; the bound one is printed)")
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together (rows of the running batch)")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="how long an idle engine waits for a batch to fill")
    p.add_argument("--retrieve-after-steps", type=int, default=8,
                   help="decode steps a paused row waits for others to pause too (one retriever call for all)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting; beyond: 429 with Retry-After")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="largest max_tokens a request may ask (tokens the model writes; default: rollout.max_response_tokens)")
    p.add_argument("--default-max-tokens", type=int, default=None, help="max_tokens when a request gives none "
                   "(default: the smaller of 1024 and --max-tokens)")
    p.add_argument("--max-searches", type=int, default=16, help="largest max_searches a request may ask")
    p.add_argument("--request-timeout-s", type=float, default=120.0,
                   help="a request's time limit, queue wait included (requests may ask for less with timeout_s)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--log-level", default="warning")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. rollout.prompt=chat)")


def _config(args):
    from r1searcher.config import derive, load_config

    config = args.config
    run_cfg = Path(args.model).expanduser() / "config.yaml"
    if config is None and run_cfg.is_file():
        config = str(run_cfg)
    flags = {"model.name": args.model, **({"retrieval.top_k": args.top_k} if args.top_k is not None else {}),
             "rollout.on_retriever_error": "stop"}  # a failed search ends that request (502), not the batch
    return derive(load_config(config, list(args.overrides)), flags), config


def build(args: argparse.Namespace, steer=None):
    """``(app, description)`` for the command line: config, retriever, model, engine, batcher, app.
    ``steer`` forces tokens (tests and benchmarks, see ``rollout/steer.py``)."""
    from r1searcher.agent.app import create_app
    from r1searcher.agent.batcher import Batcher
    from r1searcher.agent.engine import ServingEngine
    from r1searcher.agent.schema import ServeLimits
    from r1searcher.commands._common import open_retriever
    from r1searcher.models.loading import load_policy

    for name, least in (("max_batch", 1), ("max_queue", 1), ("max_searches", 0), ("retrieve_after_steps", 0)):
        if getattr(args, name) < least:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {least}")
    if args.request_timeout_s <= 0:
        raise ValueError("--request-timeout-s must be > 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg, config_path = _config(args)
    max_tokens = args.max_tokens or cfg.rollout.max_response_tokens
    default_tokens = args.default_max_tokens or min(1024, max_tokens)
    if not 1 <= default_tokens <= max_tokens:
        raise ValueError(f"--default-max-tokens {default_tokens} must be between 1 and --max-tokens {max_tokens}")
    limits = ServeLimits(max_tokens=max_tokens, default_max_tokens=default_tokens, max_searches=args.max_searches,
                         default_max_searches=min(cfg.rollout.max_searches, args.max_searches),
                         timeout_s=args.request_timeout_s)
    retriever = open_retriever(args, cfg)
    model, tok = load_policy(cfg.model)
    engine = ServingEngine(model, tok, retriever, cfg.rollout, cfg.retrieval, steer=steer, max_rows=args.max_batch,
                           retrieve_after_steps=args.retrieve_after_steps)
    batcher = Batcher(engine, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                      seed=cfg.rollout.seed)
    model_id = args.served_model_name or args.model
    source = ("web" if getattr(args, "web", False) else f"index {args.index}" if getattr(args, "index", None)
              else f"server {args.server}")
    info = {"retriever": source, "config": config_path, "prompt": cfg.rollout.prompt, "top_k": cfg.retrieval.top_k,
            "device": str(next(model.parameters()).device)}
    return create_app(batcher, limits, model_id, info), f"{model_id} searching {source}"


def run(args: argparse.Namespace, steer=None) -> int:
    from r1searcher.agent.app import serve

    app, what = build(args, steer)
    serve(app, args.host, args.port, args.log_level,
          announce=lambda url: print(f"serving {what} on {url} (POST /v1/chat/completions, GET /v1/models, GET /health)",
                                     flush=True))
    return 0
