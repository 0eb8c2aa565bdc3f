"""The RL loop, top to bottom (nanoGPT-style): one optimizer step per rollout batch.

    questions → rollouts (engine: generate + retrieve) → rewards → [drop uniform groups]
    → [reference log-probs, only when kl_coef > 0] → advantages → micro-batched forward/backward
    → sum gradients over ranks → clip → AdamW step → log → checkpoint

Simplifications, on purpose:
- One optimizer step per rollout batch, so the policy that sampled is the policy being updated:
  the sampler's recorded log-probs are the "old" log-probs (no extra forward pass) and the PPO
  ratio starts at 1 (``train.recompute_old_logprobs`` adds that forward pass back).
- The reference policy for the KL term is a frozen copy of the starting weights, or, when training
  LoRA, the same model with its adapters disabled (no second copy; when stage 2 continues a stage-1
  adapter, the reference is the base model, not the stage-1 policy).
- Log-probs are computed only at policy tokens (``rl/logprobs.py``); documents get no log-prob,
  no KL and no whitening statistics.
- Several ranks (torchrun): each rolls out its share of the questions; gradients are summed with
  explicit all-reduces (ranks may run different numbers of micro-batches when groups are dropped),
  or, with ``train.fsdp``, the model is sharded and the differences live in ``rl/fsdp.py``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from r1searcher.config import Config, TrainConfig
from r1searcher.rl import distributed as D
from r1searcher.rl.advantages import get_estimator, uniform_groups
from r1searcher.rl.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
    resolve_model_dir,
    resume_checkpoint,
    save_checkpoint,
    seed_everything,
)
from r1searcher.rl import fsdp as F
from r1searcher.rl.heldout import load_heldout, run_heldout
from r1searcher.rl.logprobs import Batch, collate, token_logprobs
from r1searcher.rl.runfiles import check_resume_config, read_log, truncate_log
from r1searcher.rl.stopping import StepClock, parse_conditions, should_stop
from r1searcher.rl.losses import kl_estimate, rl_loss
from r1searcher.rollout.trajectory import STOP_REASONS, Trajectory


# --------------------------------------------------------------------------- small pieces


class QuestionSampler:
    """Endless epochs over ``n`` questions, each a permutation seeded by (seed, epoch); resumable."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        if n <= 0:
            raise ValueError("no training questions")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.pos = 0, 0

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def next(self, k: int) -> list[int]:
        out, order = [], self._order()
        while len(out) < k:
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                order = self._order()
            take = min(k - len(out), self.n - self.pos)
            out += order[self.pos : self.pos + take]
            self.pos += take
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "n": self.n}

    def load_state_dict(self, s: dict) -> None:
        if s["n"] != self.n:
            raise ValueError(f"the checkpoint was trained on {s['n']} questions, the data now has {self.n}")
        self.epoch, self.pos = s["epoch"], s["pos"]


def lr_factor(step: int, t: TrainConfig) -> float:
    """LR multiplier at optimizer step ``step``: linear warmup, then constant or cosine to min_lr_ratio."""
    if step < t.warmup_steps:
        return (step + 1) / (t.warmup_steps + 1)
    if t.lr_schedule == "constant":
        return 1.0
    if t.lr_schedule == "cosine":
        span = max(1, t.max_steps - t.warmup_steps)
        progress = min(1.0, (step - t.warmup_steps) / span)
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_schedule {t.lr_schedule!r}; valid: constant, cosine")


class TimedRetriever:
    """A retriever that adds the seconds spent in ``search`` to ``self.seconds``."""

    def __init__(self, inner):
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def search(self, queries, k):
        t0 = time.perf_counter()
        try:
            return self.inner.search(queries, k)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def __getattr__(self, name):
        return getattr(self.inner, name)


def build_retriever(cfg: Config):
    """``retrieval.server`` (HTTP), or ``retrieval.index``: an index folder, or a corpus file/name
    (BM25, built once and cached under the model cache)."""
    r = cfg.retrieval
    if r.server:
        from r1searcher.retrieval.client import HttpRetriever

        return HttpRetriever(r.server, timeout=r.timeout_s, retries=r.retries)
    if not r.index:
        raise ValueError("no retriever: set retrieval.index (an index folder or a corpus .jsonl) or retrieval.server")
    p = Path(r.index).expanduser()
    from r1searcher.retrieval.index import cached_index, load_index

    if p.is_dir():
        return load_index(p)
    from r1searcher.data.qa import resolve_dataset
    from r1searcher.models import cache_root
    from r1searcher.retrieval.corpus import read_passages

    passages = list(read_passages(resolve_dataset(r.index)))
    index, _, _ = cached_index(passages, "bm25", cache_root(cfg.model.cache_dir) / "indexes")
    return index


# --------------------------------------------------------------------------- the update


def micro_batches(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


@torch.no_grad()
def batched_logprobs(
    model, trajs: list[Trajectory], pad_id: int, temperature: float, size: int, T: int, share_prefix: bool = True
) -> torch.Tensor:
    """No-grad log-probs of all trajectories at policy tokens, ``[B, T]``."""
    out = torch.zeros(len(trajs), T)
    device = next(model.parameters()).device
    for rows in micro_batches(len(trajs), size):
        mb = collate([trajs[i] for i in rows], pad_id).to(device)
        lp, _ = token_logprobs(model, mb, temperature, share_prefix=share_prefix)
        out[rows, : lp.shape[1]] = lp.float().cpu()
    return out


def reference_logprobs(model, ref_model, trajs, pad_id, temperature, size, T) -> torch.Tensor:
    """Log-probs under the reference: the frozen copy, or the LoRA model with adapters disabled."""
    if ref_model is not None:
        return batched_logprobs(ref_model, trajs, pad_id, temperature, size, T)
    with getattr(model, "module", model).disable_adapter():
        return batched_logprobs(model, trajs, pad_id, temperature, size, T)


def policy_update(
    model, optimizer, trajs: list[Trajectory], rewards: torch.Tensor, t: TrainConfig, *, pad_id: int,
    temperature: float, ref_logp: torch.Tensor | None = None,
) -> dict[str, float]:
    """Advantages, then forward/backward over micro-batches, gradient sum over ranks, clip, step.

    ``trajs`` are this rank's (whole groups); ``rewards`` [B]; ``ref_logp`` [B, T] or None. The loss
    denominators are global, so the summed gradient equals one process doing the whole batch.
    Returns sums (not means) of statistics for exact reduction over ranks.
    """
    device = next(model.parameters()).device
    B = len(trajs)
    full = collate(trajs, pad_id)  # B may be 0: a rank whose groups were all dropped still joins the reductions
    stats: dict[str, float] = {}
    old = full.old_logp
    sharded = F.is_sharded(model)
    if t.recompute_old_logprobs and (B or sharded):
        with F.gathered(model):
            old = batched_logprobs(model, trajs, pad_id, temperature, t.micro_batch_size, full.tokens.shape[1], t.share_prompt)
    kl = None
    if ref_logp is not None:
        kl = kl_estimate(old, ref_logp, full.valid & full.loss_mask, t.kl_estimator)
        stats["kl_sum"] = float(kl.sum())
    group = torch.tensor([x.group for x in trajs], dtype=torch.long)
    adv, _ = get_estimator(t.algo)(rewards.float(), group, full.valid, full.loss_mask,
                                   kl if t.kl_in_reward else None, t.kl_coef, allreduce=D.all_reduce_sum)
    counts = D.all_reduce_sum(torch.tensor([float(B), float((full.valid & full.loss_mask).sum())]))
    denom = float(counts[0] if t.loss_agg == "seq-mean-token-mean" else counts[1])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    t_fb = time.perf_counter()
    mbs = micro_batches(B, t.micro_batch_size)
    scale = F.loss_scale(model)
    # Sharded: whether a micro-batch shares a prefix depends on its rows, and the prefix pass is a
    # second all-gather per layer, so ranks could disagree on the number of collectives: off.
    share = t.share_prompt and not sharded
    if sharded:  # every rank runs as many forward/backward passes as the busiest one (FSDP collectives)
        n_mb = int(D.all_reduce_max(torch.tensor([float(len(mbs))])).item())
        padding = n_mb - len(mbs)
        for _ in range(padding):
            mb = collate(F.zero_loss_batch(pad_id), pad_id).to(device)
            logp, _ = token_logprobs(model, mb, temperature, share_prefix=False)
            (logp.sum() * 0.0).backward()
    for rows in mbs:
        mb = collate([trajs[i] for i in rows], pad_id).to(device)
        Tm = mb.tokens.shape[1]
        old_mb = old[rows, :Tm].to(device)
        logp, ent = token_logprobs(model, mb, temperature, with_entropy=True, share_prefix=share)
        use_kl_loss = ref_logp is not None and not t.kl_in_reward
        loss, st = rl_loss(
            logp, old_mb, adv[rows, :Tm].to(device), mb.valid, mb.loss_mask, clip_eps=t.clip_eps,
            ref_logp=ref_logp[rows, :Tm].to(device) if use_kl_loss else None, kl_coef=t.kl_coef,
            kl_estimator=t.kl_estimator, agg=t.loss_agg, denom=max(denom, 1.0),
        )
        (loss * scale).backward()
        mask = mb.valid & mb.loss_mask
        stats["loss"] = stats.get("loss", 0.0) + float(loss.detach())
        stats["entropy_sum"] = stats.get("entropy_sum", 0.0) + float(ent[mask].sum())
        stats["old_minus_new_sum"] = stats.get("old_minus_new_sum", 0.0) + float((old_mb - logp.detach())[mask].sum())
        stats["train_tokens"] = stats.get("train_tokens", 0.0) + mb.n_tokens
        for k, v in st.items():
            stats[f"{k}_sum"] = stats.get(f"{k}_sum", 0.0) + float(v)
    if not sharded:  # FSDP summed them in its reduce-scatter
        D.sum_gradients(params)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    stats["sec_fwd_bwd"] = time.perf_counter() - t_fb
    stats["grad_norm"] = F.total_norm(grad_norm)  # identical on every rank (gradients were summed first)
    return stats


# --------------------------------------------------------------------------- statistics


def rollout_sums(trajs: list[Trajectory], rewards: list[float], breakdowns: list[dict], answers: list[list[str]]) -> dict:
    """Sums over this rank's trajectories of everything logged per step (reduced over ranks later)."""
    from r1searcher.metrics import max_cover_exact_match, max_exact_match, max_f1_score

    s: dict[str, float] = {"n": len(trajs), "reward_sum": sum(rewards), "reward_sq": sum(r * r for r in rewards)}
    for tr, bd, gold in zip(trajs, breakdowns, answers):
        pred = tr.answer
        s["f1"] = s.get("f1", 0.0) + (max_f1_score(pred, gold) if pred is not None else 0.0)
        s["em"] = s.get("em", 0.0) + float(pred is not None and max_exact_match(pred, gold))
        s["acc"] = s.get("acc", 0.0) + float(pred is not None and max_cover_exact_match(pred, gold))
        s["has_answer"] = s.get("has_answer", 0.0) + float(pred is not None)
        s["searches"] = s.get("searches", 0.0) + tr.n_searches
        s["with_search"] = s.get("with_search", 0.0) + float(tr.n_searches >= 1)
        s["response_len"] = s.get("response_len", 0.0) + len(tr.response_ids)
        s["policy_tokens"] = s.get("policy_tokens", 0.0) + sum(tr.loss_mask)
        s[f"stop_{tr.stop_reason}"] = s.get(f"stop_{tr.stop_reason}", 0.0) + 1
        for k, v in (bd or {}).items():
            if isinstance(v, (int, float)) and k not in ("stage", "reward"):  # numeric components
                s[f"reward_{k}"] = s.get(f"reward_{k}", 0.0) + float(v)
        for why in (bd or {}).get("reasons", []):
            s[f"why:{why}"] = s.get(f"why:{why}", 0.0) + 1
    return s


def step_record(step: int, s: dict, upd: dict, times: dict, lr: float, groups_dropped: int, kl_on: bool) -> dict:
    """One log line from the summed statistics."""
    n = max(s.get("n", 0.0), 1.0)
    trained = upd.get("tokens_sum", 0.0) > 0  # False when every group was dropped: no training forward
    toks = max(upd.get("tokens_sum", 0.0), 1.0)
    mean = s.get("reward_sum", 0.0) / n
    rec = {
        "step": step,
        "reward_mean": mean,
        "reward_std": math.sqrt(max(s.get("reward_sq", 0.0) / n - mean * mean, 0.0)),
        **{k: v / n for k, v in sorted(s.items()) if k.startswith("reward_") and k not in ("reward_sum", "reward_sq")},
        "searches_per_trajectory": s.get("searches", 0.0) / n,
        "frac_with_search": s.get("with_search", 0.0) / n,
        "f1": s.get("f1", 0.0) / n,
        "acc": s.get("acc", 0.0) / n,
        "em": s.get("em", 0.0) / n,
        "frac_with_answer": s.get("has_answer", 0.0) / n,
        "response_len": s.get("response_len", 0.0) / n,
        "policy_tokens": s.get("policy_tokens", 0.0) / n,
        **{f"stop_{r}": int(s.get(f"stop_{r}", 0)) for r in STOP_REASONS},
        "trajectories": int(s.get("n", 0)),
        "reward_reasons": {k[4:]: int(v) for k, v in sorted(s.items()) if k.startswith("why:")},
        "groups_dropped": groups_dropped,
        "kl": upd.get("kl_sum", 0.0) / toks if kl_on and trained else None,
        "entropy": upd.get("entropy_sum", 0.0) / toks if trained else None,
        "approx_kl_sampler": upd.get("old_minus_new_sum", 0.0) / toks if trained else None,
        "loss": upd.get("loss", 0.0),
        "grad_norm": upd.get("grad_norm", 0.0),
        "clip_frac": upd.get("clipped_sum", 0.0) / toks if trained else None,
        "lr": lr,
    }
    gen_tokens = s.get("response_len", 0.0)
    rec["tokens_per_s"] = gen_tokens / max(times["seconds"], 1e-9)
    rec["train_tokens"] = int(upd.get("train_tokens", 0))  # prompt + response tokens through forward+backward
    rec["train_tokens_per_s"] = upd.get("train_tokens", 0.0) / max(times.get("sec_fwd_bwd", 0.0), 1e-9)
    rec.update({k: round(v, 4) for k, v in times.items()})
    return rec


# --------------------------------------------------------------------------- the loop


def _load_models(cfg: Config, dist: D.Dist):
    from r1searcher.models import load_policy

    init_dir = resolve_model_dir(cfg.train.init_from) if cfg.train.init_from else None
    model, tok = load_policy(cfg.model, path=str(init_dir) if init_dir else None, training=True)
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if cfg.model.lora:
            model.enable_input_require_grads()
    ref = None
    if cfg.train.kl_coef > 0 and not cfg.model.lora:
        ref, _ = load_policy(replace(cfg.model, lora=False), path=str(init_dir) if init_dir else None, training=True)
        ref.eval().requires_grad_(False)
    return model, tok, ref


def train(cfg: Config, out: str | Path | None = None, resume: bool = False, steer=None, last_intact: bool = False) -> Path:
    """Run (or resume) one training stage; return the run folder.

    ``resume`` continues from the latest checkpoint, verified first (a damaged one is an error that
    names the file; ``last_intact`` takes the newest intact one instead). A config that differs from
    the checkpoint's is a warning, or an error for keys the checkpoint fixes (``rl/runfiles.RESUME_FIXED``);
    ``config.yaml`` keeps the run's original config.

    ``steer`` (tests and benchmarks only) forces chosen policy tokens through the real rollout
    engine (``rollout/steer.py``), e.g. to make a tiny random model search.
    """
    from r1searcher.data.qa import load_qa, resolve_dataset
    from r1searcher.rewards import compute_reward
    from r1searcher.rollout.engine import RolloutEngine
    from r1searcher.trackers import Trackers
    from r1searcher.viewer.records import sample_record

    t = cfg.train
    run = Path(out or cfg.out)
    dist = D.init(cfg.model.device)
    if t.questions_per_step % dist.world_size:
        raise ValueError(f"train.questions_per_step ({t.questions_per_step}) must divide evenly over {dist.world_size} ranks")
    if not cfg.data.path:
        raise ValueError("data.path is not set: name the training questions in the config or as data.path=FILE "
                         "(a QA JSONL, or a dataset name such as hotpotqa)")
    ckpt = None
    if resume:  # rank 0 verifies (and with last_intact moves damaged ones aside); the others follow
        with D.all_or_none(f"resuming {run}"):
            ckpt = resume_checkpoint(run, last_intact) if dist.is_main else None
        if not dist.is_main:
            ckpt = latest_checkpoint(run)
    if not resume and latest_checkpoint(run) is not None:
        raise ValueError(f"{run} already has checkpoints: pass --resume to continue it, or choose another --out")
    seed_everything(t.seed + dist.rank)
    cfg_yaml = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    with D.all_or_none(f"preparing {run}"):  # rank 0 writes; every rank hears if it could not
        if dist.is_main:
            run.mkdir(parents=True, exist_ok=True)
            if ckpt is None or not (run / "config.yaml").exists():
                (run / "config.yaml").write_text(cfg_yaml)
            else:
                check_resume_config(run, ckpt, cfg)

    records = load_qa(resolve_dataset(cfg.data.path), on_error=cfg.data.on_error, limit=cfg.data.limit or None)
    sampler = QuestionSampler(len(records), t.seed, cfg.data.shuffle)
    model, tok, ref_model = _load_models(cfg, dist)
    if ckpt is not None:  # weights first: a sharded model loads them before it is split
        load_model_weights(model, ckpt / "model")
    sharded = t.fsdp and dist.world_size > 1
    if sharded:
        F.shard(model)
    elif t.fsdp and dist.is_main:
        print("train.fsdp: one process, nothing to shard (launch with torchrun --nproc_per_node N)")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, t))
    retriever = TimedRetriever(build_retriever(cfg))
    engine = RolloutEngine(model, tok, retriever, cfg.rollout, cfg.retrieval, steer=steer)

    start, state = 0, {}
    if ckpt is not None:
        state = load_checkpoint(ckpt, model=None, optimizer=None if sharded else optimizer, scheduler=scheduler,
                                rank=dist.rank)
        if state.get("world_size", 1) != dist.world_size:
            raise ValueError(f"{ckpt} was written by {state['world_size']} ranks; resume with the same number")
        if state.get("fsdp", False) != sharded:
            raise ValueError(f"{ckpt} was written with train.fsdp={str(state.get('fsdp', False)).lower()}; resume with the same")
        if sharded:
            F.load_optimizer(model, optimizer, ckpt / "optimizer.pt")
        start = state["step"]
        sampler.load_state_dict(state["sampler"])
    elif resume and dist.is_main:
        print(f"no checkpoint in {run}: starting from step 0")
    with D.all_or_none(f"reading the logs in {run}"):
        if dist.is_main:  # lines of steps after the checkpoint (or of a run killed before its first one)
            truncate_log(run / "log.jsonl", start)
            truncate_log(run / "samples.jsonl", start)
            truncate_log(run / "eval.jsonl", start if start else -1)  # step 0 is evaluated again below

    trackers = Trackers(t.report_to if dist.is_main else None, run, cfg.to_dict(), start)
    conditions = parse_conditions(t.stop_when)
    history = read_log(run / "log.jsonl") if start else []  # stop_when looks back over resumed steps too
    clock = StepClock.from_state(state, history)  # seconds spent, and what a step costs (train.max_minutes)
    budget_s = t.max_minutes * 60
    heldout = load_heldout(cfg) if t.eval_every > 0 else []
    if heldout and start == 0:  # the starting point of the held-out curve
        clock.add_eval(run_heldout(engine, model, heldout, cfg, dist, run, 0)["seconds"])
    bar = _progress_bar(t, run, start, clock.elapsed) if dist.is_main and t.progress else None
    pad_id = tok.pad_token_id
    kl_on = t.kl_coef > 0
    for step in range(start, t.max_steps):
        if step == start and ckpt is not None:  # a resume: does its first step fit in what is left?
            why = clock.stop_before_next(budget_s)
            if D.any_rank(why is not None):
                if dist.is_main:
                    print(f"stopping before step {step + 1}: {why or 'the time budget is spent'}", flush=True)
                break
        t0 = time.perf_counter()
        times: dict[str, float] = {}
        # 1. questions: the same global batch on every rank, each rank rolls out its share
        recs = [records[i] for i in D.shard(sampler.next(t.questions_per_step), dist.rank, dist.world_size)]
        # 2. rollouts (generation and retrieval interleaved; retrieval timed by the wrapper)
        retriever.seconds = 0.0
        model.eval()
        with torch.no_grad(), F.gathered(model):
            trajs = engine.rollout([r.question for r in recs], seed=(t.seed * 1_000_003 + step) * 1009 + dist.rank)
        times["sec_rollout"] = time.perf_counter() - t0
        times["sec_retrieve"] = retriever.seconds
        times["sec_generate"] = times["sec_rollout"] - retriever.seconds
        # 3. rewards
        t1 = time.perf_counter()
        answers = [recs[tr.group].answers for tr in trajs]
        scored = [compute_reward(tr, gold, cfg.reward) for tr, gold in zip(trajs, answers)]
        rewards = torch.tensor([r for r, _ in scored], dtype=torch.float32)
        times["sec_reward"] = time.perf_counter() - t1
        sums = rollout_sums(trajs, rewards.tolist(), [b for _, b in scored], answers)
        # 4. optional: drop groups with all-equal rewards (no outcome signal)
        dropped = 0
        if t.drop_uniform_groups and trajs:
            same = uniform_groups(rewards, torch.tensor([tr.group for tr in trajs]))
            dropped = len({tr.group for tr, u in zip(trajs, same) if u})
            keep = [i for i in range(len(trajs)) if not same[i]]
            trajs, rewards = [trajs[i] for i in keep], rewards[keep]
        # 5. reference log-probs (KL), only when kl_coef > 0
        t2 = time.perf_counter()
        ref_logp = None
        if kl_on:
            T = max([len(x.response_ids) for x in trajs] + [1])
            with F.gathered(model):
                ref_logp = reference_logprobs(model, ref_model, trajs, pad_id, cfg.rollout.temperature, t.micro_batch_size, T)
        times["sec_reference"] = time.perf_counter() - t2
        # 6. advantages + micro-batched update + optimizer step
        upd = policy_update(model, optimizer, trajs, rewards, t, pad_id=pad_id, temperature=cfg.rollout.temperature,
                            ref_logp=ref_logp)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        grad_norm, times["sec_fwd_bwd"] = upd.pop("grad_norm"), upd.pop("sec_fwd_bwd")
        # 7. log (statistics summed over ranks)
        sums = D.gather_sums(sums)
        upd = D.gather_sums(upd)
        upd["grad_norm"] = grad_norm
        dropped = int(D.gather_sums({"d": dropped})["d"])
        times["seconds"] = time.perf_counter() - t0
        clock.add_step(times["seconds"])
        rec = step_record(step + 1, sums, upd, times, lr, dropped, kl_on)
        history.append(rec)
        # 8. stop? (the stage's goal reached: train.stop_when on the last steps' means; or the next step,
        #    with what is due before it, would not fit in the time budget; or max_steps)
        eval_due = bool(heldout) and (step + 1) % t.eval_every == 0
        save_due = (step + 1) % max(t.save_every, 1) == 0
        goal_met, means = should_stop(history, conditions, t.stop_window)
        goal_met = D.any_rank(goal_met)
        no_time = clock.stop_before_next(budget_s, eval_due, save_due) if step + 1 < t.max_steps else None
        no_time = (no_time or "another rank's time budget is spent") if D.any_rank(no_time is not None) else None
        stop_reason = None
        if goal_met:
            held = ", ".join(f"{c.key} {means[c.key]:.3f}" for c in conditions)
            stop_reason = f"stop_when met (mean of the last {t.stop_window} steps: {held})"
        elif no_time:
            stop_reason = no_time
        elif step + 1 == t.max_steps:
            stop_reason = f"max_steps ({t.max_steps}) reached"
        last = stop_reason is not None
        if heldout and (eval_due or last):
            ho = run_heldout(engine, model, heldout, cfg, dist, run, step + 1)
            rec.update({f"heldout_{k}": v for k, v in ho.items() if k != "by_hops"})
            clock.add_eval(ho["seconds"])
        rec["elapsed"] = round(clock.elapsed, 2)
        rec["expected_step_seconds"] = round(clock.expected_step(), 2)  # what the budget check counts a step at
        if stop_reason:
            rec["stop_reason"] = stop_reason
        with D.all_or_none(f"writing the log of step {step + 1}"):
            if dist.is_main:
                _write_records(run, rec, [sample_record(step + 1, tr, r, recs[tr.group].answers, cfg.reward, tok)
                                          for tr, r in zip(trajs[: t.log_samples], rewards.tolist())], trackers)
                if bar is not None:
                    _advance(bar, t, step + 1, clock.elapsed, rec)
        # 9. checkpoint (also when the time budget is spent or the goal is met: the last step always leaves one)
        if save_due or last:
            t_save = time.perf_counter()
            model_state, optim_state = F.full_state(model, optimizer) if sharded else (None, None)
            save_checkpoint(run, step + 1, model=model, optimizer=optimizer, scheduler=scheduler,
                            state={"sampler": sampler.state_dict(), **clock.state(), "fsdp": sharded},
                            config_yaml=cfg_yaml, tokenizer=tok, rank=dist.rank, world_size=dist.world_size,
                            keep_last=t.keep_last, agree=D.agree, model_state=model_state, optimizer_state=optim_state)
            clock.add_save(time.perf_counter() - t_save)
        if last:
            if dist.is_main:
                print(f"stopping after step {step + 1}: {stop_reason}", flush=True)
            break
    if bar is not None:
        bar.close()
    trackers.close()
    return run


def _write_records(run: Path, rec: dict, samples: list[dict], trackers) -> None:
    """Append a step's record to log.jsonl, its samples to samples.jsonl, and mirror them (train.report_to)."""
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    if samples:
        with open(run / "samples.jsonl", "a") as f:
            f.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    trackers.log(rec, samples)  # TensorBoard / wandb / Trackio mirrors


def _progress_bar(t: TrainConfig, run: Path, start: int, elapsed: float):
    """Against the clock when ``max_minutes`` is set (the stage ends on time, not at max_steps), else steps."""
    from tqdm.auto import tqdm

    if t.max_minutes > 0:
        total = t.max_minutes * 60
        return tqdm(total=round(total), initial=min(round(elapsed), round(total)), desc=f"train {run.name} step {start}",
                    unit="s", dynamic_ncols=True,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of budget [{elapsed}<{remaining}{postfix}]")
    return tqdm(total=t.max_steps, initial=start, desc=f"train {run.name}", unit="step", dynamic_ncols=True)


def _advance(bar, t: TrainConfig, step: int, elapsed: float, rec: dict) -> None:
    if t.max_minutes > 0:
        bar.set_description_str(f"{bar.desc.rsplit(' step ', 1)[0]} step {step}", refresh=False)
        bar.update(max(0, min(round(elapsed), bar.total) - bar.n))
    else:
        bar.update(1)
    post = {"reward": f"{rec['reward_mean']:.3f}", "search": f"{rec['frac_with_search']:.2f}", "f1": f"{rec['f1']:.2f}",
            "s": f"{rec['seconds']:.0f}"}
    if rec.get("heldout_f1") is not None:
        post["heldout_f1"] = f"{rec['heldout_f1']:.1f}"
    bar.set_postfix(post)
