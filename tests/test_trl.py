"""The TRL adapter on real parts: TRL 1.16's GRPOTrainer, the embedded SmolLM2-135M (a local
safetensors folder), a BM25 index over a tiny synthetic world, our rollout engine and rewards.

The trainer step is steered: sample 0 of each question searches once and answers (well formed,
stage-1 reward 1.0), sample 1 is drawn freely, so each group has a non-zero advantage."""

from __future__ import annotations

import os
import types

import pytest

pytest.importorskip("trl")

import torch  # noqa: E402

from r1searcher.config import RetrievalConfig, RewardConfig, RolloutConfig  # noqa: E402
from r1searcher.data.synthetic import generate_world  # noqa: E402
from r1searcher.integrations.trl import (  # noqa: E402
    R1RolloutFunc,
    group_rows,
    make_reward,
    qa_dataset,
    question_of,
    stage1_reward,
    stage2_reward,
)
from r1searcher.retrieval.base import Passage  # noqa: E402
from r1searcher.retrieval.bm25 import BM25Index  # noqa: E402
from r1searcher.rl.rewards import stage1_reward as plain_stage1  # noqa: E402
from r1searcher.rollout.steer import ScriptedSteer, script_tokens, search_script  # noqa: E402
from r1searcher.rollout.tags import DOCS_CLOSE, DOCS_OPEN  # noqa: E402

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture(scope="module")
def world_index():
    world = generate_world(entities=8, seed=0)
    passages = [Passage(p["id"], p["title"], p["text"]) for p in world.passages]
    return world, BM25Index.build(passages)


def _rollout_func(tok, index, world, **kw) -> R1RolloutFunc:
    q = world.train[0]
    script = script_tokens(tok, search_script(q.question.split()[-2:], q.answers[0], "Search.", 1))
    return R1RolloutFunc(
        index,
        RolloutConfig(max_new_tokens_per_turn=32, max_searches=2, few_shot=False, batch_size=8),
        RetrievalConfig(top_k=1, max_doc_words=20),
        steer=ScriptedSteer(lambda row: script if row.sample == 0 else ()),
        **kw,
    )


class ProbeTrainer:
    """Builds a GRPOTrainer subclass that records the loss inputs and d(loss)/d(per-token log-prob)."""

    @staticmethod
    def make(**kwargs):
        from trl import GRPOTrainer

        class Probe(GRPOTrainer):
            seen_inputs: list = []
            logp_grads: list = []

            def _compute_loss(self, model, inputs):
                self.seen_inputs.append({k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)})
                return super()._compute_loss(model, inputs)

            def _get_per_token_logps_and_entropies(self, *a, **k):
                logps, ent, aux = super()._get_per_token_logps_and_entropies(*a, **k)
                if logps.requires_grad:
                    logps.register_hook(lambda g: self.logp_grads.append(g.detach().clone()))
                return logps, ent, aux

        return Probe(**kwargs)


def test_one_grpo_step_masks_documents_and_logs_rewards(embedded_model_dir, smollm_tokenizer, world_index, tmp_path, one_thread):
    from trl import GRPOConfig

    world, index = world_index
    tok = smollm_tokenizer
    rf = _rollout_func(tok, index, world)
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=128, max_steps=1, learning_rate=1e-5, logging_steps=1, report_to="none",
        save_strategy="no", seed=0, bf16=False, gradient_checkpointing=False,
    )
    trainer = ProbeTrainer.make(
        model=str(embedded_model_dir), args=args, processing_class=tok,
        train_dataset=qa_dataset(world.train[:1]), reward_funcs=[stage1_reward], rollout_func=rf,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()

    trajs = rf.last_trajectories
    assert len(trajs) == 2 and rf.calls == 1
    # TRL repeated the prompt twice; the pair became one engine group (sample 0 steered, 1 free).
    assert [t.sample for t in trajs] == [0, 1]
    steered = [t for t in trajs if t.sample == 0]
    assert all(t.n_searches == 1 and t.stop_reason == "answer" for t in steered)

    (inputs,) = trainer.seen_inputs
    (grad,) = trainer.logp_grads
    cmask, tmask, ids = inputs["completion_mask"], inputs["tool_mask"], inputs["completion_ids"]
    doc = (cmask == 1) & (tmask == 0)
    pol = (cmask == 1) & (tmask == 1)
    # TRL shuffles rows after generation: find each trajectory's row by its token ids.
    rows = [next(r for r in range(len(ids)) if ids[r, : len(t.response_ids)].tolist() == t.response_ids) for t in trajs]
    assert sorted(rows) == [0, 1]
    # env_mask reached TRL unchanged: TRL's tool_mask is our loss mask (+ the mask-0 EOS after </answer>).
    for r, t in zip(rows, trajs):
        want = t.loss_mask + ([0] if t.stop_reason == "answer" else [])
        assert tmask[r, : len(want)].tolist() == want
    # The inserted tokens are the BM25 document block...
    r, t = rows[0], trajs[0]
    n = len(t.response_ids)
    block = tok.decode(ids[r, :n][doc[r, :n]].tolist())
    assert DOCS_OPEN in block and DOCS_CLOSE in block and t.passages[0][0].title in block
    assert int(doc.sum()) > 20
    # ...and they carry no loss: d(loss)/d(log-prob) is exactly 0 there, non-zero on policy tokens.
    assert torch.count_nonzero(grad[doc]) == 0
    assert torch.count_nonzero(grad[pol]) == int(pol.sum())

    # Rewards reached TRL: its logged mean is our stage-1 reward of these trajectories.
    ours = [plain_stage1(t.text, [], RewardConfig(stage=1))[0] for t in trajs]
    assert ours[0] == 1.0
    log = trainer.state.log_history[0]
    assert log["rewards/r1_stage1/mean"] == pytest.approx(sum(ours) / 2)
    assert log["r1/searches"] == pytest.approx(sum(t.n_searches for t in trajs) / 2)
    # TRL counts only env_mask-1 tokens as completion length.
    assert log["completions/mean_length"] == pytest.approx(sum(int(m.sum()) for m in tmask * cmask) / 2)
    # The optimizer step happened.
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def test_tools_and_rollout_func_together_are_refused(world_index):
    _, index = world_index
    rf = R1RolloutFunc(index)
    trainer = types.SimpleNamespace(tools=[lambda query: query])
    with pytest.raises(ValueError, match="ignores env_mask"):
        rf(["q"], trainer)


def test_unsupported_sampling_settings_raise(world_index):
    _, index = world_index
    rf = R1RolloutFunc(index, RolloutConfig(max_new_tokens_per_turn=512))
    args = types.SimpleNamespace(top_k=0, min_p=None, repetition_penalty=1.0, use_vllm=False,
                                 temperature=0.7, top_p=0.9, max_completion_length=64)
    cfg = rf.engine_config(args)
    assert (cfg.temperature, cfg.top_p, cfg.max_response_tokens, cfg.max_new_tokens_per_turn) == (0.7, 0.9, 64, 64)
    with pytest.raises(ValueError, match="top_k"):
        rf.engine_config(types.SimpleNamespace(**{**vars(args), "top_k": 50}))


def test_grouping_puts_each_trajectory_back_on_its_row(smollm_tokenizer, tiny_model_factory, world_index, one_thread):
    """Interleaved duplicates and unequal group sizes (a process holding part of a group)."""
    from r1searcher.rollout.engine import RolloutEngine

    _, index = world_index
    model = tiny_model_factory(smollm_tokenizer)
    cfg = RolloutConfig(max_new_tokens_per_turn=3, max_response_tokens=3, few_shot=False)
    engine = RolloutEngine(model, smollm_tokenizer, index, cfg)
    rows = ["A?", "B?", "A?", "C?", "A?", "B?"]
    assert group_rows(rows) == [("A?", [0, 2, 4]), ("B?", [1, 5]), ("C?", [3])]
    for grouped in (True, False):
        trajs = R1RolloutFunc(index, cfg, group_prompts=grouped).generate(engine, rows, seed=0)
        assert [t.question for t in trajs] == rows
        if grouped:  # samples of one question are distinct samples of one group
            assert sorted(trajs[i].sample for i in (0, 2, 4)) == [0, 1, 2]
        texts = [f"Question: {q}\nAnswer:" for q in rows]  # R1RolloutFunc(prompt_text=...)
        trajs = R1RolloutFunc(index, cfg, group_prompts=grouped).generate(engine, rows, seed=0, texts=texts)
        assert [t.prompt_ids for t in trajs] == [smollm_tokenizer.encode(x, add_special_tokens=False) for x in texts]


def test_reward_functions_read_trajectory_text_and_gold_columns():
    good = " x <|begin_of_query|> a <|end_of_query|>\n\n<|begin_of_documents|>\n(1) T: t\n<|end_of_documents|>\n\n y </think>\n\n<answer> Norland </answer>"
    logged = {}
    r1 = stage1_reward(["q"], ["ignored"], r1_text=[good], r1_n_searches=[1], r1_stop_reason=["answer"],
                       log_metric=logged.__setitem__)
    assert r1 == [1.0] and logged == {"r1/searches": 1.0, "r1/answered": 1.0}
    assert stage2_reward(["q"], ["ignored"], r1_text=[good], answers=[["Norland"]]) == [1.0]
    assert stage2_reward(["q"], [[{"role": "assistant", "content": good}]], answer=["Kelvara"]) == [0.0]
    with pytest.raises(KeyError, match="answers"):
        stage2_reward(["q"], [good])
    assert stage1_reward.__name__ == "r1_stage1" and make_reward(2).__name__ == "r1_stage2"
    assert question_of([{"role": "system", "content": "s"}, {"role": "user", "content": "Who?"}]) == "Who?"
    ds = qa_dataset([{"question": "Who?", "answer": "Ann"}])
    assert ds[0] == {"prompt": "Who?", "answers": ["Ann"]}
