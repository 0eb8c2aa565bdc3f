"""Batched multi-turn rollouts: generate, pause at a query, retrieve for the whole batch, insert, resume.

One function for training and evaluation; they differ only by config (``n``, ``greedy``, ``top_k``).

Per chunk of questions (``cfg.batch_size`` sequences at most), rounds::

    prefill the prompts once per group (shared instruction prefix once for all) → expand × n
    round r:
        decode every active row one token per step until each stops:
            </answer> → answer   EOS → eos   token limits → length
            <|end_of_query|> → max_searches (limit reached) | empty_query | pause (keeps its cache)
          finished and paused rows leave the decoding batch at once
        ONE Retriever.search call with every paused row's query (deduplicated)
        append [the row's last sampled token + its document block] to each paused row's cache in
        one padded forward pass; those rows are the next round's active rows

What ends up in a trajectory::

    response_ids  … policy turn … <|end_of_query|> | \\n\\n<|begin_of_documents|>\\n(1) …<|end_of_documents|>\\n\\n | … </answer>
    loss_mask     1 1 1 …              1           | 0 0 0 …                                              0   | 1 1 …   1
    logprobs      log_softmax(logits/T)[tok] …     | 0.0 …                                                    | …

Policy tokens are kept exactly as sampled (never decoded and re-tokenised); each inserted block is
tokenised on its own and appended, so the mask is exact for any tokenizer. See ``stops.py`` for stop
strings that end inside a token.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from r1searcher.config import RetrievalConfig, RolloutConfig
from r1searcher.rollout.prompts import build_prompt
from r1searcher.retrieval.base import Passage, Retriever, RetrieverError
from r1searcher.rollout.generator import Generator, HFGenerator
from r1searcher.rollout.row import RowState
from r1searcher.rollout.sampler import SamplingParams
from r1searcher.rollout.steer import Steer
from r1searcher.rollout.stops import StopMatcher, document_block
from r1searcher.rollout.trajectory import Trajectory

_CONTINUE, _PAUSE, _DONE = 0, 1, 2


@dataclass
class RolloutStats:
    """Counts of the last :meth:`RolloutEngine.rollout` call (for logs and benchmarks)."""

    sequences: int = 0
    rounds: int = 0  # rounds that ended with a retrieval call
    retrieval_calls: int = 0  # successful Retriever.search calls
    retrieval_failures: int = 0  # failed attempts (retried or not)
    queries: int = 0  # queries sent (after deduplication)
    searches: int = 0  # document blocks inserted
    decode_steps: int = 0
    policy_tokens: int = 0
    inserted_tokens: int = 0
    prompt_tokens: int = 0
    wall_s: float = 0.0
    retrieval_s: float = 0.0


def encode_prompt(tokenizer, text: str, style: str = "base") -> list[int]:
    """Prompt ids; the base prompt gets the BOS token when the tokenizer normally adds one."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if style == "base" and tokenizer.bos_token_id is not None:
        probe = tokenizer.encode("a", add_special_tokens=True)
        if probe and probe[0] == tokenizer.bos_token_id:
            ids = [tokenizer.bos_token_id] + ids
    return ids


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for v in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    return ids


def _ends_first_line(tokenizer, turn: list[int]) -> bool:
    """True once the turn holds a line break after some non-blank text."""
    if "\n" not in tokenizer.decode(turn[-4:], skip_special_tokens=True):  # cheap test on the newest tokens
        return False
    return "\n" in tokenizer.decode(turn, skip_special_tokens=True).lstrip()


class RolloutEngine:
    """Search-while-reasoning rollouts over a policy ``model`` and a ``retriever``.

    ``on_retriever_error``: ``"raise"`` (default) raises :class:`RetrieverError` once
    ``retrieval_cfg.retries`` retries have failed; ``"stop"`` ends the affected trajectories with
    stop reason ``retriever_error`` instead. ``steer`` forces tokens (tests/benchmarks, see
    ``steer.py``). ``generator`` replaces the transformers backend.
    """

    def __init__(
        self,
        model,
        tokenizer,
        retriever: Retriever,
        cfg: RolloutConfig,
        retrieval_cfg: RetrievalConfig | None = None,
        *,
        generator: Generator | None = None,
        steer: Steer | None = None,
        on_retriever_error: str | None = None,
        retry_backoff_s: float = 0.5,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.retriever = retriever
        self.cfg = cfg
        self.retrieval_cfg = retrieval_cfg or RetrievalConfig()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # rollout.sampler_quant=int8: the int8 decoder is built at the first sampled rollout (10 s for the
        # 0.5B model), so an engine that only evaluates (greedy, exact) never pays for it
        self._int8_sampler = generator is None and getattr(cfg, "sampler_quant", "none") == "int8"
        self.generator: Generator = generator or HFGenerator(model, pad_token_id=pad or 0)
        self.steer = steer
        self._steer = steer  # this call's: rollout(steer=...) replaces it for one call
        self.on_retriever_error = on_retriever_error or getattr(cfg, "on_retriever_error", "raise")
        if self.on_retriever_error not in ("raise", "stop"):
            raise ValueError(f"on_retriever_error must be 'raise' or 'stop', got {self.on_retriever_error!r}")
        self.retry_backoff_s = retry_backoff_s
        self.matcher = StopMatcher(tokenizer)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.stats = RolloutStats()
        self._max_searches = cfg.max_searches
        self._max_response = cfg.max_response_tokens
        self._stop_at_newline = False
        # rollout.* >= 1 and retrieval.top_k >= 1 hold: the config sections check their fields when made

    # ------------------------------------------------------------------ public API
    def prompt_ids(self, question: str) -> list[int]:
        text = build_prompt(question, style=self.cfg.prompt, tokenizer=self.tokenizer, few_shot=self.cfg.few_shot,
                            shots=self.cfg.shots)
        return encode_prompt(self.tokenizer, text, self.cfg.prompt)

    def rollout(
        self,
        questions: list[str],
        n: int | None = None,
        greedy: bool | None = None,
        seed: int | None = None,
        *,
        prompts: list[str] | None = None,
        max_searches: int | None = None,
        max_new_tokens: int | None = None,
        stop_at_newline: bool = False,
        steer: Steer | None = None,
        end_at_answer: bool | None = None,
    ) -> list[Trajectory]:
        """``len(questions) * n`` trajectories; question i's samples at ``[i*n, (i+1)*n)``, ``group == i``.

        ``n``, ``greedy``, ``seed`` default to the config. ``prompts`` (one full prompt text per
        question) replaces the configured prompt template, e.g. for the evaluation baselines;
        ``max_searches`` overrides ``cfg.max_searches`` for this call (0: the first query ends the
        trajectory with ``max_searches``); ``max_new_tokens`` caps the response of this call (the
        direct baselines' short answers); ``stop_at_newline`` ends a row (``eos``) at the first line
        break after some text (a base model's one-line answer). ``steer`` replaces the engine's steer
        for this call (the training loop's exploration, ``ExploreSteer``). ``end_at_answer`` overrides
        ``cfg.end_at_answer`` (the direct baselines answer in plain text and end with the end-of-turn token).
        """
        if isinstance(questions, str):
            raise TypeError("rollout takes a list of questions, not one string")
        n = self.cfg.n_samples if n is None else n
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if prompts is not None and len(prompts) != len(questions):
            raise ValueError(f"got {len(prompts)} prompts for {len(questions)} questions")
        greedy = self.cfg.greedy if greedy is None else greedy
        if self._int8_sampler:  # sampling only; evaluation is exact
            if not greedy and self.generator.decoder is None:
                from r1searcher.models.quantize import int8_shadow

                self.generator.decoder = int8_shadow(self.model)
            self.generator.use_decoder = not greedy
        end_at_answer = self.cfg.end_at_answer if end_at_answer is None else end_at_answer
        params = SamplingParams(temperature=self.cfg.temperature, top_p=self.cfg.top_p, greedy=greedy,
                                banned=self.banned_tokens(end_at_answer))
        device = getattr(self.generator, "device", torch.device("cpu"))
        rng = torch.Generator(device=device).manual_seed(self.cfg.seed if seed is None else seed)
        self._max_searches = self.cfg.max_searches if max_searches is None else max_searches
        self._max_response = self.cfg.max_response_tokens if max_new_tokens is None else min(
            max_new_tokens, self.cfg.max_response_tokens)
        self._stop_at_newline = stop_at_newline
        self._steer = self.steer if steer is None else steer
        self.stats = RolloutStats(sequences=len(questions) * n)
        t0 = time.perf_counter()
        per_chunk = max(1, self.cfg.batch_size // n)
        out: list[Trajectory] = []
        was_training = getattr(self.model, "training", False)
        self.model.eval()  # no dropout: recorded log-probs must be the policy's
        try:
            for start in range(0, len(questions), per_chunk):
                groups = list(enumerate(questions))[start : start + per_chunk]
                texts = None if prompts is None else prompts[start : start + per_chunk]
                out += [row.to_trajectory() for row in self._run_chunk(groups, n, params, rng, texts)]
        finally:
            self.model.train(was_training)
        self.stats.wall_s = time.perf_counter() - t0
        return out

    def banned_tokens(self, end_at_answer: bool) -> tuple[int, ...]:
        """Tokens sampling never draws: the end-of-turn tokens under ``rollout.end_at_answer``."""
        return tuple(sorted(self.eos_ids)) if end_at_answer else ()

    # ------------------------------------------------------------------ the loop
    def _run_chunk(
        self,
        groups: list[tuple[int, str]],
        n: int,
        params: SamplingParams,
        rng: torch.Generator,
        texts: list[str] | None = None,
    ) -> list[RowState]:
        gen = self.generator
        if texts is None:
            prompts = [self.prompt_ids(q) for _, q in groups]
        else:
            prompts = [encode_prompt(self.tokenizer, t, self.cfg.prompt) for t in texts]
        rows = [
            RowState(group=g, sample=j, question=q, prompt_ids=p)
            for (g, q), p in zip(groups, prompts)
            for j in range(n)
        ]
        self.stats.prompt_tokens += sum(len(p) for p in prompts) * n
        state = gen.prefill(prompts, repeats=n)
        active = list(range(len(rows)))  # row index of each state row
        while active:
            parked_states, parked = [], []
            while active:  # decode until every active row stopped or paused
                forced = self._forced(rows, active)
                toks, lps = gen.sample(state, params, rng, forced)
                self.stats.decode_steps += 1
                keep: list[int] = []
                pause: list[int] = []
                for pos, (r, t, lp) in enumerate(zip(active, toks.tolist(), lps.tolist())):
                    rows[r].add_policy_token(t, lp)
                    if forced is not None and forced[pos] >= 0:
                        rows[r].n_forced += 1
                    outcome = self._after_token(rows[r], t)
                    (keep if outcome == _CONTINUE else pause if outcome == _PAUSE else []).append(pos)
                if pause:
                    parked_states.append(gen.select(state, pause))
                    parked += [active[p] for p in pause]
                if len(keep) < len(active):
                    state = gen.select(state, keep) if keep else None
                active = [active[p] for p in keep]
                if active:
                    gen.feed(state, toks[keep] if len(keep) < len(toks) else toks)
            if not parked:
                break
            state, active = self._insert_documents(rows, parked, parked_states)
        for row in rows:
            self.stats.policy_tokens += row.n_policy_tokens
            self.stats.inserted_tokens += row.n_inserted
        return rows

    def _forced(self, rows: list[RowState], active: list[int]) -> torch.Tensor | None:
        if self._steer is None:
            return None
        forced = [self._steer(rows[r]) for r in active]
        return torch.tensor([-1 if f is None else f for f in forced], dtype=torch.long)

    def _after_token(self, row: RowState, token: int) -> int:
        """Classify a row after its new token: continue, pause for retrieval, or done."""
        cfg = self.cfg
        if token in self.eos_ids:
            row.finish("eos", self.tokenizer)
            return _DONE
        match = self.matcher.check(row.turn)
        if match is not None:
            if match.kind == "answer":
                row.finish("answer", self.tokenizer)
                return _DONE
            if len(row.passages) >= self._max_searches:
                row.finish("max_searches", self.tokenizer)
                return _DONE
            query = self.matcher.query(row.turn, match)
            if not query:
                row.finish("empty_query", self.tokenizer)
                return _DONE
            if len(row.response_ids) >= self._max_response:
                row.finish("length", self.tokenizer)
                return _DONE
            row.pending_query, row.trailing = query, match.trailing
            return _PAUSE
        if self._stop_at_newline and _ends_first_line(self.tokenizer, row.turn):
            row.finish("eos", self.tokenizer)
            return _DONE
        if len(row.response_ids) >= self._max_response or len(row.turn) >= cfg.max_new_tokens_per_turn:
            row.finish("length", self.tokenizer)
            return _DONE
        return _CONTINUE

    def _insert_documents(self, rows: list[RowState], parked: list[int], parked_states: list) -> tuple:
        """Retrieve for every paused row in one call, append each block; return the next round's batch."""
        gen = self.generator
        queries = [rows[r].pending_query or "" for r in parked]
        results = self._retrieve(queries)
        self.stats.rounds += 1
        chunks: list[list[int]] = []
        survivors: list[int] = []
        for pos, r in enumerate(parked):
            row = rows[r]
            if results is None:
                row.finish("retriever_error", self.tokenizer)
                continue
            passages = results[pos]
            text = document_block(passages, self.retrieval_cfg.max_doc_words or None, row.trailing)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if len(row.response_ids) + len(ids) >= self._max_response:
                row.finish("length", self.tokenizer)
                continue
            last_token = row.response_ids[-1]  # sampled, not yet in the cache
            row.close_turn(self.tokenizer)
            row.queries.append(queries[pos])
            row.passages.append(passages)
            row.add_block(ids, text)
            row.pending_query = None
            self.stats.searches += 1
            chunks.append([last_token] + ids)
            survivors.append(pos)
        if not survivors:
            return None, []
        state = gen.concat(parked_states)
        if len(survivors) < len(parked):
            state = gen.select(state, survivors)
        gen.feed(state, chunks)
        return state, [parked[p] for p in survivors]

    def _retrieve(self, queries: list[str]) -> list[list[Passage]] | None:
        """One batched search (deduplicated queries), retried; None when it failed in "stop" mode."""
        uniq = list(dict.fromkeys(queries))
        k = self.retrieval_cfg.top_k
        attempts = self.retrieval_cfg.retries + 1
        last: Exception | None = None
        t0 = time.perf_counter()
        for attempt in range(attempts):
            try:
                results = self.retriever.search(uniq, k)
                if not isinstance(results, Sequence) or len(results) != len(uniq):
                    got = len(results) if isinstance(results, Sequence) else type(results).__name__
                    raise RetrieverError(f"retriever returned {got} result lists for {len(uniq)} queries")
                self.stats.retrieval_calls += 1
                self.stats.queries += len(uniq)
                self.stats.retrieval_s += time.perf_counter() - t0
                by_query = dict(zip(uniq, results))
                return [list(by_query[q])[:k] for q in queries]
            except Exception as e:  # noqa: BLE001 - any failure is retried, then reported
                last = e
                self.stats.retrieval_failures += 1
                if attempt + 1 < attempts and self.retry_backoff_s > 0:
                    time.sleep(self.retry_backoff_s * 2**attempt)
        self.stats.retrieval_s += time.perf_counter() - t0
        if self.on_retriever_error == "stop":
            return None
        raise RetrieverError(
            f"retrieval failed {attempts} time(s) for a batch of {len(uniq)} queries "
            f"(e.g. {uniq[0]!r}); last error: {type(last).__name__}: {last}. "
            "Set on_retriever_error='stop' to end those trajectories with stop reason 'retriever_error' instead."
        ) from last
