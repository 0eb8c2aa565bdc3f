"""When a training stage has done its job: conditions on the logged metrics, e.g. move from stage 1 to
stage 2 once the format holds instead of at a fixed share of the clock.

    train.stop_when: "frac_with_search>=0.8, reward_format>=0.4"    # all must hold
    train.stop_window: 2                                              # on the mean of the last 2 steps

And when the time budget (``train.max_minutes``) is spent: checked *before* a step starts, against
that step's expected cost (:class:`StepClock`), so a stage ends at or before its budget rather than
one step after it (a resume used to run a whole step, minutes on a slow machine, before looking).

Pure functions of the log records and the clock, so the rules are tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r1searcher.settings.specs import Condition, parse_conditions


def window_means(records: list[dict], keys: list[str], window: int) -> dict[str, float] | None:
    """Mean of each key over the last ``window`` records (None until there are that many)."""
    if window < 1:
        raise ValueError(f"train.stop_window must be >= 1, got {window}")
    if len(records) < window:
        return None
    last = records[-window:]
    means = {}
    for k in keys:
        vals = [r.get(k) for r in last]
        if any(v is None for v in vals):
            if all(k not in r for r in last):
                known = sorted(x for x in last[-1] if isinstance(last[-1][x], (int, float)))
                raise ValueError(f"train.stop_when names {k!r}, which is not in the log; logged: {', '.join(known)}")
            return None  # logged but empty at some step (e.g. no update): not yet
        means[k] = sum(float(v) for v in vals) / window
    return means


def should_stop(records: list[dict], conditions: list[Condition], window: int) -> tuple[bool, dict[str, float]]:
    """Whether every condition holds on the window means of ``records``; also the means."""
    if not conditions:
        return False, {}
    means = window_means(records, [c.key for c in conditions], window)
    if means is None:
        return False, {}
    return all(c.holds(means[c.key]) for c in conditions), means


# --------------------------------------------------------------------------- the time budget


def out_of_time(elapsed_s: float, expected_s: float, budget_s: float) -> str | None:
    """Why the next step must not start (``elapsed_s`` spent + ``expected_s`` for it > ``budget_s``),
    or None to go; ``budget_s`` ≤ 0 means no budget."""
    if budget_s <= 0 or elapsed_s + expected_s <= budget_s:
        return None
    return (f"time budget of {budget_s / 60:g} min: {elapsed_s / 60:.2f} min spent + {expected_s / 60:.2f} min "
            f"expected for the next step would exceed it")


@dataclass
class StepClock:
    """Training seconds spent, and what the recent steps, held-out evaluations and saves cost.

    The expected cost of a step is the slowest of the last ``WINDOW`` steps (steps vary with the
    rollouts' lengths; the slowest keeps the run inside its budget more often than the mean), plus
    the held-out evaluation (unless ``final_eval`` is off) and the checkpoint that follow the last
    step of a stage. It is kept in
    the checkpoint (:meth:`state`), so a resume knows it before it takes a step.
    """

    elapsed: float = 0.0
    steps: list[float] = field(default_factory=list)
    eval_s: float = 0.0
    save_s: float = 0.0
    final_eval: bool = True  # the stage's last step is followed by a held-out evaluation (train.eval_at_end)
    WINDOW = 3

    def add_step(self, seconds: float) -> None:
        self.elapsed += seconds
        self.steps = (self.steps + [seconds])[-self.WINDOW :]

    def add_eval(self, seconds: float) -> None:
        self.elapsed += seconds
        self.eval_s = seconds

    def add_save(self, seconds: float) -> None:
        self.elapsed += seconds
        self.save_s = seconds

    def expected_step(self) -> float:
        """Seconds the next step costs if it is the last: the step, then its evaluation and checkpoint."""
        return max(self.steps, default=0.0) + (self.eval_s if self.final_eval else 0.0) + self.save_s

    def stop_before_next(self, budget_s: float, eval_now: bool = False, save_now: bool = False) -> str | None:
        """Whether the step after this one must not start (:func:`out_of_time`), counting the
        evaluation and checkpoint due now before it."""
        now = (self.eval_s if eval_now else 0.0) + (self.save_s if save_now else 0.0)
        return out_of_time(self.elapsed + now, self.expected_step(), budget_s)

    def state(self) -> dict:
        return {"elapsed": self.elapsed, "step_seconds": list(self.steps), "eval_seconds": self.eval_s,
                "save_seconds": self.save_s}

    @classmethod
    def from_state(cls, state: dict, history: list[dict]) -> "StepClock":
        """From a checkpoint's state; one written before the clock was kept: from the log's ``seconds``."""
        steps = state.get("step_seconds")
        if steps is None:
            steps = [float(r["seconds"]) for r in history if isinstance(r.get("seconds"), (int, float))]
        evals = [r["heldout_seconds"] for r in history if isinstance(r.get("heldout_seconds"), (int, float))]
        return cls(elapsed=float(state.get("elapsed", 0.0)), steps=[float(x) for x in steps][-cls.WINDOW :],
                   eval_s=float(state.get("eval_seconds", evals[-1] if evals else 0.0)),
                   save_s=float(state.get("save_seconds", 0.0)))
