"""The rollout engine as a service: rows join and leave one running batch (continuous batching).

:class:`ServingEngine` is :class:`~r1searcher.rollout.engine.RolloutEngine` with its own loop,
:meth:`ServingEngine.session`; the steps inside it are the engine's own (``_after_token`` for the
stops, ``_insert_documents`` for the batched retrieval and the document blocks, the generator's
``prefill`` / ``sample`` / ``feed`` / ``select`` / ``concat``). What the session does differently
from :meth:`RolloutEngine.rollout`, which runs a fixed batch until its last row ends:

* **admission**: between decode steps, requests that arrived are prefilled and their rows
  concatenated to the running batch (up to ``max_rows``), so a new request never waits for the
  longest request already running; the instruction all prompts share is encoded once per engine
  and copied (``rollout`` encodes it once per batch);
* **retrieval without a barrier**: paused rows are answered once no row is decoding, or when the
  first of them has waited ``retrieve_after_steps`` decode steps (which lets rows that pause close
  together share one retriever call), so a row that searches never waits for a batch-mate that
  writes on;
* **per-request limits**: after every token a row whose request was cancelled (client gone) or is
  past its deadline ends at once (stop reason ``length``; the job records ``cancelled`` /
  ``timeout``); each row gets its own request's ``max_searches`` and ``max_tokens`` (tokens the
  model wrote);
* **events**: ``search`` when a row pauses at ``<|end_of_query|>``, ``passages`` once its documents
  are inserted, and its trajectory the moment the row ends (``Job.finish``).

A session serves one sampling setting (the sampler takes one per step); it ends when no row is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import torch

from r1searcher.rollout.engine import _CONTINUE, _DONE, _PAUSE, RolloutEngine, RolloutStats
from r1searcher.rollout.row import RowState
from r1searcher.rollout.sampler import SamplingParams


class RowOwner(Protocol):
    """What the engine needs from the request a row serves (``batcher.Job``)."""

    question: str
    max_tokens: int
    max_searches: int
    deadline: float  # time.monotonic() after which the row ends
    cancelled: bool
    end_reason: str | None

    def emit(self, kind: str, payload: dict) -> None: ...

    def finish(self, trajectory, batch_size: int) -> None: ...


class ServingEngine(RolloutEngine):
    """``session(first_jobs, admit, ...)`` decodes requests' rows until none is left, admitting more
    through ``admit(free_rows)`` between steps."""

    def __init__(self, *args, max_rows: int = 8, retrieve_after_steps: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        if max_rows < 1 or retrieve_after_steps < 0:
            raise ValueError(f"max_rows must be >= 1 and retrieve_after_steps >= 0, got {max_rows}, {retrieve_after_steps}")
        self.max_rows, self.retrieve_after_steps = max_rows, retrieve_after_steps
        self.jobs: dict[int, RowOwner] = {}  # row id (RowState.group) → its request, while the row lives
        self._next_id = 0
        self._prefix_cache: tuple[list[int], object] | None = None
        self.counts = {"rows": 0, "decode_steps": 0, "decode_rows": 0, "timeouts": 0, "retrieval_calls": 0}

    # ------------------------------------------------------------------ the loop
    def session(self, first: list, admit: Callable[[int], list], *, greedy: bool, temperature: float,
                top_p: float, seed: int) -> None:
        """Serve ``first`` and whatever ``admit`` hands over until no row is left."""
        gen = self.generator
        params = SamplingParams(temperature=temperature, top_p=top_p, greedy=greedy,
                                banned=self.banned_tokens(self.cfg.end_at_answer))
        rng = torch.Generator(device=getattr(gen, "device", torch.device("cpu"))).manual_seed(seed)
        self._max_response, self._stop_at_newline = self.cfg.max_response_tokens, False
        self.stats = RolloutStats()
        rows: dict[int, RowState] = {}
        state, active = None, []  # active[i] is the row id of state row i
        parked: list[int] = []
        parked_states: list = []
        parked_at = step = 0
        new = list(first)
        was_training = getattr(self.model, "training", False)
        self.model.eval()
        try:
            while True:
                if new:
                    state, active = self._admit(new, rows, state, active)
                if not active and not parked:
                    break
                if active:
                    state, active, paused, paused_state = self._step(rows, state, active, params, rng)
                    step += 1
                    if paused:
                        parked_at = parked_at if parked else step
                        parked += paused
                        parked_states.append(paused_state)
                if parked and (not active or step - parked_at >= self.retrieve_after_steps):
                    back, survivors = self._insert_documents(rows, parked, parked_states)  # survivors: row ids
                    self.counts["retrieval_calls"] += 1
                    for r in set(parked) - set(survivors):
                        self._forget(rows, r)
                    if back is not None:
                        state = back if state is None else gen.concat([state, back])
                        active = active + survivors
                    parked, parked_states = [], []
                free = self.max_rows - len(active) - len(parked)
                new = admit(free) if free > 0 else []
        finally:
            self.model.train(was_training)
            for r in list(rows):  # an error: the rows still alive get nothing (the batcher reports it)
                self._forget(rows, r)

    def _admit(self, jobs: list, rows: dict, state, active: list) -> tuple:
        """Prefill the new requests' prompts and append their rows to the batch. The instruction
        that every prompt starts with is encoded once per engine (:meth:`_prefix`) and copied."""
        gen = self.generator
        prompts = [self.prompt_ids(j.question) for j in jobs]
        prefix, prefix_state = self._prefix()
        n = len(prefix)
        shared = [i for i, p in enumerate(prompts) if prefix_state is not None and len(p) > n and p[:n] == prefix]
        alone = [i for i in range(len(prompts)) if i not in set(shared)]
        parts = []
        if shared:
            part = gen.select(prefix_state, [0] * len(shared))
            gen.feed(part, [prompts[i][n:] for i in shared])
            parts.append(part)
        if alone:
            parts.append(gen.prefill([prompts[i] for i in alone]))
        ids = []
        for i in shared + alone:  # the order of the rows in the new state
            rid, self._next_id = self._next_id, self._next_id + 1
            self.jobs[rid] = jobs[i]
            rows[rid] = RowState(group=rid, sample=0, question=jobs[i].question, prompt_ids=prompts[i])
            ids.append(rid)
        self.counts["rows"] += len(jobs)
        self.stats.prompt_tokens += sum(len(p) for p in prompts)
        fresh = gen.concat(parts)
        return (fresh if state is None else gen.concat([state, fresh])), active + ids

    def _prefix(self) -> tuple[list[int], object]:
        """The token prefix every prompt shares (the instruction, the worked example), and its state
        (one row), made once; ``([], None)`` when prompts share fewer than 8 tokens."""
        if self._prefix_cache is None:
            a, b = self.prompt_ids("Alpha?"), self.prompt_ids("Zulu?")
            n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            n -= 1  # the last shared token may merge with a question's first characters: leave it out
            prefix = a[:n]
            self._prefix_cache = (prefix, self.generator.prefill([prefix]) if n >= 8 else None)
        return self._prefix_cache

    def _step(self, rows: dict, state, active: list, params, rng) -> tuple:
        """One decode step of every active row (as ``RolloutEngine._run_chunk``'s inner loop)."""
        gen = self.generator
        toks, lps = gen.sample(state, params, rng, self._forced(rows, active))
        self.stats.decode_steps += 1
        self.counts["decode_steps"] += 1
        self.counts["decode_rows"] += len(active)
        keep: list[int] = []
        pause: list[int] = []
        for pos, (r, t, lp) in enumerate(zip(active, toks.tolist(), lps.tolist())):
            rows[r].add_policy_token(t, lp)
            outcome = self._after_token(rows[r], t)
            if outcome == _CONTINUE:
                keep.append(pos)
            elif outcome == _PAUSE:
                pause.append(pos)
            else:
                self._forget(rows, r)
        paused_state = gen.select(state, pause) if pause else None
        if len(keep) < len(active):
            state = gen.select(state, keep) if keep else None
        if keep:
            gen.feed(state, toks[keep] if len(keep) < len(toks) else toks)
        return state, [active[p] for p in keep], [active[p] for p in pause], paused_state

    def _forget(self, rows: dict, r: int) -> None:
        row = rows.pop(r, None)
        self.jobs.pop(r, None)
        if row is not None:
            self.stats.policy_tokens += row.n_policy_tokens
            self.stats.inserted_tokens += row.n_inserted

    # ------------------------------------------------------------------ the engine's steps, per request
    def _after_token(self, row: RowState, token: int) -> int:
        job = self.jobs[row.group]
        if job.cancelled or time.monotonic() > job.deadline:
            if not job.cancelled and job.end_reason is None:
                self.counts["timeouts"] += 1
            job.end_reason = job.end_reason or ("cancelled" if job.cancelled else "timeout")
            row.finish("length", self.tokenizer)
            outcome = _DONE
        else:
            self._max_searches = job.max_searches  # read by the engine's query stop, for this row only
            outcome = super()._after_token(row, token)
            if outcome == _CONTINUE and row.n_policy_tokens >= job.max_tokens:
                row.finish("length", self.tokenizer)
                outcome = _DONE
        if outcome == _PAUSE:
            job.emit("search", {"index": len(row.passages), "query": row.pending_query})
        elif outcome == _DONE:
            job.finish(row.to_trajectory(), len(self.jobs))
        return outcome

    def _insert_documents(self, rows, parked: list[int], parked_states: list) -> tuple:
        before = {r: len(rows[r].passages) for r in parked}
        out = super()._insert_documents(rows, parked, parked_states)
        for r in parked:
            row, job = rows[r], self.jobs[r]
            if row.stop_reason is not None:  # ended here (length, retriever_error)
                job.finish(row.to_trajectory(), len(self.jobs))
            elif len(row.passages) > before[r]:
                job.emit("passages", {"index": before[r], "query": row.queries[-1],
                                      "passages": [p.to_dict() for p in row.passages[-1]]})
        return out
