"""The trajectory viewer's data side: samples.jsonl records (mask spans), run discovery, the page file.

``write_demo_like`` builds a run folder shaped like ``runs/demo`` (stage-1 training samples written by
the trainer's own ``sample_record``, eval predictions by ``evaluate.prediction_row``) from the
synthetic world; the browser test (test_viewer_browser.py) renders it.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import re
from pathlib import Path

import pytest

from r1searcher.rollout import tags
from r1searcher.config import RewardConfig
from r1searcher.rollout.stops import document_block
from r1searcher.rollout.trajectory import Trajectory
from r1searcher.viewer.page import write_viewer
from r1searcher.rl.samples import sample_record, untrained_spans
from r1searcher.viewer.records import doc_spans, find_sources, load_rows


class CharTokenizer:
    """One token per character: decoding a run of ids gives back exactly its characters."""

    def decode(self, ids, **_):
        return "".join(chr(i) for i in ids)


def make_traj(question: str, passages: list, answer: str | None, think: str, rng: random.Random, group=0, sample=0) -> Trajectory:
    """A trajectory as the engine builds it: policy text (mask 1) and inserted document blocks (mask 0)."""
    from r1searcher.retrieval.base import Passage

    pieces = [(f" {think} ", 1)]
    for p in passages:
        pieces.append((f"{tags.QUERY_OPEN}{p['title']}{tags.QUERY_CLOSE}", 1))
        pieces.append((document_block([Passage(p["id"], p["title"], p["text"])], 40), 0))
        pieces.append((rng.choice(["The passage says it.", "So the next hop is clear.", "Now I know."]) + " ", 1))
    if answer is not None:
        pieces.append((f"{tags.THINK_CLOSE}\n\n{tags.ANSWER_OPEN} {answer} {tags.ANSWER_CLOSE}", 1))
        stop = "answer"
    else:
        pieces.append(("I keep thinking about " + question.lower() * 2, 1))
        stop = "length"
    text = "".join(t for t, _ in pieces)
    ids = [ord(c) for c in text]
    mask = [bit for t, bit in pieces for _ in t]
    return Trajectory(prompt_ids=[1, 2], response_ids=ids, loss_mask=mask, logprobs=[], text=text,
                      queries=[p["title"] for p in passages], n_searches=len(passages), stop_reason=stop,
                      question=question, answer=answer.strip() if answer is not None else None, group=group, sample=sample)


def _behave(q, by_id: dict, titles: list, rng: random.Random, skill: float):
    """A policy of some skill: searches the supporting passages (or a wrong one), answers right or not."""
    searched = rng.random() < skill
    passages = [by_id[i] for i in q.supporting_ids] if searched else []
    if rng.random() < 0.2:
        passages.append(by_id[rng.choice(list(by_id))])
    right = searched and rng.random() < 0.5 + skill / 2
    answer = q.answers[0] if right else (rng.choice(titles) if rng.random() < 0.85 else None)
    think = rng.choice(["I need to find out who this is.", "Let me search for the first entity.",
                        "The question has two hops; first the founder."])
    return passages, answer, think


def write_demo_like(out: Path, steps: int = 12, per_step: int = 4, eval_questions: int = 40, seed: int = 0) -> Path:
    """A folder like ``runs/demo``: stage1/ (samples.jsonl, log.jsonl, config.yaml), before/iterative/, after/rl/."""
    from r1searcher.data.qa import QARecord
    from r1searcher.data.synthetic import generate_world
    from r1searcher.eval.evaluate import prediction_row, summarize

    rng = random.Random(seed)
    world = generate_world(60, seed)
    by_id = {p["id"]: p for p in world.passages}
    titles = [p["title"] for p in world.passages]
    stage = out / "stage1"
    stage.mkdir(parents=True)
    (stage / "config.yaml").write_text("data:\n  path: runs/demo/world/train.jsonl\n")
    cfg = RewardConfig(stage=1)
    with open(stage / "samples.jsonl", "w") as f, open(stage / "log.jsonl", "w") as log:
        for step in range(1, steps + 1):
            rewards = []
            for k in range(per_step):
                q = rng.choice(world.train)
                passages, answer, think = _behave(q, by_id, titles, rng, skill=step / steps)
                tr = make_traj(q.question, passages, answer, think, rng, group=k // 2, sample=k % 2)
                from r1searcher.rl.rewards import compute_reward

                r, _ = compute_reward(tr, q.answers, cfg)
                rewards.append(r)
                f.write(json.dumps(sample_record(step, tr, r, q.answers, cfg, CharTokenizer())) + "\n")
            log.write(json.dumps({"step": step, "reward_mean": sum(rewards) / len(rewards), "frac_with_search": 0.0,
                                  "seconds": 1.0}) + "\n")
    held = [q for q in world.heldout if q.hops == 2][:eval_questions] or world.heldout[:eval_questions]
    for when, method, skill in (("before", "iterative", 0.15), ("after", "rl", 0.8)):
        d = out / when / method
        d.mkdir(parents=True)
        rows = []
        for q in held:
            passages, answer, think = _behave(q, by_id, titles, rng, skill)
            tr = make_traj(q.question, passages, answer, think, rng)
            rows.append(prediction_row(QARecord(q.id, q.question, q.answers, {"hops": q.hops}), tr))
        (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "metrics.json").write_text(json.dumps({**summarize(rows), "method": method, "dataset": "runs/demo/world/eval.jsonl"}))
    return out


def embedded(page: Path) -> dict:
    """The data a written page carries (plain or gzip+base64 JSON)."""
    text = page.read_text()
    m = re.search(r'<script id="data" type="application/json" data-encoding="([a-z0-9-]+)">(.*?)</script>', text, re.S)
    enc, body = m.group(1), m.group(2)
    if enc == "gzip-base64":
        return json.loads(gzip.decompress(base64.b64decode(body)))
    return json.loads(body)  # "<", ">", "&" are written as \u escapes, which JSON reads back


# --------------------------------------------------------------------------- tests


def test_untrained_spans_are_the_inserted_blocks():
    tr = make_traj("who?", [{"id": "p1", "title": "Kelvara", "text": "Kelvara is a town in Norland."}], "Kelvara", "think.",
                   random.Random(0))
    spans = untrained_spans(CharTokenizer(), tr.response_ids, tr.loss_mask, tr.text)
    assert len(spans) == 1
    a, b = spans[0]
    block = tr.text[a:b]
    assert block.lstrip("\n").startswith(tags.DOCS_OPEN) and block.endswith(tags.DOCS_CLOSE + "\n\n")
    assert all(tr.loss_mask[i] == 0 for i in range(a, b)) and sum(tr.loss_mask) == len(tr.text) - (b - a)
    # the tag-derived spans (eval rows) cover the same block, from its open tag on
    assert doc_spans(tr.text) == [[tr.text.index(tags.DOCS_OPEN), b]]
    # a mask run that is not in the text: no spans rather than wrong ones
    assert untrained_spans(CharTokenizer(), [ord("x")], [0], "abc") is None


def test_sample_record_has_gold_prediction_reward_parts_and_scores():
    p = {"id": "p1", "title": "Kelvara", "text": "Kelvara is a town in Norland."}
    tr = make_traj("Where was Maren born?", [p], "Kelvara", "think.", random.Random(0))
    rec = sample_record(3, tr, 1.0, ["Kelvara"], RewardConfig(stage=1), CharTokenizer())
    assert rec["step"] == 3 and rec["answers"] == ["Kelvara"] and rec["pred"] == "Kelvara"
    assert rec["f1"] == 1.0 and rec["cover_em"] == 1.0
    assert rec["reward_parts"] == {"retrieval": 0.5, "format": 0.5}
    assert rec["policy_tokens"] + (rec["untrained"][0][1] - rec["untrained"][0][0]) == rec["response_tokens"]
    rec2 = sample_record(3, tr, -2.0, ["Norland"], RewardConfig(stage=2))
    assert rec2["f1"] == 0.0 and "format_penalty" in rec2["reward_parts"] and "untrained" not in rec2
    json.dumps(rec)  # one JSON line


def test_find_sources_labels_train_and_eval_runs(tmp_path):
    demo = write_demo_like(tmp_path / "demo", steps=3, eval_questions=5)
    found = {(kind, label) for kind, label, _ in find_sources([demo])}
    assert found == {("train", "demo/stage1"), ("eval", "demo/before/iterative"), ("eval", "demo/after/rl")}
    # r1searcher eval --out DIR writes DIR/<dataset>/: the run is DIR, the dataset its subfolder
    ev = tmp_path / "eval_rl"
    (ev / "hotpotqa").mkdir(parents=True)
    (ev / "hotpotqa" / "predictions.jsonl").write_text((demo / "after/rl/predictions.jsonl").read_text())
    (ev / "hotpotqa" / "metrics.json").write_text(json.dumps({"method": "rl", "dataset": "data/eval/hotpotqa.jsonl"}))
    runs, rows = load_rows([ev])
    assert [r["label"] for r in runs] == ["eval_rl"] and runs[0]["datasets"] == ["hotpotqa"]
    assert {r["ds"] for r in rows} == {"hotpotqa"} and len(rows) == 5
    with pytest.raises(FileNotFoundError, match="no samples.jsonl"):
        find_sources([tmp_path / "demo" / "stage1" / "config.yaml"])


def test_rows_carry_what_the_page_shows(tmp_path):
    demo = write_demo_like(tmp_path / "demo", steps=4, eval_questions=8)
    runs, rows = load_rows([demo])
    train = [r for r in rows if runs[r["s"]]["kind"] == "train"]
    ev = [r for r in rows if runs[r["s"]]["kind"] == "eval"]
    assert len(train) == 16 and len(ev) == 16
    assert all(r["mask"] == "recorded" and r["st"] in range(1, 5) and r["gold"] for r in train)
    assert all(r["mask"] == "tags" and r["st"] is None and r["id"] for r in ev)
    for r in rows:  # every untrained span is a document block, and every block is untrained
        for a, b in r["um"]:
            assert tags.DOCS_OPEN in r["text"][a:b] and r["text"][a:b].rstrip("\n").endswith(tags.DOCS_CLOSE)
        assert len(r["um"]) == r["text"].count(tags.DOCS_OPEN)
        assert r["ok"] == bool(r["cem"])


def test_page_embeds_the_rows_plain_and_compressed(tmp_path):
    demo = write_demo_like(tmp_path / "demo", steps=2, eval_questions=4)
    plain = write_viewer([demo], tmp_path / "plain.html", compress=False)
    packed = write_viewer([demo], tmp_path / "packed.html", compress=True)
    a, b = embedded(plain), embedded(packed)
    assert a["rows"] == b["rows"] and len(a["rows"]) == 8 + 8
    assert a["meta"]["tags"]["docs_open"] == tags.DOCS_OPEN
    text = plain.read_text()
    assert "http://" not in text and "https://" not in text  # nothing fetched: opens offline
    assert text.count("</script>") == 2  # the data cannot close its element early
    assert write_viewer([demo]) == demo / "viewer.html"


def test_view_command_writes_the_page(tmp_path, capsys):
    from r1searcher.cli import main

    demo = write_demo_like(tmp_path / "demo", steps=2, eval_questions=3)
    assert main(["view", str(demo / "before" / "iterative"), str(demo / "after" / "rl"), "--out", str(tmp_path / "v.html")]) == 0
    assert "written:" in capsys.readouterr().out
    data = embedded(tmp_path / "v.html")
    assert [r["label"] for r in data["meta"]["runs"]] == ["iterative", "rl"]
    assert main(["view", str(tmp_path / "nothing_here")]) == 2


def test_demo_report_links_the_viewer(tmp_path):
    from r1searcher.report.demo import write_report

    demo = write_demo_like(tmp_path / "demo", steps=2, eval_questions=3)
    m = {w: {k: json.loads((demo / w / k / "metrics.json").read_text())} for w, k in (("before", "iterative"), ("after", "rl"))}
    report = write_report(demo, {"task": "synthetic", "minutes": 1.0, **m}, m["before"], m["after"], {1: demo / "stage1"})
    assert "[viewer.html](viewer.html)" in report.read_text()
    assert {r["label"] for r in embedded(demo / "viewer.html")["meta"]["runs"]} == {
        "demo/stage1", "demo/before/iterative", "demo/after/rl"}
