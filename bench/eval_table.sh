#!/usr/bin/env bash
# The four-methods × four-datasets table of BENCHMARKS.md ("Evaluation"), on CPU.
#   bash bench/eval_table.sh INDEX RL_MODEL OUT [LIMIT]
# INDEX: a BM25 index folder (or corpus JSONL) over ../shared/data/corpus/passages.jsonl;
# RL_MODEL: the trained policy for --method rl (a checkpoint's model folder, or a run folder);
# LIMIT: the first N questions of each dataset (default 100). Runs are resumable: re-run to continue.
# CPU settings (the paper evaluates with top-5 and 9 searches): top-3 passages of ≤60 words, ≤4 searches,
# ≤80 new tokens per turn, ≤320 response tokens, greedy.
set -euo pipefail
INDEX=$1; RL=$2; OUT=$3; LIMIT=${4:-100}
R=${R1SEARCHER:-.venv/bin/r1searcher}
DATA=(hotpotqa 2wiki musique bamboogle)
LIMITS=(-k 3 --batch-size 40 --limit "$LIMIT" rollout.max_searches=4 rollout.max_new_tokens_per_turn=80
        rollout.max_response_tokens=320 retrieval.max_doc_words=60)
for method in naive rag iterative; do
  "$R" eval --method "$method" --data "${DATA[@]}" --index "$INDEX" --out "$OUT/$method" "${LIMITS[@]}"
done
"$R" eval --method rl --model "$RL" --data "${DATA[@]}" --index "$INDEX" --out "$OUT/rl" "${LIMITS[@]}"
"$R" report "$OUT/naive" "$OUT/rag" "$OUT/iterative" "$OUT/rl" --out "$OUT/report"
