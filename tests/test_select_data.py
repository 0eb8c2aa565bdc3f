from types import SimpleNamespace

from r1searcher.data.qa import QARecord
from r1searcher.eval.select_data import label, score_rollouts


def test_labels_follow_the_paper_thresholds():
    assert label(1, 32) == "easy" and label(9, 32) == "easy"
    assert label(10, 32) == "medium" and label(20, 32) == "medium"
    assert label(21, 32) == "difficult"
    assert label(None, 32) == "difficult"
    assert label(None, 8) == "unsolved"  # too few samples to call it difficult


def test_score_rollouts_counts_per_question_in_engine_order():
    recs = [QARecord("a", "q1", ["Paris"]), QARecord("b", "q2", ["Rome"])]
    t = lambda ans: SimpleNamespace(answer=ans)  # noqa: E731
    trajs = [t("London"), t("paris"), t(None), t("Rome"), t("x"), t("the Rome")]
    out = score_rollouts(recs, trajs, 3)
    assert out[0]["first_correct"] == 2 and out[0]["n_correct"] == 1
    assert out[1]["first_correct"] == 1 and out[1]["n_correct"] == 2
