"""The exploration bench's group statistics (pure): what a GRPO group can learn from."""

from r1searcher.benchmarks.exploration import group_stats


def test_group_stats_counts_signal_and_two_search_wins():
    # group 0: rewards differ and the 2-search sample is best (a win); group 1: all equal (no signal);
    # group 2: rewards differ but the best sample searched once
    rewards = [0.0, 1.0, 0.5, 0.5, 1.0, 0.0]
    searches = [1, 2, 2, 1, 1, 2]
    f1s = [0.0, 1.0, 0.5, 0.5, 1.0, 0.0]
    closed = [True, True, True, False, True, True]
    s = group_stats(rewards, searches, f1s, closed, n=2)
    assert s["groups"] == 3
    assert s["signal"] == 2 / 3 and s["f1_signal"] == 2 / 3
    assert s["two_search_wins"] == 1 / 3
    assert s["two_plus"] == 0.5 and s["searches"] == 1.5
    assert s["f1_1"] == (0.0 + 0.5 + 1.0) / 3 and s["f1_2"] == (1.0 + 0.5 + 0.0) / 3
    assert s["closed"] == 5 / 6
    assert s["closed_1"] == 2 / 3 and s["closed_2"] == 1.0


def test_group_stats_ties_at_the_top_are_not_wins_when_all_equal():
    s = group_stats([1.0, 1.0], [2, 2], [1.0, 1.0], [True, True], n=2)
    assert s["signal"] == 0 and s["two_search_wins"] == 0


def test_a_format_penalty_alone_is_signal_but_not_f1_signal():
    s = group_stats([0.0, -2.0], [1, 1], [0.0, 0.0], [True, False], n=2)
    assert s["signal"] == 1 and s["f1_signal"] == 0


def test_found_signal_counts_groups_where_only_some_samples_retrieved_the_answer():
    found = [True, False, True, True, False, False]
    s = group_stats([0.0] * 6, [2, 1, 2, 2, 1, 1], [0.0] * 6, [True] * 6, n=2, found=found)
    assert s["found_signal"] == 1 / 3 and s["found"] == 0.5 and s["f1_signal"] == 0


def test_arm_stats_split_the_exploring_arm_from_the_natural_one():
    from r1searcher.benchmarks.exploration import arm_stats

    # two groups of 4, samples 2-3 explore; group 0: only an explorer is right; group 1: a natural one is
    f1s = [0.0, 0.0, 1.0, 0.0, 0.5, 0.0, 0.5, 0.0]
    arm_of = lambda i: "explored" if i >= 2 else "natural"  # noqa: E731
    s = arm_stats(f1s, [0, 1, 2, 3] * 2, arm_of, n=4)
    assert s == {"f1_explored": 0.375, "f1_stopped": None, "f1_natural": 0.125, "explore_wins": 0.5,
                 "stop_wins": None}
    assert arm_stats(f1s, [0, 1, 2, 3] * 2, None, n=4)["f1_explored"] is None


def test_arm_stats_count_the_stopping_arm_apart():
    from r1searcher.benchmarks.exploration import arm_stats

    # groups of 4: sample 0 stops, 3 explores, 1-2 natural; group 0: the stop alone is best; group 1: a
    # tie between the stop and a natural sample is no win; group 2: the explorer alone is best
    f1s = [1.0, 0.0, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    arm_of = lambda i: "stopped" if i == 0 else "explored" if i == 3 else "natural"  # noqa: E731
    s = arm_stats(f1s, [0, 1, 2, 3] * 3, arm_of, n=4)
    assert s["stop_wins"] == 1 / 3 and s["explore_wins"] == 1 / 3
    assert s["f1_stopped"] == 0.5 and s["f1_explored"] == 1 / 3 and s["f1_natural"] == 1 / 6
