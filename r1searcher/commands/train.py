"""``r1searcher train``: RL training of a search-while-reasoning policy (one stage, or both).

    r1searcher train --config stage1 --out runs/s1 train.max_steps=50
    r1searcher train --stages --out runs/two          # stage1, then stage2 from its checkpoint
    r1searcher train --config tiny --out runs/t --resume
    r1searcher train --config my.yaml                 # a file; a packaged name (tiny, stage1, …) otherwise
    torchrun --nproc_per_node 2 -m r1searcher.cli train --config tiny   # data parallel
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

STAGE_CONFIGS = ["stage1", "stage2"]  # --stages without --config: the packaged configs, in order

HELP = "train a policy with RL on outcome rewards (stage 1, stage 2, or --stages for both)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="FILE|NAME",
                   help="YAML config file, or a packaged config's name (tiny, stage1, stage2, …; "
                        "with --stages: one per stage, in order)")
    p.add_argument("--out", help="run folder (default: the config's 'out'); with --stages, OUT/<config name> per stage")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--last-intact", action="store_true",
                   help="with --resume: if the latest checkpoint is damaged, move it aside and resume from the newest intact one")
    p.add_argument("--stages", action="store_true",
                   help="run the stages in order, each starting from the previous one's checkpoint "
                        "(default configs: stage1 stage2, the packaged ones)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.max_steps=20")


def run(args: argparse.Namespace) -> int:
    from r1searcher.config import load_config, resolve_config
    from r1searcher.rl import distributed as D
    from r1searcher.rl.trainer import train

    configs = args.config or (list(STAGE_CONFIGS) if args.stages else [])
    if not configs:
        raise ValueError("give --config FILE (or --stages)")
    if args.last_intact and not args.resume:
        raise ValueError("--last-intact goes with --resume")
    if len(configs) > 1 and not args.stages:
        raise ValueError("several --config files need --stages (they run in order)")
    configs = [resolve_config(c) for c in configs]  # a misspelt later stage fails before the first one trains
    try:
        previous = None
        for path in configs:
            overrides = list(args.overrides)
            if previous is not None and not any(o.startswith("train.init_from=") for o in overrides):
                overrides.append(f"train.init_from={previous}")
            cfg = load_config(path, overrides)
            out = args.out
            if args.stages and args.out:  # one sub-folder per stage; without --out each config's own 'out'
                out = str(Path(args.out) / Path(path).stem)
            previous = train(cfg, out, resume=args.resume, last_intact=args.last_intact)
            print(f"{path}: done, run folder {previous}")
    except Exception as e:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            _exit_rank(e, args)
        raise
    finally:
        D.shutdown()
    return 0


def _exit_rank(e: Exception, args: argparse.Namespace) -> None:
    """One rank of a multi-process run failed (every rank raises together, ``distributed.agree``):
    print the error as the CLI would and leave at once. Interpreter teardown after the process group
    is gone can abort in gloo's threads when a peer has already exited ("terminate called without an
    active exception", exit -6), so the exit code would depend on which rank left first."""
    import sys
    import traceback

    import yaml

    from r1searcher.util.errors import describe_error
    from r1searcher.rl import distributed as D

    import time

    if not isinstance(e, D.PeerError):  # the rank that failed: let the others read its last message
        time.sleep(1.0)                  # before this process's sockets close under them
    try:
        D.shutdown()
    except Exception:  # a peer gone mid-teardown: the error below is the one that matters
        pass
    if getattr(args, "debug", False) or getattr(args, "debug_all", False) or os.environ.get("R1SEARCHER_DEBUG"):
        traceback.print_exception(e)
    known = isinstance(e, (OSError, ValueError, RuntimeError, yaml.YAMLError))
    print(f"r1searcher train: error: {describe_error(e)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(2 if known else 1)
