"""R1-Searcher rollouts and rewards for TRL's ``GRPOTrainer`` (contract checked on trl 1.16.0).

::

    from trl import GRPOConfig, GRPOTrainer
    from r1searcher.integrations.trl import R1RolloutFunc, qa_dataset, stage1_reward

    trainer = GRPOTrainer(
        model="path/to/safetensors-folder",
        args=GRPOConfig(num_generations=4, max_completion_length=512, ...),
        train_dataset=qa_dataset(records),       # columns: prompt (the bare question), answers
        reward_funcs=[stage1_reward],             # or stage2_reward
        rollout_func=R1RolloutFunc(retriever, RolloutConfig(...)),
    )                                             # and NOT tools=…: see below

What the rollout function returns, one entry per prompt row it received (TRL's contract)::

    prompt_ids      our prompt template around the question (the dataset's prompt is the bare question)
    completion_ids  the Trajectory's response_ids  [+ EOS after </answer>, see below]
    logprobs        the sampler's log-probs at temperature args.temperature (0.0 on inserted tokens)
    env_mask        the Trajectory's loss_mask: 1 = sampled by the policy, 0 = inserted document token.
                    TRL pops it as its tool_mask; its loss mask is completion_mask * env_mask.
    r1_text, r1_n_searches, r1_stop_reason    extra columns; TRL hands them to every reward function

Design choices (and why):

- ``tools=`` must not be passed as well: TRL 1.16 then runs its own tool loop, builds its own mask and
  silently drops ``env_mask``. The first call raises if the trainer has tools.
- Duplicated prompts. TRL's sampler has already repeated every prompt ``num_generations`` times when
  ``rollout_func`` is called (its docstring says otherwise). Equal prompts are grouped and each group
  is rolled out with ``n`` = its size, so the engine encodes each prompt once and expands its KV cache
  × n; the trajectories go back to the rows they came from, so partial groups (a process holding part
  of a group) work too. ``group_prompts=False`` rolls out one sample per row (``r1searcher bench trl``
  measures both).
- Sampling follows ``GRPOConfig``: ``temperature``, ``top_p`` and ``max_completion_length`` (the cap on
  policy + inserted tokens, as in TRL's own tool loop) replace the rollout config's, because TRL
  recomputes log-probs at ``args.temperature``. ``top_k``, ``min_p`` and ``repetition_penalty`` are not
  implemented by our sampler and raise; ``generation_kwargs`` are not read. Per-turn cap, max searches,
  prompt style, few-shot and batch size come from :class:`RolloutConfig`.
- EOS after ``</answer>``. TRL counts a completion as truncated when its last token is not EOS or pad
  (``completions/clipped_ratio``, ``mask_truncated_completions``). The engine ends an answered
  trajectory at ``</answer>``, so EOS is appended with env_mask 0 (no loss, no log-prob): stop reason
  ``answer`` then reads as terminated, and ``length``/``max_searches``/``empty_query``/``retriever_error``
  as truncated, as in our own stop reasons.
- Seeds: call c on process p draws with ``rollout.seed + 1_000_003 * c + p``, so steps differ and
  processes differ, and a run is reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from r1searcher.config import RetrievalConfig, RewardConfig, RolloutConfig
from r1searcher.retrieval.base import Retriever
from r1searcher.rl.rewards import compute_reward
from r1searcher.rollout.engine import RolloutEngine, RolloutStats
from r1searcher.rollout.steer import Steer
from r1searcher.rollout.trajectory import Trajectory


def question_of(prompt: str | list[dict]) -> str:
    """The question in a TRL prompt: the string itself, or the last user message's text."""
    if isinstance(prompt, str):
        return prompt
    for msg in reversed(prompt):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, list):  # typed content blocks
                content = " ".join(b.get("text", "") for b in content if b.get("type") == "text")
            if isinstance(content, str):
                return content
    raise ValueError(f"no user message with text in prompt {prompt!r}")


def group_rows(keys: Sequence[str]) -> list[tuple[str, list[int]]]:
    """``[(key, rows)]`` in first-appearance order: the rows holding each distinct key."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return list(groups.items())


class R1RolloutFunc:
    """``rollout_func`` for ``GRPOTrainer``: our engine (KV kept across turns, one batched retrieval
    per round) over the trainer's own model. See the module docstring for the contract.

    ``rollout``/``retrieval``: engine and retrieval settings (top-k, words per passage, retries).
    ``prompt_text``: the full prompt text of a TRL prompt (e.g. a chat template with your own system
    message); by default our template (``rollout.prompt``, ``rollout.few_shot``) around the question.
    ``steer`` forces tokens through the real loop (tests and benchmarks only, see ``rollout/steer.py``);
    a steer sees ``row.group`` = the index of the distinct prompt in this call. After each call,
    ``last_trajectories`` (in row order) and ``last_stats`` hold what was produced.
    """

    def __init__(
        self,
        retriever: Retriever,
        rollout: RolloutConfig | None = None,
        retrieval: RetrievalConfig | None = None,
        *,
        group_prompts: bool = True,
        eos_after_answer: bool = True,
        steer: Steer | None = None,
        prompt_text: Callable[[Any], str] | None = None,
    ):
        self.retriever = retriever
        self.prompt_text = prompt_text
        self.rollout_cfg = rollout or RolloutConfig()
        self.retrieval_cfg = retrieval or RetrievalConfig()
        self.group_prompts = group_prompts
        self.eos_after_answer = eos_after_answer
        self.steer = steer
        self.calls = 0
        self.last_trajectories: list[Trajectory] = []
        self.last_stats = RolloutStats()

    # ------------------------------------------------------------------ config from the trainer
    def engine_config(self, args) -> RolloutConfig:
        """The rollout config with TRL's sampling settings and total-length cap applied."""
        for name, neutral in (("top_k", (0, None)), ("min_p", (None, 0.0)), ("repetition_penalty", (1.0, None))):
            if getattr(args, name, None) not in neutral:
                raise ValueError(
                    f"GRPOConfig.{name}={getattr(args, name)!r} is not supported by the r1searcher sampler "
                    "(temperature and top_p are); leave it at its default"
                )
        if getattr(args, "use_vllm", False):
            raise ValueError("R1RolloutFunc generates with the trainer's own model; set use_vllm=False")
        cfg = self.rollout_cfg
        max_total = args.max_completion_length or cfg.max_response_tokens
        return dataclasses.replace(
            cfg,
            temperature=args.temperature,
            top_p=args.top_p,
            greedy=False,
            max_response_tokens=max_total,
            max_new_tokens_per_turn=min(cfg.max_new_tokens_per_turn, max_total),
        )

    # ------------------------------------------------------------------ the call TRL makes
    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        if getattr(trainer, "tools", None):
            raise ValueError(
                "GRPOTrainer was given tools= as well as this rollout_func: TRL then runs its own tool loop, "
                "builds its own mask and ignores env_mask. Pass only rollout_func."
            )
        from trl.models.utils import unwrap_model_for_generation

        cfg = self.engine_config(trainer.args)
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        seed = cfg.seed + 1_000_003 * self.calls + trainer.accelerator.process_index
        self.calls += 1
        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=getattr(trainer.args, "ds3_gather_for_generation", True),
        ) as model:
            engine = RolloutEngine(model, tokenizer, self.retriever, cfg, self.retrieval_cfg, steer=self.steer)
            texts = None if self.prompt_text is None else [self.prompt_text(p) for p in prompts]
            trajs = self.generate(engine, [question_of(p) for p in prompts], seed, texts)
        self.last_trajectories = trajs
        self.last_stats = engine.stats
        return self.to_trl(trajs, tokenizer.eos_token_id)

    def generate(
        self, engine: RolloutEngine, questions: list[str], seed: int, texts: list[str] | None = None
    ) -> list[Trajectory]:
        """One trajectory per row, in row order (grouped or per row, see the module docstring);
        ``texts``: full prompt texts (default: the engine's template around each question)."""
        if not self.group_prompts:
            return engine.rollout(questions, n=1, seed=seed, prompts=texts)
        keys = questions if texts is None else [f"{q}\x00{t}" for q, t in zip(questions, texts)]
        out: list[Trajectory | None] = [None] * len(questions)
        by_size: dict[int, list[list[int]]] = {}
        for _, rows in group_rows(keys):
            by_size.setdefault(len(rows), []).append(rows)
        for k, (n, same) in enumerate(sorted(by_size.items())):  # one engine call per group size
            firsts = [rows[0] for rows in same]
            trajs = engine.rollout(
                [questions[i] for i in firsts], n=n, seed=seed + 7919 * k,
                prompts=None if texts is None else [texts[i] for i in firsts],
            )
            for g, rows in enumerate(same):
                for j, row in enumerate(rows):
                    out[row] = trajs[g * n + j]
        return out  # type: ignore[return-value]

    def to_trl(self, trajs: Iterable[Trajectory], eos_token_id: int | None) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in ("prompt_ids", "completion_ids", "logprobs", "env_mask",
                                                  "r1_text", "r1_n_searches", "r1_stop_reason")}
        for t in trajs:
            ids, lps, mask = list(t.response_ids), list(t.logprobs), list(t.loss_mask)
            if self.eos_after_answer and t.stop_reason == "answer" and eos_token_id is not None:
                ids.append(eos_token_id)
                lps.append(0.0)
                mask.append(0)
            out["prompt_ids"].append(list(t.prompt_ids))
            out["completion_ids"].append(ids)
            out["logprobs"].append(lps)
            out["env_mask"].append(mask)
            out["r1_text"].append(t.text)
            out["r1_n_searches"].append(t.n_searches)
            out["r1_stop_reason"].append(t.stop_reason)
        return out


# ---------------------------------------------------------------------- rewards
def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))


def _gold(i: int, kwargs: dict) -> list[str]:
    for key in ("answers", "answer"):
        col = kwargs.get(key)
        if col is not None:
            value = col[i]
            return [str(a) for a in value] if isinstance(value, (list, tuple)) else [str(value)]
    raise KeyError("the dataset needs an 'answers' (list of str) or 'answer' column for the R1 rewards")


def make_reward(stage: int, cfg: RewardConfig | None = None) -> Callable[..., list[float]]:
    """A TRL reward function (``prompts, completions, **columns -> list[float]``) computing our
    stage-``stage`` reward (``rewards.py``) on the trajectory text from ``R1RolloutFunc`` (documents
    in place); without it (another rollout), on TRL's decoded completion. Its ``__name__`` is
    ``r1_stage{stage}``, so TRL logs ``rewards/r1_stage{stage}/mean``; it also logs the mean number
    of searches (``r1/searches``) and the share of completions that gave an answer (``r1/answered``)."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    rcfg = dataclasses.replace(cfg or RewardConfig(), stage=stage)
    needs_gold = stage == 2 or rcfg.answer_bonus

    def reward(prompts, completions, r1_text=None, r1_n_searches=None, r1_stop_reason=None, log_metric=None, **kwargs):
        texts = list(r1_text) if r1_text is not None else [_completion_text(c) for c in completions]
        scores = []
        for i, text in enumerate(texts):
            answers = _gold(i, kwargs) if needs_gold else []  # stage 1 alone never reads them
            value, _ = compute_reward(text, answers, rcfg)
            scores.append(float(value))
        if log_metric is not None and r1_n_searches is not None and texts:
            log_metric("r1/searches", sum(r1_n_searches) / len(texts))
            log_metric("r1/answered", sum(s == "answer" for s in r1_stop_reason or []) / len(texts))
        return scores

    reward.__name__ = reward.__qualname__ = f"r1_stage{stage}"
    return reward


stage1_reward = make_reward(1)
stage2_reward = make_reward(2)


def qa_dataset(records: Iterable[Any]):
    """A ``datasets.Dataset`` for ``GRPOTrainer``: ``prompt`` = the question, ``answers`` = gold aliases.

    ``records``: :class:`~r1searcher.data.qa.QARecord`, synthetic ``Question``, or dicts with
    ``question`` and ``answers``/``answer``."""
    from datasets import Dataset

    rows = []
    for r in records:
        if isinstance(r, dict):
            q = r["question"]
            a = r.get("answers", r.get("answer"))
        else:
            q, a = r.question, r.answers
        rows.append({"prompt": q, "answers": [str(x) for x in (a if isinstance(a, (list, tuple)) else [a])]})
    return Dataset.from_list(rows)
