"""The training and rollout sections: model, retrieval, rollout, reward, data, train."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from r1searcher.settings.fields import Section, knob

ALGOS = ("reinforce_pp_baseline", "reinforce_pp", "grpo")
DTYPES = ("auto", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16")


@dataclass(frozen=True)
class ModelConfig(Section):
    SECTION: ClassVar[str] = "model"
    name: str = knob("smollm2", "'smollm2' (embedded), 'qwen-coder-0.5b' (opt-in wheels), or a local HF folder")
    dtype: str = knob("auto", "auto: bf16 on CUDA and on CPUs with AMX/AVX512-BF16 (not for full CPU fine-tuning), else fp32",
                      choices=DTYPES)
    device: str = knob("auto", "auto (CUDA when there is one, else CPU), or a torch device name")
    lora: bool = knob(False, "train LoRA adapters instead of every weight")
    lora_r: int = knob(16, "LoRA rank", ge=1)
    lora_alpha: int = knob(32, "LoRA alpha (scale = alpha / r)", ge=1)
    lora_layers: str = knob("all", "'all' or 'top:N' (adapt only the top N decoder layers)")
    cache_dir: str = knob("", "cache root for converted models and built indexes ('' = r1searcher.paths.cache_root(): "
                          "$R1SEARCHER_CACHE_DIR, else $XDG_CACHE_HOME/r1searcher, else ~/.cache/r1searcher)")


@dataclass(frozen=True)
class RetrievalConfig(Section):
    SECTION: ClassVar[str] = "retrieval"
    index: str = knob("", "folder of a saved index (bm25 / dense / hybrid), or a corpus JSONL (BM25 built once, cached)")
    server: str = knob("", "URL of a retrieval server (R1-Searcher /queries or Search-R1 /retrieve)")
    top_k: int = knob(3, "passages per search (paper: 3 in training, 5 in evaluation)", ge=1)
    max_doc_words: int = knob(100, "cap on each inserted passage's words", ge=1)
    timeout_s: float = knob(30.0, "seconds per request to a retrieval server", gt=0)
    retries: int = knob(3, "retries of a failed request to a retrieval server", ge=0)


@dataclass(frozen=True)
class RolloutConfig(Section):
    SECTION: ClassVar[str] = "rollout"
    n_samples: int = knob(4, "samples per question (a GRPO group)", ge=1)
    temperature: float = knob(1.0, "sampling temperature (> 0 unless greedy)", ge=0)
    top_p: float = knob(0.95, "nucleus sampling: keep the smallest token set of this probability", gt=0, le=1)
    greedy: bool = knob(False, "decode greedily (evaluation) instead of sampling")
    max_searches: int = knob(8, "searches per trajectory (paper: 8 in training, 9 in evaluation)", ge=0)
    max_new_tokens_per_turn: int = knob(512, "tokens the policy writes between two searches", ge=1)
    max_response_tokens: int = knob(4096, "policy + inserted tokens after the prompt", ge=1)
    prompt: str = knob("base", "'base' (User:/Assistant: <think>) or 'chat' (the tokenizer's template)",
                       choices=("base", "chat"))
    few_shot: bool = knob(True, "add worked examples to the instruction (rollout.shots)")
    shots: int = knob(2, "with few_shot: 1 = a 2-hop chain through a person; 2 = that and a 2-hop chain through a "
                      "place (city, then its country); 3 = a 1-hop example, then both (prompts.SHOTS)", choices=(1, 2, 3))
    batch_size: int = knob(32, "sequences decoded together", ge=1)
    end_at_answer: bool = knob(False, "beyond the paper: the end-of-turn token is never drawn, so a trajectory ends "
                               "with </answer> or at a cap (a chat model tends to end its turn right after the "
                               "documents, before any answer; recorded log-probs stay the full distribution's, as "
                               "with top-p); the direct baselines are not affected")
    sampler_quant: str = knob("none", "CPU, beyond the paper: 'int8' samples with the policy's frozen linear layers in "
                              "int8 (decode steps 1.5x (bf16) to 2.9x (fp32) faster; prompts, documents and greedy "
                              "evaluation still run the policy itself; models/quantize.py), 'none' the policy throughout", choices=("none", "int8"))
    on_retriever_error: str = knob("raise", "after retrieval.retries: 'raise' RetrieverError, or 'stop' (stop reason "
                                   "retriever_error)", choices=("raise", "stop"))
    seed: int = knob(0, "sampling seed")


@dataclass(frozen=True)
class RewardConfig(Section):
    SECTION: ClassVar[str] = "reward"
    stage: int = knob(2, "1: retrieval + format; 2: F1 − format penalty", choices=(1, 2))
    retrieval_reward: float = knob(0.5, "stage 1: reward for searching")
    format_reward: float = knob(0.5, "stage 1: reward for the answer format")
    answer_bonus: bool = knob(False, "stage 1: the released code's ±1 cover-EM term")
    format_penalty: float = knob(2.0, "stage 2: subtracted when the format breaks (paper/Qwen: 2; released Llama code: 1)")
    max_answer_words: int = knob(10, "the Qwen server's ≤10-word answer rule (0 = off)", ge=0)
    found_bonus: float = knob(0.0, "stage 2, beyond the paper: + this when a gold answer is in the retrieved documents "
                              "(0 = the paper's reward)")
    info_gain: float = knob(0.0, "stage 2, beyond the paper: + this × P(gold answer | the trajectory before its answer) "
                            "under the policy, IGPO's information gain summed over the searches (rl/info_gain.py; one "
                            "no-grad forward of the contexts per step; 0 = the paper's reward)", ge=0)


@dataclass(frozen=True)
class DataConfig(Section):
    SECTION: ClassVar[str] = "data"
    path: str = knob("", "training questions: a QA JSONL file or a dataset name")
    limit: int = knob(0, "use the first N questions (0 = all)", ge=0)
    on_error: str = knob("skip", "'skip' bad lines (reported) or 'fail'", choices=("skip", "fail"))
    shuffle: bool = knob(True, "shuffle the questions (seeded by train.seed)")
    stratify_by: str = knob("", "beyond the paper: a record field (e.g. hops); each step's questions mix its values "
                            "in proportion to their share of the data, so no update sees one kind alone "
                            "(rl/run.py QuestionSampler); '' = plain shuffle")


@dataclass(frozen=True)
class TrainConfig(Section):
    SECTION: ClassVar[str] = "train"
    algo: str = knob("reinforce_pp_baseline", "advantage estimator", choices=ALGOS)
    max_steps: int = knob(100, "policy updates", ge=0)
    max_minutes: float = knob(0.0, "stop (with a checkpoint) once this much training time is spent; 0 = no limit", ge=0)
    questions_per_step: int = knob(4, "questions per policy update (each sampled rollout.n_samples times)", ge=1)
    micro_batch_size: int = knob(4, "trajectories per forward/backward pass", ge=1)
    lr: float = knob(2e-6, "AdamW learning rate", ge=0)
    lr_schedule: str = knob("constant", "learning-rate schedule: constant; cosine to min_lr_ratio over max_steps; "
                            "cosine_time, the same over the time budget (train.max_minutes: each step's lr follows "
                            "the share of the budget spent)", choices=("constant", "cosine", "cosine_time"))
    warmup_steps: int = knob(0, "linear warm-up steps", ge=0)
    weight_decay: float = knob(0.0, "AdamW weight decay", ge=0)
    betas: list = knob(help="AdamW betas", factory=lambda: [0.9, 0.95])
    grad_clip: float = knob(1.0, "gradient norm clip (0 = off)", ge=0)
    clip_eps: float = knob(0.2, "PPO ratio clip", ge=0)
    kl_coef: float = knob(0.0, "KL penalty against the frozen reference (0 = no reference model)", ge=0)
    kl_estimator: str = knob("k1", "KL estimator", choices=("k1", "k2", "k3"))
    kl_in_reward: bool = knob(True, "the KL penalty goes into the reward (else into the loss)")
    drop_uniform_groups: bool = knob(False, "skip the backward of groups whose rewards are all equal (no signal)")
    uniform_tol: float = knob(1e-6, "with drop_uniform_groups: a group whose rewards span at most this counts as "
                              "uniform (with reward.info_gain every group differs a little, and GRPO's std would blow "
                              "a spread of 0.01 up to ±1)", ge=0)
    uniform_by: str = knob("reward", "with drop_uniform_groups, what must differ in a group for it to train: its "
                           "rewards, or (beyond the paper) its answers' F1 in stage 2: a group whose answers all score "
                           "alike differs only by the format penalty, which falls on the samples cut at the length or "
                           "search caps, so it teaches answering sooner (BENCHMARKS.md, \"Groups that differ only by "
                           "format\")", choices=("reward", "answer"))
    fill_groups: int = knob(0, "beyond the paper (DAPO's dynamic sampling): with drop_uniform_groups, roll out "
                            "further batches of questions_per_step questions until at least this many groups carry "
                            "signal, at most fill_rounds more batches a step (0 = off; log.jsonl sample_rounds)", ge=0)
    fill_rounds: int = knob(2, "with fill_groups: the further batches a step may roll out", ge=1)
    drop_truncated: bool = knob(False, "beyond the paper (DAPO's overlong filtering): leave trajectories cut by the "
                                "length caps (stop reason length) out of the update instead of giving them the format "
                                "penalty; log.jsonl length_cut_dropped counts them")
    protect_tags: bool = knob(False, "beyond the paper: the tokens of the query tags (<|begin_of_query|>, "
                              "<|end_of_query|>) keep positive advantages and get 0 for negative ones, so a penalised "
                              "sample that searched often cannot unlearn their spelling (rl/protect.py; BENCHMARKS.md, "
                              "\"Query tags that stay spelt\")")
    explore_share: float = knob(0.0, "beyond the paper: this share of each group's samples is made to open another "
                                "query after each of its first explore_searches − 1 searches (rollout/steer.py "
                                "ExploreSteer; 0 = off; on the demo it lowered held-out F1: BENCHMARKS.md)", ge=0, le=1)
    explore_searches: int = knob(2, "with explore_share: the searches an exploring sample makes at least", ge=2)
    explore_at: str = knob("turn", "with explore_share: open the extra query at the start of the turn after the "
                           "documents, or after that turn's first sentence", choices=("turn", "sentence"))
    stop_share: float = knob(0.0, "beyond the paper: this share of each group's samples (its first) is made to "
                             "close its thought after the first sentence that follows its stop_after-th documents "
                             "(rollout/steer.py StopSteer; 0 = off): every group then compares answering after one "
                             "search with searching on (on the demo the hop mix still set the policy's searches: "
                             "BENCHMARKS.md)", ge=0, le=1)
    stop_after: int = knob(1, "with stop_share: the searches after whose documents a stopping sample closes its "
                           "thought (2: every group compares answering after two searches with searching on)", ge=1)
    stop_spread: bool = knob(False, "with stop_share: the stopping samples answer after 1, 2, …, stop_after searches "
                             "in turn instead of all after stop_after (stop_after=2 and a quarter of 8: one answers "
                             "after its first documents, one after its second)")
    seed: int = knob(0, "seed of the data order and the model's new weights")
    save_every: int = knob(10, "checkpoint every N steps (and at the end)", ge=0)
    keep_last: int = knob(2, "checkpoints kept", ge=0)
    init_from: str = knob("", "checkpoint to start from (stage 2 from stage 1): a run, checkpoint or model folder")
    loss_agg: str = knob("seq-mean-token-mean", "seq-mean-token-mean (OpenRLHF, micro-batch 1) | token-mean",
                         choices=("seq-mean-token-mean", "token-mean"))
    min_lr_ratio: float = knob(0.1, "cosine decays to min_lr_ratio × lr (OpenRLHF cosine_with_min_lr)", ge=0, le=1)
    recompute_old_logprobs: bool = knob(False, "the PPO ratio's old log-probs from the training weights, not the sampler's "
                                         "(free without a reference model: the training forward's own, detached; "
                                         "else an extra no-grad forward)")
    gradient_checkpointing: bool = knob(False, "recompute activations in the backward (less memory, slower)")
    fsdp: bool = knob(False, "under torchrun: shard weights, gradients and AdamW state over ranks (FSDP2; rl/fsdp.py)")
    share_prompt: bool = knob(True, "encode each micro-batch's common token prefix once in the training forward (exact)")
    log_samples: int = knob(2, "trajectories per step written to samples.jsonl (0 = none)", ge=0)
    progress: bool = knob(True, "tqdm bar with live reward and searches (against the clock when max_minutes is set)")
    eval_every: int = knob(0, "greedy held-out evaluation every N steps, before the first and after the last (0 = off)",
                           ge=0)
    eval_data: str = knob("", "held-out questions for it (a QA file); results in RUN/eval.jsonl and log.jsonl heldout_*")
    eval_limit: int = knob(24, "the first N questions of eval_data: the same slice every time", ge=0)
    eval_at_start: bool = knob(True, "with eval_every: evaluate the slice before the first step too (the curve's start)")
    eval_at_end: bool = knob(True, "with eval_every: evaluate the slice after the last step too (off where a full "
                             "evaluation follows the stage, as in the demo)")
    keep_best: bool = knob(False, "with eval_every: keep the policy whose held-out slice F1 is best so far (ties: the "
                           "later step) in RUN/best/ (rl/best.py); the demo evaluates that one")
    stop_when: str = knob("", "end the stage once all hold on the mean of the last stop_window steps, e.g. "
                          "'frac_with_search>=0.8, reward_format>=0.4' (rl/stopping.py)")
    stop_window: int = knob(2, "steps averaged for stop_when", ge=1)
    report_to: Any = knob(help="trackers mirroring log.jsonl and samples live: tensorboard | wandb | trackio | none, a "
                          "list or a comma string (optional packages; WANDB_MODE=offline, Trackio's store is local)",
                          factory=list)
