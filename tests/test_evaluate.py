"""The eval harness: resumable without duplicates, bad lines reported, metrics round-trip."""

from __future__ import annotations

import json

import pytest

from r1searcher import cli
from r1searcher.config import RetrievalConfig, RolloutConfig
from r1searcher.data.synthetic import generate_world
from r1searcher.eval.evaluate import EvalSpec, evaluate_dataset, read_done
from r1searcher.retrieval.base import Passage
from r1searcher.retrieval.bm25 import BM25Index


@pytest.fixture(scope="module")
def world_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    paths = generate_world(24, seed=5).save(d)
    return paths


@pytest.fixture(scope="module")
def engine_and_index(world_files, smollm_tokenizer):
    from conftest import make_tiny_causal_lm
    from r1searcher.retrieval.corpus import read_passages
    from r1searcher.rollout.engine import RolloutEngine

    index = BM25Index.build(list(read_passages(world_files["corpus"])))
    model = make_tiny_causal_lm(smollm_tokenizer, seed=1)
    cfg = RolloutConfig(max_new_tokens_per_turn=12, max_response_tokens=48, few_shot=False)
    return RolloutEngine(model, smollm_tokenizer, index, cfg, RetrievalConfig(top_k=2)), index


class Interrupt(Exception):
    pass


class StopAfter:
    """The real engine, interrupted (like a kill) after ``n`` batches."""

    def __init__(self, engine, n):
        self.engine, self.n = engine, n

    def rollout(self, *a, **kw):
        if self.n == 0:
            raise Interrupt
        self.n -= 1
        return self.engine.rollout(*a, **kw)


@pytest.mark.parametrize("method", ["rl", "naive", "rag"])
def test_resume_after_interruption_writes_no_duplicate_and_loses_nothing(tmp_path, world_files, engine_and_index, method):
    engine, index = engine_and_index
    spec = EvalSpec(method=method, limit=10, batch_size=4, top_k=2)
    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        evaluate_dataset(StopAfter(engine, 1), index, world_files["heldout"], out, spec, progress=False)
    first = read_done(out / "predictions.jsonl")
    assert len(first) == 4
    # A torn line, as a kill during a write leaves it.
    with open(out / "predictions.jsonl", "a") as f:
        f.write('{"id": "torn", "quest')
    metrics = evaluate_dataset(engine, index, world_files["heldout"], out, spec, progress=False)
    rows = read_done(out / "predictions.jsonl")
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 10 == metrics["n"]
    assert rows[:4] == first
    assert json.loads((out / "metrics.json").read_text())["n"] == 10


def test_bad_lines_are_reported_and_the_rest_evaluated(tmp_path, world_files, engine_and_index):
    engine, index = engine_and_index
    lines = world_files["heldout"].read_text().splitlines()[:5]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], "{not json", json.dumps({"question": "no answer"}), *lines[1:]]) + "\n")
    metrics = evaluate_dataset(engine, index, bad, tmp_path / "out", EvalSpec(method="naive", batch_size=8), progress=False)
    assert metrics["n"] == 5
    assert metrics["bad_lines"] == 2


def test_predictions_round_trip_through_the_metrics_command(tmp_path, world_files, engine_and_index, capsys):
    engine, index = engine_and_index
    out = tmp_path / "out"
    metrics = evaluate_dataset(engine, index, world_files["heldout"], out, EvalSpec(method="rl", limit=6), progress=False)
    assert cli.main(["metrics", str(out / "predictions.jsonl"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("n", "em", "cover_em", "f1"):
        assert printed[key] == metrics[key]


def test_oracle_needs_gold_passages(tmp_path, world_files, engine_and_index):
    engine, index = engine_and_index
    from r1searcher.retrieval.corpus import read_passages

    gold = {p.id: p for p in read_passages(world_files["corpus"])}
    m = evaluate_dataset(engine, index, world_files["heldout"], tmp_path / "o", EvalSpec(method="oracle", limit=3, gold_passages=gold), progress=False)
    assert m["n"] == 3
    with pytest.raises(ValueError, match="gold passages"):
        evaluate_dataset(engine, index, world_files["heldout"], tmp_path / "o2",
                         EvalSpec(method="oracle", limit=3, gold_passages={"x": Passage("x", "t", "t")}), progress=False)


def test_without_ids_rows_are_matched_by_question_text_never_by_line(tmp_path, world_files, engine_and_index):
    """A file without ids numbers its records by line; a row answers the question whose text it
    holds, not the record that now sits at its line number (its id is corrected)."""
    engine, index = engine_and_index
    qs = [json.loads(x) for x in world_files["heldout"].read_text().splitlines()[:6]]
    data = tmp_path / "noid.jsonl"
    data.write_text("".join(json.dumps({k: v for k, v in q.items() if k != "id"}) + "\n" for q in qs))
    out = tmp_path / "run"
    evaluate_dataset(engine, index, data, out, EvalSpec(method="naive", limit=3), progress=False)
    pred = out / "predictions.jsonl"
    rows = read_done(pred)
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    rows[1] = {**rows[1], "question": qs[4]["question"], "pred_ans": "KEPT"}  # line 2's row answers line 5's question
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = evaluate_dataset(engine, index, data, out, EvalSpec(method="naive"), progress=False)
    again = read_done(pred)
    assert m["n"] == 6 and len(again) == 6
    assert sorted((r["id"], r["question"]) for r in again) == sorted((str(i), q["question"]) for i, q in enumerate(qs, 1))
    assert [r["id"] for r in again if r["pred_ans"] == "KEPT"] == ["5"]


def test_a_negative_limit_is_refused(tmp_path, world_files, engine_and_index):
    engine, index = engine_and_index
    with pytest.raises(ValueError, match="limit must be 0"):
        evaluate_dataset(engine, index, world_files["heldout"], tmp_path / "o", EvalSpec(method="naive", limit=-5), progress=False)
