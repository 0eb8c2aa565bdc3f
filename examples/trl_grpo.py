"""Train a search agent with TRL's GRPOTrainer on r1searcher rollouts (trl 1.16).

    pip install trl==1.16.0
    python examples/trl_grpo.py --corpus corpus.jsonl --train train.jsonl --stage 1 --steps 20

Without --corpus/--train it makes a small synthetic world (r1searcher.data.synthetic), so it runs
offline on a laptop CPU with the embedded SmolLM2-135M. The rollout is r1searcher's engine (KV
kept across turns, one batched retrieval per round, inserted documents with env_mask 0); TRL does
the group advantages, the clipped loss, LoRA and logging. Do not pass tools= as well: TRL would then
build its own mask and ignore env_mask.
"""

from __future__ import annotations

import argparse
import os
import tempfile


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", help="embedded model name or a local safetensors folder")
    p.add_argument("--corpus", help="corpus JSONL (id, title, text / contents); BM25 is built and cached")
    p.add_argument("--train", help="QA JSONL (question, answers)")
    p.add_argument("--stage", type=int, default=1, choices=(1, 2), help="1: learn to search, 2: learn to answer")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--questions", type=int, default=2, help="distinct questions per step")
    p.add_argument("--group", type=int, default=4, help="completions per question (num_generations)")
    p.add_argument("--max-completion", type=int, default=384, help="policy + inserted tokens per completion")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters instead of every weight")
    p.add_argument("--out", default="", help="output folder (default: a temporary one)")
    args = p.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in TRL

    from trl import GRPOConfig, GRPOTrainer

    from r1searcher.config import RetrievalConfig, RolloutConfig, load_config
    from r1searcher.data.qa import load_qa
    from r1searcher.integrations.trl import R1RolloutFunc, qa_dataset, stage1_reward, stage2_reward
    from r1searcher.models.loading import load_tokenizer, resolve_model_path
    from r1searcher.retrieval.index import open_retriever

    out = args.out or tempfile.mkdtemp(prefix="trl-grpo-")
    corpus, train = args.corpus, args.train
    if not (corpus and train):
        from r1searcher.data.synthetic import generate_world

        paths = generate_world(entities=200, seed=0).save(os.path.join(out, "world"))
        corpus, train = str(paths["corpus"]), str(paths["train"])
    cfg = load_config(None, [f"retrieval.index={corpus}", "retrieval.top_k=3"])
    retriever = open_retriever(cfg)  # a corpus JSONL → BM25, built once and cached
    model_dir = resolve_model_path(args.model)  # TRL needs a local safetensors folder

    rollout_func = R1RolloutFunc(
        retriever,
        RolloutConfig(prompt="base", few_shot=True, max_searches=4, max_new_tokens_per_turn=128),
        RetrievalConfig(top_k=3, max_doc_words=60),
    )
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(
        model=str(model_dir),
        processing_class=load_tokenizer(model_dir),
        args=GRPOConfig(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.questions * args.group,
            num_generations=args.group,
            max_completion_length=args.max_completion,  # our engine's total cap (policy + documents)
            learning_rate=1e-5 if args.lora else 1e-6,
            temperature=1.0,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            gradient_checkpointing=False,
            bf16=False,
        ),
        train_dataset=qa_dataset(load_qa(train)),
        reward_funcs=[stage1_reward if args.stage == 1 else stage2_reward],
        rollout_func=rollout_func,
        peft_config=peft_config,
    )
    trainer.train()
    trainer.save_model(os.path.join(out, "model"))
    print(f"saved to {out}/model; last rollout: {rollout_func.last_stats}")


if __name__ == "__main__":
    main()
