"""The RL loop, top to bottom (nanoGPT-style): one optimizer step per rollout batch.

    questions → rollouts (engine: generate + retrieve) → rewards → [drop uniform groups]
    → [train.fill_groups: more questions, rolled out and scored, until enough groups differ]
    → [reference log-probs, only when kl_coef > 0] → advantages → micro-batched forward/backward
    → sum gradients over ranks → clip → AdamW step → log → checkpoint

Setup, resume, logging, stopping and checkpoints belong to the run (``rl/run.py``); one process,
data-parallel replicas and FSDP shards differ only inside the parallelism wrapper
(``rl/parallel.py``), so the loop and :func:`policy_update` read the same for all three.

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
  or, with ``train.fsdp``, the model is sharded (``rl/fsdp.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from r1searcher.config import Config, TrainConfig
from r1searcher.rl.advantages import get_estimator, uniform_groups
from r1searcher.rl.logprobs import batched_logprobs, collate, micro_batches, token_logprobs
from r1searcher.rl.losses import kl_estimate, rl_loss
from r1searcher.rl.parallel import Parallel
from r1searcher.rl.protect import protect_advantages, protect_mask
from r1searcher.rl.run import Run
from r1searcher.rollout.trajectory import STOP_REASONS, Trajectory


# --------------------------------------------------------------------------- the update


def reference_logprobs(model, ref_model, trajs, pad_id, temperature, size, par: Parallel) -> torch.Tensor:
    """Log-probs under the reference, ``[B, T]``: the frozen copy, or the LoRA model with adapters disabled."""
    T = max([len(x.response_ids) for x in trajs] + [1])
    with par.gathered(model):
        if ref_model is not None:
            return batched_logprobs(ref_model, trajs, pad_id, temperature, size, T)
        with getattr(model, "module", model).disable_adapter():
            return batched_logprobs(model, trajs, pad_id, temperature, size, T)


def add_info_gain(run, cfg: Config, trajs: list[Trajectory], answers: list[list[str]], rewards: torch.Tensor,
                  breakdowns: list[dict]) -> torch.Tensor:
    """``reward.info_gain`` × P(gold | each trajectory before its answer) added to ``rewards`` [B]
    (and to each breakdown, as ``gold_prob``, for the step's log); the rewards unchanged when it is 0
    or in stage 1 (like ``reward.found_bonus``, a term of the answer-F1 reward)."""
    if not cfg.reward.info_gain or cfg.reward.stage != 2:
        return rewards
    from r1searcher.rl.info_gain import gold_probability

    with run.par.gathered(run.model):  # gold_probability runs without grad
        p = gold_probability(run.model, run.tokenizer, trajs, answers, run.pad_id, cfg.train.micro_batch_size)
    for bd, x in zip(breakdowns, p.tolist()):
        bd["gold_prob"] = x
        bd["reward"] = bd.get("reward", 0.0) + cfg.reward.info_gain * x
    return rewards + cfg.reward.info_gain * p


def drop_uniform_groups(trajs: list[Trajectory], rewards: torch.Tensor, tol: float = 1e-6,
                        signal: torch.Tensor | None = None) -> tuple[list[Trajectory], torch.Tensor, int]:
    """Drop the groups whose rewards (or ``signal`` [B], when given) are all equal (span ≤ ``tol``: no
    outcome signal); also how many were dropped."""
    if not trajs:
        return trajs, rewards, 0
    same = uniform_groups(rewards if signal is None else signal, torch.tensor([tr.group for tr in trajs]), atol=tol)
    dropped = len({tr.group for tr, u in zip(trajs, same) if u})
    keep = [i for i in range(len(trajs)) if not same[i]]
    return [trajs[i] for i in keep], rewards[keep], dropped


def drop_cut_by_length(trajs: list[Trajectory], rewards: torch.Tensor) -> tuple[list[Trajectory], torch.Tensor, int]:
    """Leave out the trajectories the length caps cut (stop reason ``length``), and say how many:
    DAPO's overlong filtering (arXiv 2503.14476). Their reward (the format penalty: no closed answer)
    says only that the budget ran out, which in multi-hop search falls on the trajectories that searched
    most; the rest of the group keeps its rewards and is normalised among itself."""
    keep = uncut(trajs)
    return [trajs[i] for i in keep], rewards[keep], len(trajs) - len(keep)


def uncut(trajs: list[Trajectory]) -> list[int]:
    """Indices of the trajectories the length caps did not cut (stop reason other than ``length``)."""
    return [i for i, tr in enumerate(trajs) if tr.stop_reason != "length"]


def drop_for_update(trajs: list[Trajectory], rewards: torch.Tensor, t: TrainConfig, signal: torch.Tensor | None = None):
    """What the update leaves out: length-cut samples (``train.drop_truncated``), then the groups
    whose rewards are all equal (``train.drop_uniform_groups``; after the first, since a group may be
    uniform without its cut samples). ``signal`` [B], when given, is what must differ in a group
    instead of the reward (``train.uniform_by=answer``: the answers' F1). Returns the rest, their
    rewards, groups dropped, samples cut."""
    cut = dropped = 0
    if t.drop_truncated:
        signal = signal[uncut(trajs)] if signal is not None else None
        trajs, rewards, cut = drop_cut_by_length(trajs, rewards)
    if t.drop_uniform_groups:
        trajs, rewards, dropped = drop_uniform_groups(trajs, rewards, t.uniform_tol, signal)
    return trajs, rewards, dropped, cut


def update_signal(breakdowns: list[dict], t: TrainConfig, stage: int) -> torch.Tensor | None:
    """What must differ in a group for it to train (``train.uniform_by``), [B]: None for the reward
    itself; with ``answer`` in stage 2 the answers' F1 (stage 1 has no answer score: the reward)."""
    if t.uniform_by != "answer" or stage != 2:
        return None
    return torch.tensor([float(b.get("f1", 0.0)) for b in breakdowns])


def policy_update(
    model, optimizer, trajs: list[Trajectory], rewards: torch.Tensor, t: TrainConfig, *, pad_id: int,
    temperature: float, ref_logp: torch.Tensor | None = None, par: Parallel, tokenizer=None,
) -> dict[str, float]:
    """Advantages, then forward/backward over micro-batches, gradient sum over ranks, clip, step.

    ``trajs`` are this rank's (whole groups); ``rewards`` [B]; ``ref_logp`` [B, T] or None;
    ``tokenizer`` finds the query tags ``train.protect_tags`` keeps from negative advantages. The loss
    denominators are global, so the summed gradient equals one process doing the whole batch.
    Returns sums (not means) of statistics for exact reduction over ranks.
    """
    full = collate(trajs, pad_id)  # may be empty: a rank whose groups were all dropped still joins the reductions
    stats: dict[str, float] = {}
    old = full.old_logp
    # One optimizer step per batch: every micro-batch's forward sees the weights the update starts
    # from, so without a reference model (whose KL reads ``old`` first) the training forward's own
    # log-probs, detached, are exactly what the extra no-grad forward would give, at no cost.
    free_old = t.recompute_old_logprobs and ref_logp is None
    if t.recompute_old_logprobs and not free_old:
        with par.gathered(model):
            old = batched_logprobs(model, trajs, pad_id, temperature, t.micro_batch_size, full.tokens.shape[1], t.share_prompt)
    kl = None
    if ref_logp is not None:
        kl = kl_estimate(old, ref_logp, full.valid & full.loss_mask, t.kl_estimator)
        stats["kl_sum"] = float(kl.sum())
    group = torch.tensor([x.group for x in trajs], dtype=torch.long)
    adv, _ = get_estimator(t.algo)(rewards.float(), group, full.valid, full.loss_mask,
                                   kl if t.kl_in_reward else None, t.kl_coef, allreduce=par.reduce_tensor)
    if t.protect_tags and trajs:
        if tokenizer is None:
            raise ValueError("train.protect_tags needs the tokenizer to find the query tags")
        protect = protect_mask(tokenizer, trajs, adv.shape[1])
        stats["protected_neg"] = float((protect & (adv < 0)).sum())  # tag tokens whose push-down was held back
        adv = protect_advantages(adv, protect)
    counts = par.reduce_tensor(torch.tensor([float(len(trajs)), float((full.valid & full.loss_mask).sum())]))
    denom = max(float(counts[0] if t.loss_agg == "seq-mean-token-mean" else counts[1]), 1.0)
    model.train()
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    t_fb = time.perf_counter()
    mbs = micro_batches(len(trajs), t.micro_batch_size)
    par.pad_passes(model, len(mbs), pad_id, temperature)  # FSDP: as many passes on every rank as on the busiest
    for rows in mbs:
        mb = collate([trajs[i] for i in rows], pad_id).to(device)
        Tm = mb.tokens.shape[1]
        old_mb = old[rows, :Tm].to(device)  # the sampler's (or the recomputed) log-probs
        logp, ent = token_logprobs(model, mb, temperature, with_entropy=True, share_prefix=par.share_prompt(t.share_prompt))
        ratio_old = logp.detach() if free_old else old_mb
        use_kl_loss = ref_logp is not None and not t.kl_in_reward
        loss, st = rl_loss(
            logp, ratio_old, adv[rows, :Tm].to(device), mb.valid, mb.loss_mask, clip_eps=t.clip_eps,
            ref_logp=ref_logp[rows, :Tm].to(device) if use_kl_loss else None, kl_coef=t.kl_coef,
            kl_estimator=t.kl_estimator, agg=t.loss_agg, denom=denom,
        )
        (loss * par.loss_scale).backward()
        _add_micro_batch_stats(stats, loss, ent, old_mb - logp.detach(), mb, st)
    par.sync_gradients(params)
    grad_norm = par.clip_gradients(params, t.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    stats["sec_fwd_bwd"] = time.perf_counter() - t_fb
    stats["grad_norm"] = grad_norm
    return stats


def _add_micro_batch_stats(stats: dict[str, float], loss, ent, old_minus_new, mb, st: dict) -> None:
    """Add one micro-batch's loss and its sums over policy tokens to ``stats``."""
    mask = mb.valid & mb.loss_mask
    stats["loss"] = stats.get("loss", 0.0) + float(loss.detach())
    stats["entropy_sum"] = stats.get("entropy_sum", 0.0) + float(ent[mask].sum())
    stats["old_minus_new_sum"] = stats.get("old_minus_new_sum", 0.0) + float(old_minus_new[mask].sum())
    stats["train_tokens"] = stats.get("train_tokens", 0.0) + mb.n_tokens
    for k, v in st.items():
        stats[f"{k}_sum"] = stats.get(f"{k}_sum", 0.0) + float(v)


# --------------------------------------------------------------------------- statistics


def rollout_sums(trajs: list[Trajectory], rewards: list[float], breakdowns: list[dict], answers: list[list[str]],
                 arm: Callable[[int], str] | None = None) -> dict:
    """Sums over this rank's trajectories of everything logged per step (reduced over ranks later).
    ``arm``: sample index → "explored" (``train.explore_share``), "stopped" (``train.stop_share``) or
    "natural" (``rollout/steer.arm``); with it, each arm's F1 and searches are also summed apart."""
    from r1searcher.eval.metrics import max_cover_exact_match, max_exact_match, max_f1_score

    s: dict[str, float] = {"n": len(trajs), "reward_sum": sum(rewards), "reward_sq": sum(r * r for r in rewards)}
    for tr, bd, gold in zip(trajs, breakdowns, answers):
        pred = tr.answer
        f1 = max_f1_score(pred, gold) if pred is not None else 0.0
        s["f1"] = s.get("f1", 0.0) + f1
        if arm is not None:
            kind = arm(tr.sample)
            for k, v in ((kind, 1.0), (f"{kind}_f1", f1), (f"{kind}_searches", tr.n_searches)):
                s[k] = s.get(k, 0.0) + v
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


def _explore_stats(s: dict, n: float) -> dict:
    """With exploration on: the share of samples in each forced arm, and F1 and searches of each arm
    and of the natural one apart (``searches_natural`` is what the policy chooses on its own)."""
    if not s.get("explored") and not s.get("stopped"):
        return {}
    out = {f"frac_{kind}": s[kind] / n for kind in ("explored", "stopped") if s.get(kind)}
    for kind in ("explored", "stopped", "natural"):
        if s.get(kind):
            out[f"f1_{kind}"] = s[f"{kind}_f1"] / s[kind]
            out[f"searches_{kind}"] = s[f"{kind}_searches"] / s[kind]
    return out


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
        **_explore_stats(s, n),
        "groups_dropped": groups_dropped,
        "kl": upd.get("kl_sum", 0.0) / toks if kl_on and trained else None,
        "entropy": upd.get("entropy_sum", 0.0) / toks if trained else None,
        "approx_kl_sampler": upd.get("old_minus_new_sum", 0.0) / toks if trained else None,
        "loss": upd.get("loss", 0.0),
        "grad_norm": upd.get("grad_norm", 0.0),
        "clip_frac": upd.get("clipped_sum", 0.0) / toks if trained else None,
        "lr": lr,
        **({"protected_tag_tokens": int(upd["protected_neg"])} if "protected_neg" in upd else {}),
    }
    gen_tokens = s.get("response_len", 0.0)
    rec["tokens_per_s"] = gen_tokens / max(times["seconds"], 1e-9)
    rec["train_tokens"] = int(upd.get("train_tokens", 0))  # prompt + response tokens through forward+backward
    rec["train_tokens_per_s"] = upd.get("train_tokens", 0.0) / max(times.get("sec_fwd_bwd", 0.0), 1e-9)
    rec.update({k: round(v, 4) for k, v in times.items()})
    return rec


# --------------------------------------------------------------------------- the loop


def sample_round(run, cfg: Config, step: int, rnd: int, explore, arm, offset: int = 0) -> dict:
    """One batch of the step's questions: rollouts, rewards, and what the update leaves out
    (``drop_for_update``). Round 0 is the step's batch (its sampling seed as without
    ``train.fill_groups``); later rounds are the dynamic sampling's further batches, their groups
    numbered on from ``offset``. Returns recs, the kept trajs, their rewards [B], the rollout sums
    (over every sample), times, and the groups dropped and samples cut."""
    from r1searcher.rl.rewards import compute_reward

    t, par, engine = cfg.train, run.par, run.engine
    t0 = time.perf_counter()
    # 1. questions: the same global batch on every rank, each rank rolls out its share
    recs = run.next_questions()
    # 2. rollouts (generation and retrieval interleaved; the engine times retrieval)
    run.model.eval()
    with torch.no_grad(), par.gathered(run.model):
        trajs = engine.rollout([r.question for r in recs], seed=(t.seed * 1_000_003 + step) * 1009 + par.rank
                               + rnd * 1_000_000_007, steer=explore)
    times = {"sec_rollout": time.perf_counter() - t0, "sec_retrieve": engine.stats.retrieval_s}
    times["sec_generate"] = times["sec_rollout"] - times["sec_retrieve"]
    # 3. rewards
    t1 = time.perf_counter()
    answers = [recs[tr.group].answers for tr in trajs]
    scored = [compute_reward(tr, gold, cfg.reward) for tr, gold in zip(trajs, answers)]
    rewards = add_info_gain(run, cfg, trajs, answers, torch.tensor([r for r, _ in scored]), [b for _, b in scored])
    times["sec_reward"] = time.perf_counter() - t1
    sums = rollout_sums(trajs, rewards.tolist(), [b for _, b in scored], answers, arm)
    # 4. optional: drop length-cut samples, then groups with all-equal rewards (or answers' F1: train.uniform_by)
    signal = update_signal([b for _, b in scored], t, cfg.reward.stage)
    trajs, rewards, dropped, cut = drop_for_update(trajs, rewards, t, signal)
    for tr in trajs:  # groups index the step's questions, this round's after the earlier rounds'
        tr.group += offset
    return {"recs": recs, "trajs": trajs, "rewards": rewards, "sums": sums, "times": times,
            "dropped": dropped, "cut": cut}


def train(cfg: Config, out: str | Path | None = None, resume: bool = False, steer=None, last_intact: bool = False) -> Path:
    """Run (or resume) one training stage; return the run folder.

    ``resume`` continues from the latest checkpoint, verified first (a damaged one is an error that
    names the file; ``last_intact`` takes the newest intact one instead). A config that differs from
    the checkpoint's is a warning, or an error for keys the checkpoint fixes (``rl/runfiles.RESUME_FIXED``);
    ``config.yaml`` keeps the run's original config.

    ``steer`` (tests and benchmarks only) forces chosen policy tokens through the real rollout
    engine (``rollout/steer.py``), e.g. to make a tiny random model search.
    """
    from r1searcher.rollout.steer import training_arms

    run = Run.open(cfg, out, resume=resume, last_intact=last_intact, steer=steer)
    t, par, model = cfg.train, run.par, run.model
    # the training rollouts only, never the held-out slice
    explore, arm_of = training_arms(run.tokenizer, cfg.rollout.n_samples, t, steer)
    temperature, kl_on = cfg.rollout.temperature, t.kl_coef > 0
    for step in range(run.start, t.max_steps):
        if step == run.start and not run.first_step_fits():  # a resume: does its first step fit in what is left?
            break
        t0 = time.perf_counter()
        # 1–4. questions → rollouts → rewards → what the update leaves out; with train.fill_groups, further
        # batches of questions until enough groups carry signal (DAPO's dynamic sampling)
        recs, trajs, rewards, sums, times, dropped, cut, rounds = [], [], torch.zeros(0), {}, {}, 0, 0, 0
        while True:
            b = sample_round(run, cfg, step, rounds, explore, arm_of, offset=len(recs))
            recs, trajs, rewards = recs + b["recs"], trajs + b["trajs"], torch.cat([rewards, b["rewards"]])
            sums = {k: sums.get(k, 0.0) + b["sums"].get(k, 0.0) for k in sums.keys() | b["sums"].keys()}
            times = {k: times.get(k, 0.0) + v for k, v in b["times"].items()}
            dropped, cut, rounds = dropped + b["dropped"], cut + b["cut"], rounds + 1
            if not t.fill_groups or rounds > t.fill_rounds:
                break
            if par.reduce({"g": float(len({tr.group for tr in trajs}))}).get("g", 0.0) >= t.fill_groups:
                break
        # 5. reference log-probs (KL), only when kl_coef > 0
        t2 = time.perf_counter()
        ref_logp = None
        if kl_on:
            ref_logp = reference_logprobs(model, run.ref_model, trajs, run.pad_id, temperature, t.micro_batch_size, par)
        times["sec_reference"] = time.perf_counter() - t2
        # 6. advantages + micro-batched update + optimizer step
        upd = policy_update(model, run.optimizer, trajs, rewards, t, pad_id=run.pad_id, temperature=temperature,
                            ref_logp=ref_logp, par=par, tokenizer=run.tokenizer)
        lr = run.step_lr(time.perf_counter() - t0)
        grad_norm, times["sec_fwd_bwd"] = upd.pop("grad_norm"), upd.pop("sec_fwd_bwd")
        # 7. the step's record (statistics summed over ranks)
        sums = par.reduce(sums)
        upd = par.reduce(upd) | {"grad_norm": grad_norm}
        counts = par.reduce({"d": dropped, "c": cut})
        dropped = int(counts.get("d", 0))
        times["seconds"] = time.perf_counter() - t0
        rec = run.add_step(step_record(step + 1, sums, upd, times, lr, dropped, kl_on))
        if t.fill_groups:
            rec["sample_rounds"] = rounds
        if t.drop_truncated:
            rec["length_cut_dropped"] = int(counts.get("c", 0))
        # 8. stop? (the goal reached, no time for the next step, or max_steps); evaluate, log
        eval_due, save_due = run.due(step + 1)
        stop_reason = run.stop_reason(step + 1, eval_due, save_due)
        if run.heldout and (eval_due or (stop_reason and t.eval_at_end)):
            rec.update(run.evaluate(step + 1))
        run.log(rec, trajs, rewards.tolist(), recs, stop_reason)
        # 9. checkpoint (also when the time budget is spent or the goal is met: the last step always leaves one)
        if save_due or stop_reason:
            run.save(step + 1)
        if stop_reason:
            par.say(f"stopping after step {step + 1}: {stop_reason}")
            break
    run.close()
    return run.dir
