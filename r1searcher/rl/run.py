"""A training run: everything the loop in ``rl/trainer.train`` uses but does not compute.

:meth:`Run.open` does the setup in order (the order fixes the random streams, so a resumed run
continues bit for bit): join the process group, find the checkpoint to resume (verified), seed,
write ``config.yaml``, load the questions, the policy (and the frozen reference), its checkpoint
weights, shard it, build the optimizer and LR schedule, open the retriever and the rollout engine,
restore the optimizer, schedule, RNG and data position, drop log lines a resume replays, open the
trackers, the stopping rules, the clock and the held-out slice.

During the loop the run owns what is written and decided around a step: the log line
(``log.jsonl``, ``samples.jsonl``, trackers, progress bar), the held-out evaluations, when to stop
(``train.stop_when``, the time budget, ``max_steps``), and checkpoints. The run folder::

    RUN/config.yaml                 the config the run started with
    RUN/config.resume-step_N.yaml   a resume's changed config (``rl/runfiles.py``)
    RUN/log.jsonl                   one line per optimizer step (``trainer.step_record``)
    RUN/samples.jsonl               the first ``train.log_samples`` trajectories of each step
    RUN/eval.jsonl                  the held-out slice (``rl/heldout.py``)
    RUN/best/                       with ``train.keep_best``: the best policy on the slice (``rl/best.py``)
    RUN/checkpoints/step_N/         ``rl/checkpoint.py``; read back through ``r1searcher/models/runs.py``
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml

from r1searcher.config import Config, ConfigError, TrainConfig
from r1searcher.rl.best import BEST, RECORD, is_better, read_best, write_best
from r1searcher.rl.checkpoint import (load_checkpoint, load_model_weights, resume_checkpoint, save_checkpoint,
                                      save_model_folder, seed_everything)
from r1searcher.rl.heldout import load_heldout, run_heldout
from r1searcher.rl.parallel import Parallel
from r1searcher.rl.runfiles import check_resume_config, read_log, truncate_log
from r1searcher.util.files import append_jsonl
from r1searcher.rl.stopping import Condition, StepClock, parse_conditions, should_stop
from r1searcher.rl.samples import sample_record
from r1searcher.models.runs import latest_checkpoint, resolve_model_dir


class QuestionSampler:
    """Endless epochs over ``n`` questions, each a permutation seeded by (seed, epoch); resumable.

    ``strata`` (one label per question, ``data.stratify_by``): each epoch shuffles every stratum
    apart and interleaves them so that any run of consecutive questions holds each stratum in
    proportion to its size (the one furthest behind its share goes next). Why: a step whose
    questions were all 2-hop (or all 1-hop) moved the one search-or-answer habit the policy has for
    every question, and a few such steps in a row undid what the others taught. Mixed steps alone did
    not make the demo's policy conditional (seed 2 still learned one search for every question), so
    the demo leaves it off (BENCHMARKS.md, "Steps that mix the hops").
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, strata: list | None = None):
        if n <= 0:
            raise ValueError("no training questions")
        if strata is not None and len(strata) != n:
            raise ValueError(f"{len(strata)} stratum labels for {n} questions")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.strata = strata
        self.epoch, self.pos = 0, 0

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.strata is None:
            return torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
        groups: dict = {}
        for i, label in enumerate(self.strata):
            groups.setdefault(label, []).append(i)
        pools = list(groups.values())  # in order of first appearance: deterministic
        if self.shuffle:
            pools = [[p[j] for j in torch.randperm(len(p), generator=g).tolist()] for p in pools]
        return interleave(pools)

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


def interleave(pools: list[list[int]]) -> list[int]:
    """All items of ``pools``, each pool's in its own order, merged so that every prefix holds each
    pool in proportion to its size: the next item comes from the pool furthest behind its share
    (ties to the earlier pool). ``[[0, 1], [2, 3, 4, 5]]`` → ``[2, 0, 3, 4, 1, 5]``."""
    total = sum(len(p) for p in pools)
    taken = [0] * len(pools)
    out: list[int] = []
    for i in range(total):
        behind = [(i + 1) * len(p) / total - taken[j] if taken[j] < len(p) else -math.inf
                  for j, p in enumerate(pools)]
        j = max(range(len(pools)), key=lambda j: (behind[j], -j))
        out.append(pools[j][taken[j]])
        taken[j] += 1
    return out


def strata_of(records: list, field: str) -> list | None:
    """Each record's ``field`` (from its extra fields) as its stratum, or None when ``field`` is ''.
    Raises ConfigError when no record has the field (a misspelt key would silently do nothing);
    records without it form a stratum of their own."""
    if not field:
        return None
    labels = [r.meta.get(field) for r in records]
    if all(x is None for x in labels):
        raise ConfigError(f"data.stratify_by: no training record has the field {field!r}")
    return [json.dumps(x, sort_keys=True) for x in labels]  # hashable, whatever the field holds


def lr_factor(step: int, t: TrainConfig, spent: float = 0.0) -> float:
    """LR multiplier at optimizer step ``step``: linear warmup, then constant, or cosine to
    min_lr_ratio over max_steps (``cosine``) or over the time budget (``cosine_time``: ``spent`` is
    the share of ``train.max_minutes`` used so far, 0..1)."""
    if step < t.warmup_steps:
        return (step + 1) / (t.warmup_steps + 1)
    if t.lr_schedule == "constant":  # else a cosine: train.lr_schedule is checked at load
        return 1.0
    if t.lr_schedule == "cosine_time":
        progress = min(1.0, max(0.0, spent))
    else:
        progress = min(1.0, (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))
    return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def load_models(cfg: Config):
    """The policy and its tokenizer (from ``train.init_from`` when set), and the frozen reference:
    a second copy when ``kl_coef > 0`` without LoRA (with LoRA the reference is the policy with its
    adapters disabled), else None."""
    from r1searcher.models.loading import load_policy

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


@dataclass
class Run:
    """One training stage's state and its run folder (built by :meth:`open`)."""

    cfg: Config
    dir: Path
    par: Parallel
    model: Any
    tokenizer: Any
    ref_model: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    engine: Any
    records: list
    sampler: QuestionSampler
    start: int = 0
    resumed: bool = False
    config_yaml: str = ""
    heldout: list = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    clock: StepClock = field(default_factory=StepClock)
    trackers: Any = None
    lr_spent: list = field(default_factory=lambda: [0.0])  # the scheduler's view of the time budget used
    bar: Any = None
    best: dict | None = None  # train.keep_best: RUN/best/best.json

    @classmethod
    def open(cls, cfg: Config, out: str | Path | None = None, *, resume: bool = False, last_intact: bool = False,
             steer=None) -> "Run":
        """Set up (or resume) a run in ``out`` (default ``cfg.out``); see the module docstring for the order."""
        from r1searcher.data.qa import load_qa, resolve_dataset
        from r1searcher.retrieval.index import open_retriever
        from r1searcher.rollout.engine import RolloutEngine

        t, folder = cfg.train, Path(out or cfg.out)
        par = Parallel.start(cfg.model.device, t.fsdp)
        _check_config(cfg, par)
        ckpt = _find_checkpoint(par, folder, resume, last_intact)
        seed_everything(t.seed + par.rank)
        cfg_yaml = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
        par.on_main(f"preparing {folder}", _prepare_folder, folder, ckpt, cfg, cfg_yaml)
        records = load_qa(resolve_dataset(cfg.data.path), on_error=cfg.data.on_error, limit=cfg.data.limit or None)
        sampler = QuestionSampler(len(records), t.seed, cfg.data.shuffle, strata_of(records, cfg.data.stratify_by))
        model, tok, ref_model = load_models(cfg)
        if ckpt is not None:  # weights first: a sharded model loads them before it is split
            load_model_weights(model, ckpt / "model")
        model = par.wrap(model)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
        spent = [0.0]  # share of the time budget used (lr_schedule=cosine_time), set by step_lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, t, spent[0]))
        engine = RolloutEngine(model, tok, open_retriever(cfg), cfg.rollout, cfg.retrieval, steer=steer)
        run = cls(cfg, folder, par, model, tok, ref_model, optimizer, scheduler, engine, records, sampler,
                  resumed=ckpt is not None, config_yaml=cfg_yaml, lr_spent=spent)
        state = run._restore(ckpt) if ckpt is not None else {}
        if resume and ckpt is None:
            par.say(f"no checkpoint in {folder}: starting from step 0")
        par.on_main(f"reading the logs in {folder}", _truncate_logs, folder, run.start)
        run._open_records(state)
        if run.heldout and run.start == 0 and cfg.train.eval_at_start:  # the starting point of the held-out curve
            run.evaluate(0)
        run.bar = _progress_bar(t, folder, run.start, run.clock.elapsed) if par.is_main and t.progress else None
        return run

    def _restore(self, ckpt: Path) -> dict:
        """Optimizer, schedule, this rank's RNG and the data position from ``ckpt``; its ``state.json``."""
        state = load_checkpoint(ckpt, model=None, optimizer=None, scheduler=self.scheduler, rank=self.par.rank)
        if state.get("world_size", 1) != self.par.world_size:
            raise ValueError(f"{ckpt} was written by {state['world_size']} ranks; resume with the same number")
        if state.get("fsdp", False) != self.par.sharded:
            raise ValueError(f"{ckpt} was written with train.fsdp={str(state.get('fsdp', False)).lower()}; resume with the same")
        self.par.load_optimizer(self.model, self.optimizer, ckpt / "optimizer.pt")
        self.start = state["step"]
        self.sampler.load_state_dict(state["sampler"])
        return state

    def _open_records(self, state: dict) -> None:
        """Trackers, stopping rules, the log so far, the clock and the held-out slice."""
        from r1searcher.rl.trackers import Trackers

        t = self.cfg.train
        self.trackers = Trackers(t.report_to if self.par.is_main else None, self.dir, self.cfg.to_dict(), self.start)
        self.conditions = parse_conditions(t.stop_when)
        self.history = read_log(self.dir / "log.jsonl") if self.start else []  # stop_when looks back over resumed steps
        self.clock = StepClock.from_state(state, self.history)  # seconds spent, what a step costs (train.max_minutes)
        self.clock.final_eval = bool(t.eval_every) and t.eval_at_end  # the last step is followed by the slice
        self.heldout = load_heldout(self.cfg) if t.eval_every > 0 else []
        if t.keep_best:
            self.best = self.par.on_main(f"reading {self.dir / BEST}", _open_best, self.dir, self.start)

    # ------------------------------------------------------------------ during the loop
    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def budget_s(self) -> float:
        return self.cfg.train.max_minutes * 60

    def step_lr(self, step_seconds: float) -> float:
        """Advance the lr schedule after an optimizer step; return the lr that step used. With
        ``cosine_time`` the next lr follows the share of the time budget spent, this step's
        ``step_seconds`` included."""
        lr = self.scheduler.get_last_lr()[0]
        if self.cfg.train.lr_schedule == "cosine_time":  # the ranks' mean: every rank must step the same lr
            share = (self.clock.elapsed + step_seconds) / self.budget_s
            self.lr_spent[0] = self.par.reduce({"spent": share})["spent"] / self.par.world_size
        self.scheduler.step()
        return lr

    def next_questions(self) -> list:
        """This rank's share of the step's questions (the same global batch on every rank)."""
        return [self.records[i] for i in self.par.share(self.sampler.next(self.cfg.train.questions_per_step))]

    def first_step_fits(self) -> bool:
        """False (saying why) when a resumed run has no time left for its next step; True otherwise."""
        if not self.resumed:
            return True
        why = self.clock.stop_before_next(self.budget_s)
        if self.par.any(why is not None):
            self.par.say(f"stopping before step {self.start + 1}: {why or 'the time budget is spent'}")
            return False
        return True

    def add_step(self, rec: dict) -> dict:
        """Count a finished step's record (its seconds, and the history ``stop_when`` reads); return it."""
        self.clock.add_step(rec["seconds"])
        self.history.append(rec)
        return rec

    def due(self, step: int) -> tuple[bool, bool]:
        """Whether a held-out evaluation and a checkpoint are due after ``step``."""
        t = self.cfg.train
        return bool(self.heldout) and step % t.eval_every == 0, step % max(t.save_every, 1) == 0

    def stop_reason(self, step: int, eval_due: bool, save_due: bool) -> str | None:
        """Why the stage ends after ``step`` (the same on every rank), or None to go on: the goal
        (``train.stop_when`` on the last steps' means), the time budget (the next step, with the
        evaluation and checkpoint due before it, would not fit), or ``max_steps``."""
        t, par = self.cfg.train, self.par
        goal_met, means = should_stop(self.history, self.conditions, t.stop_window)
        goal_met = par.any(goal_met)
        no_time = self.clock.stop_before_next(self.budget_s, eval_due, save_due) if step < t.max_steps else None
        no_time = (no_time or "another rank's time budget is spent") if par.any(no_time is not None) else None
        if goal_met:
            held = ", ".join(f"{c.key} {means[c.key]:.3f}" for c in self.conditions)
            return f"stop_when met (mean of the last {t.stop_window} steps: {held})"
        if no_time:
            return no_time
        return f"max_steps ({t.max_steps}) reached" if step == t.max_steps else None

    def evaluate(self, step: int) -> dict:
        """The held-out slice at ``step`` (appended to eval.jsonl); its numbers as ``heldout_*`` log keys."""
        ho = run_heldout(self.engine, self.model, self.heldout, self.cfg, self.par.dist, self.dir, step)
        self.clock.add_eval(ho["seconds"])
        if self.cfg.train.keep_best:
            self.keep_if_best(step, ho)
        return {f"heldout_{k}": v for k, v in ho.items() if k != "by_hops"}

    def keep_if_best(self, step: int, ho: dict) -> None:
        """``train.keep_best``: copy the policy to ``RUN/best`` when the slice's F1 at ``step`` is at
        least the best so far. Rank 0 holds the record and decides; every rank takes part in the copy
        (the weights are gathered where they are sharded)."""
        par = self.par
        better = par.any(bool(par.is_main and is_better(ho["f1"], self.best)))
        scores = {**(self.best or {}).get("scores", {}), str(step): ho["f1"]}
        if not better:
            if par.is_main:
                self.best = {**self.best, "scores": scores}
            par.on_main(f"writing {self.dir / BEST / RECORD}", _rewrite_best_record, self.dir, self.best)
            return
        t0 = time.perf_counter()
        model_state, _ = par.full_state(self.model, self.optimizer)
        record = {"step": step, "heldout_f1": ho["f1"], "heldout_n": ho["n"], "scores": scores}
        save = partial(save_model_folder, model=self.model, tokenizer=self.tokenizer, model_state=model_state)
        par.on_main(f"keeping the best policy in {self.dir / BEST}", write_best, self.dir, save, record)
        self.best = record if par.is_main else None
        self.clock.add_save(time.perf_counter() - t0)

    def log(self, rec: dict, trajs: list, rewards: list[float], recs: list, stop_reason: str | None) -> None:
        """Finish the step's record (clock, stop reason) and write it with its samples on rank 0:
        ``log.jsonl``, ``samples.jsonl``, the trackers, the progress bar."""
        rec["elapsed"] = round(self.clock.elapsed, 2)
        rec["expected_step_seconds"] = round(self.clock.expected_step(), 2)  # what the budget check counts a step at
        if stop_reason:
            rec["stop_reason"] = stop_reason
        self.par.on_main(f"writing the log of step {rec['step']}", self._write_step, rec, trajs, rewards, recs)

    def _write_step(self, rec: dict, trajs: list, rewards: list[float], recs: list) -> None:

        step, t = rec["step"], self.cfg.train
        samples = [sample_record(step, tr, r, recs[tr.group].answers, self.cfg.reward, self.tokenizer)
                   for tr, r in zip(trajs[: t.log_samples], rewards)]
        append_jsonl(self.dir / "log.jsonl", [rec], ensure_ascii=True)
        if samples:
            append_jsonl(self.dir / "samples.jsonl", samples)
        self.trackers.log(rec, samples)  # TensorBoard / wandb / Trackio mirrors
        if self.bar is not None:
            _advance(self.bar, t, step, self.clock.elapsed, rec)

    def save(self, step: int) -> Path:
        """Checkpoint ``step`` (every rank calls it; its seconds count in the clock)."""
        t0 = time.perf_counter()
        model_state, optim_state = self.par.full_state(self.model, self.optimizer)
        state = {"sampler": self.sampler.state_dict(), **self.clock.state(), "fsdp": self.par.sharded}
        path = save_checkpoint(self.dir, step, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                               state=state, config_yaml=self.config_yaml, tokenizer=self.tokenizer, rank=self.par.rank,
                               world_size=self.par.world_size, keep_last=self.cfg.train.keep_last, agree=self.par.agree,
                               model_state=model_state, optimizer_state=optim_state)
        self.clock.add_save(time.perf_counter() - t0)
        return path

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.trackers.close()


# --------------------------------------------------------------------------- setup steps


def _check_config(cfg: Config, par: Parallel) -> None:
    t = cfg.train
    if t.questions_per_step % par.world_size:
        raise ValueError(f"train.questions_per_step ({t.questions_per_step}) must divide evenly over {par.world_size} ranks")
    if t.lr_schedule == "cosine_time" and t.max_minutes <= 0:  # checked here: the demo sets the budget per stage
        raise ValueError("train.lr_schedule: cosine_time decays over the time budget and needs train.max_minutes > 0")
    if not cfg.data.path:
        raise ValueError("data.path is not set: name the training questions in the config or as data.path=FILE "
                         "(a QA JSONL, or a dataset name such as hotpotqa)")


def _find_checkpoint(par: Parallel, folder: Path, resume: bool, last_intact: bool) -> Path | None:
    """The checkpoint to resume from: rank 0 verifies it (and with ``last_intact`` moves damaged ones
    aside); the others take the latest after it. Without ``resume``, a folder with checkpoints is refused."""
    ckpt = None
    if resume:
        ckpt = par.on_main(f"resuming {folder}", resume_checkpoint, folder, last_intact)
        if not par.is_main:
            ckpt = latest_checkpoint(folder)
    if not resume and latest_checkpoint(folder) is not None:
        raise ValueError(f"{folder} already has checkpoints: pass --resume to continue it, or choose another --out")
    return ckpt


def _prepare_folder(folder: Path, ckpt: Path | None, cfg: Config, cfg_yaml: str) -> None:
    """Create the run folder and write ``config.yaml`` (a resume keeps it and checks the new config)."""
    folder.mkdir(parents=True, exist_ok=True)
    if ckpt is None or not (folder / "config.yaml").exists():
        (folder / "config.yaml").write_text(cfg_yaml)
    else:
        check_resume_config(folder, ckpt, cfg)


def _open_best(folder: Path, start: int) -> dict | None:
    """The kept best policy's record, without the slice scores of steps a resume runs again (they are
    scored again). A best kept at such a step stays: a resume continues bit for bit, so the step comes
    out the same, scores the same and, as a tie, is kept again."""
    best = read_best(folder)
    if best is not None:
        best["scores"] = {k: v for k, v in best.get("scores", {}).items() if int(k) <= start}
    return best


def _rewrite_best_record(folder: Path, record: dict) -> None:
    (folder / BEST / RECORD).write_text(json.dumps(record, indent=1))


def _truncate_logs(folder: Path, start: int) -> None:
    """Drop lines of steps after the checkpoint (or of a run killed before its first one)."""
    truncate_log(folder / "log.jsonl", start)
    truncate_log(folder / "samples.jsonl", start)
    truncate_log(folder / "eval.jsonl", start if start else -1)  # step 0 is evaluated again


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
