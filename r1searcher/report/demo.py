"""The demo's report: a before/after table per method and hop count, example trajectories, curves."""

from __future__ import annotations

from pathlib import Path

from r1searcher.util.files import read_jsonl
from r1searcher.eval.metrics import percent


def _read_jsonl(path: Path) -> list[dict]:
    return read_jsonl(path, missing_ok=True, on_bad="raise").values()


def plot_training(runs: dict, out_png: Path, ends: dict | None = None) -> Path | None:
    """Reward, F1 and searches per trajectory over steps, stage 1 then stage 2 on one axis; the
    held-out F1 of the slice evaluated during training, with ``ends`` (``{"before": F1 of the
    untrained loop, "after": F1 of the trained policy, "n": questions, "step": the last stage's step
    the evaluated policy comes from (default: its last)}``, the demo's own evaluations) as the
    curve's first and last points."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series, offset, bounds = {"reward_mean": [], "f1": [], "searches_per_trajectory": [], "frac_with_search": [],
                              "searches_natural": []}, 0, []
    for stage in sorted(runs):
        log = _read_jsonl(Path(runs[stage]) / "log.jsonl")
        for rec in log:
            for key in series:
                if key in rec:
                    series[key].append((offset + rec["step"], rec[key]))
        offset += len(log)
        bounds.append(offset)
    heldout, offset = [], 0  # the held-out slice evaluated during training (train.eval_every), on the same axis
    for stage in sorted(runs):
        for rec in _read_jsonl(Path(runs[stage]) / "eval.jsonl"):
            heldout.append((offset + rec["step"], rec))
        offset += len(_read_jsonl(Path(runs[stage]) / "log.jsonl"))
    ends = {k: v for k, v in (ends or {}).items() if v is not None}
    panel = bool(heldout) or {"before", "after"} <= ends.keys()
    fig, axes = plt.subplots(1, 4 if panel else 3, figsize=(17 if panel else 13, 3.6))
    titles = {"reward_mean": "reward (mean)", "f1": "answer F1 (samples)", "searches_per_trajectory": "searches / trajectory"}
    if panel:
        ax = axes[3]
        hops = sorted({h for _, r in heldout for h in r.get("by_hops", {})}, key=int)
        if heldout:
            ax.plot([x for x, _ in heldout], [r["f1"] for _, r in heldout], marker="o", lw=1.5, label="slice, all")
        if {"before", "after"} <= ends.keys():
            last_start = bounds[-2] if len(bounds) > 1 else 0  # where the last stage's steps begin on the axis
            at = last_start + ends["step"] if "step" in ends else max(offset, 1)
            ax.plot([0, at], [ends["before"], ends["after"]], marker="s", lw=0, color="black",
                    label=f"before / after ({ends.get('n', '?')} q)")
        for h in hops:
            pts = [(x, r["by_hops"][h]["f1"]) for x, r in heldout if h in r.get("by_hops", {})]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", lw=1, ls="--", label=f"{h}-hop")
        for b in bounds[:-1]:
            ax.axvline(b + 0.5, color="grey", ls=":", lw=1)
        ax.set_ylim(0, 100)
        ax.set_title("held-out F1 (%), greedy" + (f", slice of {heldout[-1][1]['n']}" if heldout else ""))
        ax.set_xlabel("step (stage 1 | stage 2)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax, key in zip(axes, titles):
        pts = series[key]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", lw=1)
        if key == "searches_per_trajectory" and series["frac_with_search"]:
            pts2 = series["frac_with_search"]
            ax.plot([p[0] for p in pts2], [p[1] for p in pts2], lw=1, ls="--", label="fraction with ≥1 search")
            if series["searches_natural"]:  # train.explore_share: what the policy chose on its own
                pts3 = series["searches_natural"]
                ax.plot([p[0] for p in pts3], [p[1] for p in pts3], lw=1, ls="-.", label="searches, own decision")
            ax.legend(fontsize=8)
        for b in bounds[:-1]:
            ax.axvline(b + 0.5, color="grey", ls=":", lw=1)
        ax.set_title(titles[key])
        ax.set_xlabel("step (stage 1 | stage 2)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_before_after(metrics: dict, out_png: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [(f"{k} (before)", v) for k, v in metrics["before"].items()] + [(f"{k} (after)", v) for k, v in metrics["after"].items()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, key, title, floor in ((axes[0], "f1", "answer F1 (%)", 10.0), (axes[1], "searches_per_question", "searches / question", 1.0)):
        values = [r[1].get(key) or 0 for r in rows]
        ax.bar([r[0] for r in rows], values, color=["#9ab"] * len(metrics["before"]) + ["#d63"] * len(metrics["after"]))
        ax.set_ylim(0, max(values + [floor]) * 1.1)  # a zero bar reads as zero, not as a centred axis
        for i, v in enumerate(values):
            ax.annotate(f"{v:g}", (i, v), ha="center", va="bottom", fontsize=8)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def _table(metrics: dict) -> list[str]:
    lines = ["| method | when | n | F1 | cover-EM | EM | searches/q | stop reasons |", "|---|---|---|---|---|---|---|---|"]
    for when in ("before", "after"):
        for method, m in metrics[when].items():
            stops = ", ".join(f"{k} {v}" for k, v in sorted(m.get("stop_reasons", {}).items()))
            lines.append(f"| {method} | {when} | {m['n']} | {m['f1']} | {m['cover_em']} | {m['em']} | "
                         f"{m['searches_per_question']} | {stops} |")
    return lines


def _hops_table(metrics: dict) -> list[str]:
    hops = sorted({h for when in ("before", "after") for m in metrics[when].values() for h in m.get("by_hops", {})})
    if len(hops) < 2:
        return []
    lines = ["", "F1 by hop count:", "", "| method | when | " + " | ".join(f"{h} hops" for h in hops) + " |",
             "|---|---|" + "---|" * len(hops)]
    for when in ("before", "after"):
        for method, m in metrics[when].items():
            cells = [str(m.get("by_hops", {}).get(h, {}).get("f1", "–")) for h in hops]
            lines.append(f"| {method} | {when} | " + " | ".join(cells) + " |")
    return lines


def behaviour_rows(rows: list[dict]) -> list[dict]:
    """What a searching policy does, per hop count: how often it searches 0 / 1 / ≥2 times, how
    often it closes ``<answer>``, and its F1 (points) on the trajectories with one search and with
    two or more. On 2-hop questions this is where RL's choice shows: one search and a guess, or a
    second search."""
    out = []
    for h in sorted({r.get("hops") for r in rows if r.get("hops") is not None}):
        hr = [r for r in rows if r.get("hops") == h]
        one = [r for r in hr if r["n_searches"] == 1]
        two = [r for r in hr if r["n_searches"] >= 2]
        out.append({"hops": h, "n": len(hr), "searches_0": sum(r["n_searches"] == 0 for r in hr), "searches_1": len(one),
                    "searches_2plus": len(two), "closed": sum(r["stop_reason_final"] == "answer" for r in hr),
                    "f1_one_search": _mean_f1(one), "f1_two_plus": _mean_f1(two)})
    return out


def _mean_f1(rows: list[dict]) -> float | None:
    """Mean F1 in points (None for no rows)."""
    return percent(sum(r["f1"] for r in rows), len(rows)) if rows else None


def _behaviour_table(out: Path) -> list[str]:
    lines = ["", "What the searching policy does (held-out questions; F1 in points on the trajectories with that many "
             "searches):", "", "| method | hops | n | 0 searches | 1 search | ≥2 searches | closed `<answer>` | "
             "F1, 1 search | F1, ≥2 searches |", "|---|---|---|---|---|---|---|---|---|"]
    n0 = len(lines)
    for name, path in (("iterative (before)", out / "before" / "iterative" / "predictions.jsonl"),
                       ("rl (after)", out / "after" / "rl" / "predictions.jsonl")):
        for b in behaviour_rows(_read_jsonl(path)):
            cells = [b["n"], b["searches_0"], b["searches_1"], b["searches_2plus"], b["closed"],
                     "–" if b["f1_one_search"] is None else b["f1_one_search"],
                     "–" if b["f1_two_plus"] is None else b["f1_two_plus"]]
            lines.append(f"| {name} | {b['hops']} | " + " | ".join(str(c) for c in cells) + " |")
    return lines if len(lines) > n0 else []


def _f1(metrics: dict, when: str, method: str, hops: str | None) -> float | None:
    m = metrics[when].get(method)
    if m is None:
        return None
    if hops is None:
        return m.get("f1")
    return m.get("by_hops", {}).get(hops, {}).get("f1")


def goal_checks(metrics: dict) -> list[tuple[str, str, bool]]:
    """The goals, checked on this run's numbers (F1 in points of 100), as (group, line, met).

    ``demo`` (what a 30-minute run must show, issue #23): overall RL ≥ the better of rag and the
    untrained loop + 10; on the main hop count (2) RL ≥ rag + 10 and ≥ the untrained loop + 10, with
    ≥ 1.3 searches per question. ``searcher`` (what a trained searcher must show): main-hop RL ≥ the
    untrained loop + 30 with ≥ 1.5 searches per question, and 1-hop RL ≥ rag."""
    hops = sorted({h for m in metrics["before"].values() for h in m.get("by_hops", {})})
    main = "2" if "2" in hops else None
    rl, rag, it = (_f1(metrics, "after", "rl", main), _f1(metrics, "before", "rag", main),
                   _f1(metrics, "before", "iterative", main))
    all_rl, all_rag, all_it = (_f1(metrics, "after", "rl", None), _f1(metrics, "before", "rag", None),
                               _f1(metrics, "before", "iterative", None))
    if None in (rl, rag, it, all_rl, all_rag, all_it):
        return []
    where = "2-hop" if main else "all"
    # on the main hop count only (a metrics.json written before evaluations counted searches per hop
    # has none there: the line is left out rather than filled with the overall count)
    sq = (metrics["after"]["rl"].get("by_hops", {}).get(main, {}) if main else metrics["after"]["rl"])
    rl_sq = sq.get("searches_per_question")
    best = max(all_rag, all_it)
    out = [("demo", f"all: RL {all_rl} vs max(rag {all_rag}, untrained iterative {all_it}) + 10", all_rl >= best + 10),
           ("demo", f"{where}: RL {rl} vs rag {rag} + 10", rl >= rag + 10),
           ("demo", f"{where}: RL {rl} vs untrained iterative {it} + 10", rl >= it + 10)]
    if rl_sq is not None:
        out.append(("demo", f"{where}: searches/question {round(rl_sq, 3)} ≥ 1.3", rl_sq >= 1.3))
    out.append(("searcher", f"{where}: RL {rl} vs untrained iterative {it} + 30", rl >= it + 30))
    if rl_sq is not None:
        out.append(("searcher", f"{where}: searches/question {round(rl_sq, 3)} ≥ 1.5", rl_sq >= 1.5))
    one_rl, one_rag = _f1(metrics, "after", "rl", "1"), _f1(metrics, "before", "rag", "1")
    if main and one_rl is not None and one_rag is not None:
        out.append(("searcher", f"1-hop: RL {one_rl} vs rag {one_rag}", one_rl >= one_rag))
    return out


def _goals(metrics: dict) -> list[str]:
    checks = goal_checks(metrics)
    if not checks:
        return []
    titles = {"demo": "Goals of the demo (held-out, F1 in points):",
              "searcher": "Goals of a trained searcher (the long recipe; BENCHMARKS.md):"}
    out: list[str] = []
    for group in ("demo", "searcher"):
        out += ["", titles[group], ""] + [f"- {line} → {'met' if met else 'not met'}" for g, line, met in checks if g == group]
    return out[1:] + [""]


def _example(row: dict) -> list[str]:
    text = row["gen_text_store"]
    if len(text) > 1500:
        text = text[:1500] + " …"
    return [f"**Q:** {row['question']}  ", f"gold: {row['answers']} · predicted: `{row['pred_ans']}` · F1 {row['f1']:.2f} · "
            f"searches {row['n_searches']} · stop: {row['stop_reason_final']}", "", "```", text, "```", ""]


def _machine_line(metrics: dict) -> list[str]:
    """Where it ran: the CPU (and its speed flags), torch's capability and threads, device and dtype."""
    m = metrics.get("machine")
    if not m:
        return []
    from r1searcher.util.machine import describe

    setting = m.get("dtype_setting")
    dtype = f"{m.get('dtype', '?')}" + (f" (model.dtype={setting})" if setting else "")
    return [f"Machine: {describe(m)}; device {m.get('device', '?')}, {dtype}.", ""]


def write_report(out: Path, metrics: dict, before: dict, after: dict, runs: dict) -> Path:
    out = Path(out)
    ends = {"before": _f1(metrics, "before", "iterative", None), "after": _f1(metrics, "after", "rl", None),
            "n": (metrics.get("after", {}).get("rl") or {}).get("n")}
    chosen = metrics.get("rl_policy")
    if chosen:  # train.keep_best: the stage-2 step whose policy was evaluated
        ends["step"] = chosen["step"]
    logs = {s: _read_jsonl(Path(r) / "log.jsonl") for s, r in runs.items()}
    curves = plot_training(runs, out / "training_curves.png", ends)
    bars = plot_before_after(metrics, out / "before_after.png")
    lines = [f"# r1searcher demo ({metrics['task']})", "",
             f"Held-out questions, greedy decoding; model {metrics.get('model', '?')}; wall time {metrics['minutes']} min. "
             "`before` is the untrained model (naive: answer directly; rag: the question's top passages in the "
             "prompt; oracle: the gold passages in the prompt, an upper bound for one read; iterative: the search "
             "tag loop with the worked examples of `rollout.shots`). The direct methods get a plain short-answer prompt in the model's "
             "chat template (r1searcher/eval/baselines.py). `after` is the same model after stage 1 and stage 2 RL.", ""]
    if chosen:
        steps = len(logs[max(logs, key=int)])
        by_step = ", ".join(f"step {k}: {v:.1f}" for k, v in chosen.get("slice_f1_by_step", {}).items())
        lines += [f"`after` is the policy of stage-2 step {chosen['step']} of {steps}: the best on the held-out monitor "
                  f"slice, questions disjoint from these ({by_step}; `train.keep_best`, r1searcher/rl/best.py).", ""]
    lines += _machine_line(metrics)
    lines += _table(metrics) + _hops_table(metrics) + _behaviour_table(out) + [""] + _goals(metrics)
    for png in (bars, curves):
        if png is not None:
            lines += [f"![{png.stem}]({png.name})", ""]
    viewer = write_viewer_page(out)
    if viewer is not None:
        lines += [f"Every trajectory of this run (training samples and eval predictions, filters, before and after side by "
                  f"side, loss mask shown): [{viewer.name}]({viewer.name}), one page that opens offline.", ""]
    for s, log in logs.items():
        if log:
            first, last = log[0], log[-1]
            lines.append(f"Stage {s}: {len(log)} steps; reward {first['reward_mean']:.3f} → {last['reward_mean']:.3f}; "
                         f"fraction with ≥1 search {first.get('frac_with_search', 0):.2f} → {last.get('frac_with_search', 0):.2f}; "
                         f"{sum(r['seconds'] for r in log) / len(log):.0f} s/step.")
    lines.append("")
    for title, path in (("before (iterative, untrained)", out / "before" / "iterative" / "predictions.jsonl"),
                        ("after (RL)", out / "after" / "rl" / "predictions.jsonl")):
        lines += [f"## Example trajectories {title}", ""]
        for row in _examples_of(path):
            lines += _example(row)
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def write_viewer_page(out: Path) -> Path | None:
    """``out/viewer.html``: the trajectory viewer over every run under ``out`` (None when there is none)."""
    from r1searcher.viewer.page import write_viewer

    try:
        return write_viewer([out], out / "viewer.html", title=f"r1searcher demo: trajectories ({out.name})")
    except FileNotFoundError:
        return None


def _examples_of(path: Path, n: int = 3) -> list[dict]:
    rows = _read_jsonl(path)
    rows.sort(key=lambda r: (r["n_searches"] == 0, -r["f1"]))
    return rows[:n]
